"""Upstreams: one HF-style server, the dialect it speaks, and how to build its URLs.

=============  ==========================================================================================
kind           what it is and the routes used
=============  ==========================================================================================
``router``     HF Inference Providers (``https://router.huggingface.co``): chat at ``/v1/chat/completions``,
               tasks at ``/hf-inference/models/{model}`` (``/pipeline/{task}`` for feature-extraction and
               sentence-similarity), ``GET /v1/models``.
``serverless`` the legacy serverless API: ``/models/{model}``, ``/pipeline/{task}/{model}`` when the client
               forced the task, chat at ``/models/{model}/v1/chat/completions``.
``tgi``        TGI or an Inference Endpoint (one model): ``/``, ``/generate``, ``/generate_stream``,
               ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``, ``/info``, ``/health``;
               task requests go to ``/``.
``openai``     OpenAI-compatible servers (``transformers serve``, vLLM): ``/v1/chat/completions``,
               ``/v1/completions``, ``/v1/embeddings``, ``/v1/models``.
=============  ==========================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from hfasgi.errors import ErrorType, GatewayError
from hfasgi.operations import Operation, Route

__all__ = ["Timeouts", "Upstream", "UpstreamCall", "UpstreamKind"]


class UpstreamKind(StrEnum):
    """The API family an upstream speaks."""

    ROUTER = "router"
    SERVERLESS = "serverless"
    TGI = "tgi"
    OPENAI = "openai"


_PIPELINE_TASKS = frozenset({"feature-extraction", "sentence-similarity"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Upstream timeouts, in seconds."""

    connect: float = 10.0
    """Establishing the TCP (and TLS) connection."""
    total: float = 300.0
    """The whole exchange for a non-streamed response; for a stream, until its first byte."""
    read: float = 120.0
    """The longest silence allowed between two chunks of a streamed response."""

    def __post_init__(self) -> None:
        for name in ("connect", "total", "read"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"Timeouts.{name} must be > 0 seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """Where one operation goes on one upstream."""

    url: str
    body_model: str | None
    """The model id to put in the JSON body's ``model`` (OpenAI-style bodies), else ``None``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Upstream:
    """One HF-style server hfasgi forwards to."""

    name: str = "default"
    kind: UpstreamKind = UpstreamKind.ROUTER
    url: str = "https://router.huggingface.co"
    token: str | None = field(default=None, repr=False)
    """Sent upstream as ``Authorization: Bearer <token>`` (``HF_TOKEN`` for Hugging Face)."""
    timeouts: Timeouts = field(default_factory=Timeouts)
    base: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", UpstreamKind(self.kind))
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"upstream {self.name!r}: url must be an http(s) URL, got {self.url!r}")
        base = self.url.rstrip("/")
        if self.kind is UpstreamKind.OPENAI and base.endswith("/v1"):
            base = base[:-3]  # accept both "http://h:8000" and "http://h:8000/v1"
        object.__setattr__(self, "base", base)

    def call(self, op: Operation, model: str, task: str | None) -> UpstreamCall:
        """The upstream URL (and body model) for ``op`` on ``model``, or a 400 when this kind can't serve it.

        ``model`` is the upstream's own id for the model; ``task`` the resolved HF task, if known.
        """
        route, kind, base = op.route, self.kind, self.base
        if route is Route.CHAT:
            if kind is UpstreamKind.SERVERLESS:
                return UpstreamCall(f"{base}/models/{model}/v1/chat/completions", model)
            return UpstreamCall(f"{base}/v1/chat/completions", model)
        if route is Route.TASK or (route is Route.COMPAT_GENERATE and kind is not UpstreamKind.OPENAI):
            if kind is UpstreamKind.ROUTER:
                if task in _PIPELINE_TASKS:
                    return UpstreamCall(f"{base}/hf-inference/models/{model}/pipeline/{task}", None)
                return UpstreamCall(f"{base}/hf-inference/models/{model}", None)
            if kind is UpstreamKind.SERVERLESS:
                if op.task_forced:
                    return UpstreamCall(f"{base}/pipeline/{task}/{model}", None)
                return UpstreamCall(f"{base}/models/{model}", None)
            if kind is UpstreamKind.TGI:
                return UpstreamCall(f"{base}/", None)
        elif route is Route.MODELS:
            if kind is not UpstreamKind.SERVERLESS:
                return UpstreamCall(f"{base}/v1/models", None)
        elif route is Route.INFO:
            if kind is UpstreamKind.TGI:
                return UpstreamCall(f"{base}/info", None)
        elif route in (Route.COMPLETIONS, Route.EMBEDDINGS):
            if kind is UpstreamKind.OPENAI or (kind is UpstreamKind.TGI and route is Route.COMPLETIONS):
                return UpstreamCall(f"{base}/v1/{route.value}", model)
        elif route in (Route.GENERATE, Route.GENERATE_STREAM) and kind is UpstreamKind.TGI:
            return UpstreamCall(f"{base}/{route.value}", None)
        raise GatewayError(
            400,
            ErrorType.UNSUPPORTED_OPERATION,
            f"The {route.value!r} route is not served by upstream {self.name!r} (kind {kind.value!r}); "
            f"route this model to an upstream that serves it in the model catalog",
        )

    def health_url(self) -> str:
        """A cheap URL that tells whether the upstream answers."""
        if self.kind in (UpstreamKind.TGI, UpstreamKind.OPENAI):
            return f"{self.base}/health"
        return self.base + "/"
