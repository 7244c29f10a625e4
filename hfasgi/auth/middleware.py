"""ApiKeyAuth: who is calling. A key (or a signed token) becomes a :class:`~hfasgi.principal.Principal`."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from hfasgi.auth.keys import hash_key
from hfasgi.body import ClientDisconnected, read_body, replay_receive
from hfasgi.context import RequestContext, get_context
from hfasgi.errors import GatewayError
from hfasgi.operations import CATALOG_ROUTES, DEFAULT_ROUTES, Operation, Routes
from hfasgi.principal import Principal
from hfasgi.redis_client import STORE_ERRORS
from hfasgi.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from hfasgi.auth.jwt import JWTVerifier
    from hfasgi.auth.stores import KeyStore
    from hfasgi.catalog import ModelCatalog

__all__ = ["ApiKeyAuth", "AuthConfig"]

logger = logging.getLogger("hfasgi.auth")

_MISSING_KEY = "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
_INVALID_KEY = "Invalid API key"
_UNAVAILABLE = "The key store is not answering; try again shortly"
_HUB_TOKEN_HINT = (
    " (this looks like a Hugging Face token, perhaps HF_TOKEN sent by huggingface_hub: "
    "the gateway expects a key of its own, as api_key= or an x-api-key header)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    """Configuration of :class:`ApiKeyAuth`."""

    store: KeyStore | None = None
    """Where API keys are looked up (memory, key file, Redis, or a chain of them)."""
    jwt: JWTVerifier | None = None
    """Also accept signed bearer tokens (JWTs), checked by this verifier."""
    routes: Routes = DEFAULT_ROUTES
    """The gateway's routes (what ``protect="gateway"`` protects)."""
    protect: Literal["gateway", "all"] = "gateway"
    """``gateway``: only inference routes need a key, the wrapped app's own routes stay as they are.
    ``all``: every HTTP and websocket request needs one, but ``OPTIONS`` and :attr:`open_paths`."""
    open_paths: tuple[str, ...] = ("/health",)
    """Paths that never need a key (exact matches), on top of every ``OPTIONS`` request."""
    catalog: ModelCatalog | None = None
    """Resolves aliases, placeholders (``dummy``) and a model's task for scope checks."""
    max_body_bytes: int = 10 * 1024 * 1024
    """Largest body read when a scoped key's model travels in the body."""
    realm: str = "hfasgi"
    """The realm in ``WWW-Authenticate``."""

    def __post_init__(self) -> None:
        if self.store is None and self.jwt is None:
            raise ValueError("AuthConfig needs a key store, a JWT verifier, or both")
        if self.protect not in ("gateway", "all"):
            raise ValueError(f"AuthConfig.protect must be 'gateway' or 'all', got {self.protect!r}")


class ApiKeyAuth:
    """Refuse callers without a valid key; put the caller's :class:`Principal` in the request context.

    Keys come from ``x-api-key`` or ``Authorization: Bearer <key>`` (``x-api-key`` wins, since
    ``huggingface_hub`` may put an unrelated ``HF_TOKEN`` in ``Authorization``). Only the key's hash is
    looked up, and compared in constant time. A missing or unknown key gets 401 with
    ``WWW-Authenticate: Bearer`` (``error_type`` ``authentication``); a key outside its models or tasks
    gets 403 (``permission``); a key store that does not answer gets 503 with ``Retry-After``. A
    websocket is refused by closing it with code 4401/4403. Lifespan scopes pass through.
    """

    def __init__(self, app: ASGIApp, *, config: AuthConfig) -> None:
        self.app = app
        self.config = config
        self._open = frozenset(config.routes.prefix + p for p in config.open_paths) | frozenset(config.open_paths)
        self._challenge = f'Bearer realm="{config.realm}"'.encode()

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        kind = s["type"]
        if kind == "http":
            if s["method"] == "OPTIONS" or s["path"] in self._open:
                await self.app(s, receive, send)
                return
            try:
                op = self.config.routes.recognize(s)
            except GatewayError as err:
                await err.send(s, send)
                return
            if op is None and self.config.protect == "gateway":
                await self.app(s, receive, send)
                return
        elif kind == "websocket" and self.config.protect == "all" and s["path"] not in self._open:
            op = None
        else:
            await self.app(s, receive, send)
            return
        ctx = get_context(s)
        try:
            principal = await self._authenticate(s)
            ctx.principal = principal
            if ctx.span is not None:
                ctx.span.set_attribute("hfasgi.auth.key_id", principal.id)
            if op is not None and principal.scoped and await self._check_scope(s, receive, ctx, op, principal):
                receive = replay_receive(s, receive)  # this layer read the body: the app still gets it
        except GatewayError as err:
            if ctx.span is not None:
                reason = {"hfasgi.auth.reason": err.error_type, "http.response.status_code": err.status}
                ctx.span.add_event("hfasgi.auth.refused", reason)
            await err.send(s, send)
            return
        except ClientDisconnected:
            return
        await self.app(s, receive, send)

    async def _authenticate(self, scope: Scope) -> Principal:
        credential = _credential(scope["headers"])
        if not credential:
            raise self._unauthorized(_MISSING_KEY)
        config = self.config
        if config.jwt is not None and config.jwt.looks_like_jwt(credential):
            try:
                return config.jwt.verify(credential)
            except ValueError as exc:
                raise self._unauthorized(f"Invalid token: {exc}", "invalid_token") from None
        if config.store is None:
            raise self._unauthorized("Invalid token: expected a signed bearer token (JWT)", "invalid_token")
        digest = hash_key(credential)
        try:
            record = await config.store.find(digest)
        except STORE_ERRORS as exc:
            logger.error("hfasgi: the key store failed (%s); refusing the request", type(exc).__name__)
            raise GatewayError(
                503, "authentication_unavailable", _UNAVAILABLE, headers=[(b"retry-after", b"1")]
            ) from None
        if record is None or not hmac.compare_digest(record.hash, digest):
            hint = _HUB_TOKEN_HINT if credential.startswith("hf_") else ""
            raise self._unauthorized(_INVALID_KEY + hint, "invalid_token")
        return record.principal

    def _unauthorized(self, message: str, error: str | None = None) -> GatewayError:
        challenge = self._challenge + (f', error="{error}"'.encode() if error else b"")
        headers = [(b"www-authenticate", challenge), _error_message(message)]
        return GatewayError(401, "authentication", message, headers=headers)

    async def _check_scope(
        self, scope: Scope, receive: Receive, ctx: RequestContext, op: Operation, principal: Principal
    ) -> bool:
        """403 unless the request's model and task are in the principal's scope; ``True`` if it read the body."""
        if op.route in CATALOG_ROUTES:
            return False  # listing what exists is not using a model
        model = op.path_model
        read = False
        if op.model_in_body:
            read = ctx.body is None
            await read_body(scope, receive, self.config.max_body_bytes)
            document = ctx.json()
            if isinstance(document, dict) and isinstance(document.get("model"), str):
                model = document["model"]
        task = op.task
        catalog = self.config.catalog
        if catalog is not None:
            route = catalog.resolve(model)
            model = route.model
            if not op.task_forced and route.task is not None:
                task = route.task
        if principal.models is not None:
            bare = (model or "").partition(":")[0]
            if not bare or not principal.allows_model(bare):
                named = f"model {bare!r}" if bare else "the default model"
                raise _forbidden(f"This {_what(principal)} may not use {named}")
        if not principal.allows_task(task):
            named = f"task {task!r}" if task else "this route (its task is unknown)"
            raise _forbidden(f"This {_what(principal)} may not use {named}")
        return read


def _error_message(message: str) -> tuple[bytes, bytes]:
    """``X-Error-Message``: what ``huggingface_hub`` puts in "403 Forbidden: <message>." (it reads no body there)."""
    return (b"x-error-message", message.encode("ascii", "backslashreplace"))


def _what(principal: Principal) -> str:
    return "token" if principal.source == "jwt" else "key"


def _forbidden(message: str) -> GatewayError:
    return GatewayError(403, "permission", message, headers=[_error_message(message)])


def _credential(headers: Any) -> str:
    """The caller's key: ``x-api-key``, else the ``Authorization: Bearer`` token ("" when there is none)."""
    bearer = ""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"x-api-key":
            key: str = value.decode("latin-1").strip()
            if key:  # an empty x-api-key does not hide a bearer
                return key
        if lowered == b"authorization" and not bearer:
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower().rstrip(":") == "bearer":  # also the "Bearer: hf_..." form (hf_api.md §1.1)
                bearer = token.strip()
    return bearer
