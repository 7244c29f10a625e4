"""FastAPI adapter: give an existing FastAPI app the gateway.

::

    from hfasgi.app import layers
    from hfasgi.contrib.fastapi import install

    app = FastAPI(lifespan=my_lifespan)  # your app, your routes, your lifespan
    gateway = ForwarderConfig.to("http://tgi:8080", kind="tgi", routes=Routes("/hf"))
    install(app, layers(gateway))  # the gateway now lives under /hf; its pool opens with the app
"""

from __future__ import annotations

from collections.abc import Sequence

from hfasgi.stack import Layer, Resource

try:
    from fastapi import FastAPI
except ImportError as exc:  # pragma: no cover - tests hide the framework to check the message
    raise ImportError("hfasgi.contrib.fastapi needs FastAPI: pip install fastapi") from exc

from hfasgi.contrib.starlette import install as _install

__all__ = ["install"]


def install(app: FastAPI, layers: Sequence[Layer], *, resources: Sequence[Resource] | None = None) -> None:
    """Put ``layers`` in front of ``app`` (the first outermost) and open their resources in its lifespan.

    The layers are pure-ASGI app middleware (reversed ``add_middleware``): they see every request and
    pass the app's own routes through untouched. ``resources`` defaults to those the layers declare; they
    are opened before the app's own lifespan (``lifespan=`` or ``on_startup``) and closed after it.
    Call it before the app starts serving (Starlette refuses middleware added later).
    """
    _install(app, layers, resources=resources)
