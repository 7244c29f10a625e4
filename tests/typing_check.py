"""Every way of registering the layers, checked by ``mypy --strict`` (listed in pyproject's mypy ``files``).

Not a test module (pytest collects ``test_*.py`` only); ``tests/test_frameworks.py`` calls
:func:`registration_forms` so every form is also built once at run time. The ``type: ignore`` lines
prove the typing has teeth: under ``warn_unused_ignores`` (part of ``--strict``) they would fail the
check if mypy stopped catching a misspelt option.
"""

from __future__ import annotations

from fastapi import FastAPI
from litestar import Litestar
from litestar.middleware import DefineMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware

from hfasgi.app import layers
from hfasgi.auth import ApiKeyAuth, AuthConfig, MemoryKeyStore
from hfasgi.contrib.fastapi import install as install_fastapi
from hfasgi.contrib.litestar import HFPlugin
from hfasgi.contrib.starlette import install as install_starlette
from hfasgi.contrib.starlette import middleware
from hfasgi.envelope import ErrorEnvelope
from hfasgi.forwarding.forwarder import ForwarderConfig, HFForwarder
from hfasgi.limits import Limit
from hfasgi.operations import Routes
from hfasgi.ratelimit import RateLimiter, RateLimiterConfig
from hfasgi.request_id import RequestId, RequestIdConfig
from hfasgi.stack import Layer, Lifespan, layer_resources, stack
from hfasgi.types import ASGIApp

__all__ = ["registration_forms"]


def registration_forms() -> list[ASGIApp]:
    """One app per registration form (no I/O: nothing is served)."""
    gateway = ForwarderConfig.to("http://127.0.0.1:8080", kind="tgi", routes=Routes("/hf"))
    gateway_layers: list[Layer] = layers(gateway)
    auth = AuthConfig(store=MemoryKeyStore.from_keys(["dev-key"]), routes=gateway.routes)
    limits = RateLimiterConfig(rate_limit=Limit.parse("60/minute"), routes=gateway.routes)
    guarded: list[Layer] = layers(gateway, auth=auth, limiter=limits)

    # Starlette: Middleware(...) entries, by hand or from the adapter, and install() on an existing app.
    by_hand = Starlette(
        middleware=[
            Middleware(RequestId, config=RequestIdConfig(header="x-correlation-id")),
            Middleware(ErrorEnvelope),
            Middleware(ApiKeyAuth, config=auth),
            Middleware(RateLimiter, config=limits),
            Middleware(HFForwarder, config=gateway),
        ]
    )
    Middleware(ApiKeyAuth, store=auth.store)  # type: ignore[call-arg]
    from_adapter = Starlette(middleware=middleware(gateway_layers))
    installed_starlette = Starlette()
    install_starlette(installed_starlette, gateway_layers, resources=[gateway.pool])
    Middleware(HFForwarder, confg=gateway)  # type: ignore[call-arg]

    # FastAPI: add_middleware (the last added is outermost) and the adapter.
    added = FastAPI()
    added.add_middleware(HFForwarder, config=gateway)
    added.add_middleware(ErrorEnvelope)
    added.add_middleware(RequestId, config=RequestIdConfig())
    FastAPI().add_middleware(HFForwarder, gateway=gateway)  # type: ignore[call-arg]
    installed_fastapi = FastAPI()
    install_fastapi(installed_fastapi, gateway_layers)
    guarded_fastapi = FastAPI()
    install_fastapi(guarded_fastapi, guarded)
    guarded_fastapi.add_middleware(RateLimiter, limits=limits)  # type: ignore[call-arg]

    # Litestar: DefineMiddleware and bare classes (route middleware), and the plugin (the gateway mount).
    routed = Litestar(
        middleware=[DefineMiddleware(RequestId), ErrorEnvelope, DefineMiddleware(HFForwarder, config=gateway)]
    )
    plugged = Litestar(plugins=[HFPlugin(gateway_layers)])
    guarded_litestar = Litestar(plugins=[HFPlugin(guarded)])

    # Any app as a whole, wrapped: plain ASGI, FastAPI, Litestar; with the lifespan that opens the pool.
    wrapped_fastapi: ASGIApp = stack(FastAPI(), *gateway_layers)
    wrapped_litestar: ASGIApp = Lifespan(stack(Litestar(), *gateway_layers), resources=layer_resources(gateway_layers))
    direct: ASGIApp = RequestId(ErrorEnvelope(HFForwarder(Litestar(), config=gateway)))

    return [
        by_hand,
        from_adapter,
        installed_starlette,
        added,
        installed_fastapi,
        guarded_fastapi,
        routed,
        plugged,
        guarded_litestar,
        wrapped_fastapi,
        wrapped_litestar,
        direct,
    ]
