"""What a request *is*: the client-facing route table, recognised once per request.

Model ids contain ``/`` (``org/name``), so ids are taken from known path shapes, never split blindly:

====================================================  ===================  =========
path                                                  route                dialect
====================================================  ===================  =========
``POST /v1/chat/completions``                         chat                 openai
``POST /models/{model}/v1/chat/completions``          chat                 openai
``POST /v1/completions``                              completions          openai
``POST /v1/embeddings``                               embeddings           openai
``GET /v1/models`` and ``GET /v1/models/{model}``     models               openai
``POST /models/{model}``                              task                 task
``POST /models/{model}/pipeline/{task}``              task (task forced)   task
``POST /pipeline/{task}/{model}``                     task (task forced)   task
``POST /generate``, ``/generate_stream``, ``/``       TGI generate         tgi
``GET /info``                                         info                 tgi
====================================================  ===================  =========
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from hfasgi.context import get_context
from hfasgi.errors import ErrorType, GatewayError
from hfasgi.types import Scope

__all__ = ["CATALOG_ROUTES", "DEFAULT_ROUTES", "Dialect", "Operation", "Route", "Routes", "is_model_id"]


class Dialect(StrEnum):
    """The API family a client speaks on a route."""

    OPENAI = "openai"
    TGI = "tgi"
    TASK = "task"


class Route(StrEnum):
    """The client-facing inference routes."""

    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    MODELS = "models"
    TASK = "task"
    GENERATE = "generate"
    GENERATE_STREAM = "generate_stream"
    COMPAT_GENERATE = "compat_generate"
    INFO = "info"
    TASK_MODELS = "task_models"
    """``GET {tasks prefix}models`` of the provider-style task API (answered from the catalog)."""
    TASK_MODEL_MAP = "task_model_map"
    """``POST {tasks prefix}models/map`` of the provider-style task API (adds a catalog model)."""
    BILLING_USAGE = "billing_usage"
    """``GET {tasks prefix}billing/usage``: the caller's usage records (answered by the usage meter)."""
    BILLING_COST = "billing_cost"
    """``POST {tasks prefix}billing/cost``: prices requests without running them (answered by the usage meter)."""


_DIALECT = {
    Route.CHAT: Dialect.OPENAI,
    Route.COMPLETIONS: Dialect.OPENAI,
    Route.EMBEDDINGS: Dialect.OPENAI,
    Route.MODELS: Dialect.OPENAI,
    Route.TASK: Dialect.TASK,
    Route.GENERATE: Dialect.TGI,
    Route.GENERATE_STREAM: Dialect.TGI,
    Route.COMPAT_GENERATE: Dialect.TGI,
    Route.INFO: Dialect.TGI,
    Route.TASK_MODELS: Dialect.TASK,
    Route.TASK_MODEL_MAP: Dialect.TASK,
    Route.BILLING_USAGE: Dialect.TASK,
    Route.BILLING_COST: Dialect.TASK,
}

CATALOG_ROUTES = frozenset(
    {Route.MODELS, Route.INFO, Route.TASK_MODELS, Route.TASK_MODEL_MAP, Route.BILLING_USAGE, Route.BILLING_COST}
)
"""Routes about the gateway (its models, its billing) rather than inference: no model or task scope, no limits,
no schema."""
_TASK = {
    Route.CHAT: "chat-completion",
    Route.COMPLETIONS: "text-generation",
    Route.EMBEDDINGS: "feature-extraction",
    Route.GENERATE: "text-generation",
    Route.GENERATE_STREAM: "text-generation",
    Route.COMPAT_GENERATE: "text-generation",
}

# One path segment of a model id; ids are `name`, `org/name`, optionally `:suffix` (router provider).
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_MODEL_RE = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*(?::[A-Za-z0-9_.\-]+)?")
_TASK_RE = re.compile(r"[a-z][a-z0-9\-]*")


@dataclass(frozen=True, slots=True)
class Operation:
    """One recognised inference request."""

    route: Route
    task: str | None = None
    """The HF task; for ``/models/{id}`` it comes later from the catalog (``None`` here)."""
    path_model: str | None = None
    """The model id taken from the URL path, if the route carries one."""
    task_forced: bool = False
    """The URL named the task (``/pipeline/{task}``), so it overrides the catalog."""

    @property
    def dialect(self) -> Dialect:
        """The client's dialect on this route."""
        return _DIALECT[self.route]

    @property
    def model_in_body(self) -> bool:
        """Whether the model id travels in the JSON body (OpenAI routes without a path model)."""
        return self.path_model is None and self.route in (Route.CHAT, Route.COMPLETIONS, Route.EMBEDDINGS)


def _fixed(route: Route) -> Operation:
    return Operation(route, _TASK.get(route))


class Routes:
    """The route table, optionally under a prefix (``Routes("/hf")`` serves ``/hf/v1/chat/completions``).

    Recognition is a dictionary lookup for fixed paths and a few string tests for the model paths;
    it runs once per request and is cached in the request context.
    """

    __slots__ = ("_fixed", "_known", "prefix")

    def __init__(self, prefix: str = "") -> None:
        prefix = prefix.rstrip("/")
        if prefix and not prefix.startswith("/"):
            raise ValueError(f"Routes.prefix must start with '/', got {prefix!r}")
        self.prefix = prefix
        self._fixed: dict[tuple[str, str], Operation] = {
            ("POST", "/v1/chat/completions"): _fixed(Route.CHAT),
            ("POST", "/v1/completions"): _fixed(Route.COMPLETIONS),
            ("POST", "/v1/embeddings"): _fixed(Route.EMBEDDINGS),
            ("GET", "/v1/models"): _fixed(Route.MODELS),
            ("POST", "/generate"): _fixed(Route.GENERATE),
            ("POST", "/generate_stream"): _fixed(Route.GENERATE_STREAM),
            ("POST", "/"): _fixed(Route.COMPAT_GENERATE),
            ("GET", "/info"): _fixed(Route.INFO),
        }
        self._known = {path for _, path in self._fixed}

    def recognize(self, scope: Scope) -> Operation | None:
        """The request's operation (``None`` for a route that is not ours), computed once per request."""
        ctx = get_context(scope)
        if not ctx.recognized:
            ctx.recognized = True
            if scope["type"] == "http":
                ctx.operation = self.match(scope["method"], scope["path"])
        return ctx.operation

    def match(self, method: str, path: str) -> Operation | None:
        """The operation for a method and a (decoded) path, or ``None``.

        Raises a 400 :class:`GatewayError` when a model path is ours but the id in it is malformed
        (ids go into upstream URLs, so only safe characters are accepted).
        """
        if self.prefix:
            if not path.startswith(self.prefix):
                return None
            path = path[len(self.prefix) :] or "/"
        op = self._fixed.get((method, path))
        if op is not None:
            return op
        if method == "POST":
            if path.startswith("/models/"):
                rest = path[8:]
                if rest.endswith("/v1/chat/completions"):
                    return Operation(Route.CHAT, "chat-completion", _model(rest[:-20]))
                model, sep, task = rest.rpartition("/pipeline/")
                if sep:
                    return Operation(Route.TASK, _task(task), _model(model), task_forced=True)
                return Operation(Route.TASK, None, _model(rest))
            if path.startswith("/pipeline/"):
                task, _, model = path[10:].partition("/")
                return Operation(Route.TASK, _task(task), _model(model), task_forced=True)
        elif method == "GET" and path.startswith("/v1/models/"):
            return Operation(Route.MODELS, None, _model(path[11:]))
        return None

    def allowed_methods(self, path: str) -> list[str]:
        """The methods our routes accept on ``path`` (for a 405's ``Allow``), empty when it is not ours."""
        if self.prefix:
            if not path.startswith(self.prefix):
                return []
            path = path[len(self.prefix) :] or "/"
        methods = [m for m in ("GET", "POST") if self._fixed.get((m, path)) is not None]
        if not methods and (path.startswith(("/models/", "/pipeline/"))):
            methods = ["POST"]
        elif not methods and path.startswith("/v1/models/"):
            methods = ["GET"]
        return methods


def is_model_id(model_id: str) -> bool:
    """Whether ``model_id`` is a safe model id (``name``, ``org/name``, ``org/name:provider``): ids go into URLs."""
    return len(model_id) <= 256 and _MODEL_RE.fullmatch(model_id) is not None


def _model(model_id: str) -> str:
    if not is_model_id(model_id):
        raise GatewayError(
            400,
            ErrorType.INVALID_REQUEST,
            f"Invalid model id in the URL: {model_id[:100]!r} (expected 'name' or 'org/name')",
        )
    return model_id


def _task(task: str) -> str:
    if not _TASK_RE.fullmatch(task) or len(task) > 64:
        raise GatewayError(400, ErrorType.INVALID_REQUEST, f"Invalid task name in the URL: {task[:64]!r}")
    return task


DEFAULT_ROUTES = Routes()
"""The route table at the root path."""
