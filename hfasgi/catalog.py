"""The model catalog: which models exist, their task, which upstream serves them and under what id.

With no catalog at all, every model id goes to the default upstream unchanged, so the pack works
out of the box. A TOML file adds upstreams and models::

    default_model = "meta-llama/Llama-3.1-8B-Instruct"   # for "model": "dummy"/"tgi" and TGI routes
    allow_unlisted = true                                  # unlisted ids go to the default upstream

    [upstreams.local]                                      # "default" is the one from the settings
    kind = "openai"                                        # router | serverless | tgi | openai
    url = "http://127.0.0.1:8000"
    token_env = "LOCAL_TOKEN"                              # optional; router/serverless default to HF_TOKEN
    timeout = 120                                          # optional, seconds (also connect_timeout, read_timeout)

    [[models]]
    id = "smollm2"                                         # what clients ask for
    upstream = "local"
    upstream_model = "/srv/models/smollm2"                 # what the upstream calls it (default: id)
    task = "chat-completion"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfasgi.errors import ErrorType, GatewayError
from hfasgi.forwarding.upstream import Timeouts, Upstream, UpstreamKind

__all__ = ["PLACEHOLDER_MODELS", "ModelCatalog", "ModelEntry", "ModelRoute"]

PLACEHOLDER_MODELS = frozenset({"", "dummy", "tgi"})
"""Model names clients send when they mean "whatever this server serves" (HFH sends ``dummy``)."""

# Router provider-selection suffixes (docs/hf_api.md §1.3): passed to the router as they are,
# stripped for other upstreams, where they mean nothing.
_SUFFIXES = frozenset(
    "fastest cheapest preferred auto baseten cerebras cohere deepinfra fal-ai featherless-ai fireworks-ai "
    "groq hf-inference hyperbolic nebius novita nscale openai ovhcloud publicai replicate sambanova "
    "scaleway together wavespeed zai-org".split()
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelEntry:
    """One catalog model."""

    id: str
    """The id clients use."""
    upstream: str = "default"
    """The name of the upstream that serves it."""
    upstream_model: str | None = None
    """The upstream's own id for it (default: ``id``)."""
    task: str | None = None
    """Its HF task (``chat-completion``, ``text-classification``, ...); decides task routes."""

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a catalog model needs a non-empty id")


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """Where a requested model goes."""

    model: str
    """The id the client asked for (after placeholder resolution)."""
    upstream: Upstream
    upstream_model: str
    task: str | None


class ModelCatalog:
    """Upstreams and models; resolves a requested model id to a :class:`ModelRoute`."""

    __slots__ = ("_cache", "allow_unlisted", "default_model", "default_upstream", "models", "upstreams")

    def __init__(
        self,
        upstreams: Iterable[Upstream],
        models: Iterable[ModelEntry] = (),
        *,
        default_model: str | None = None,
        allow_unlisted: bool = True,
    ) -> None:
        self.upstreams: Mapping[str, Upstream] = {u.name: u for u in upstreams}
        if "default" not in self.upstreams:
            raise ValueError("the catalog needs an upstream named 'default'")
        self.default_upstream = self.upstreams["default"]
        self.models: Mapping[str, ModelEntry] = {m.id: m for m in models}
        for entry in self.models.values():
            if entry.upstream not in self.upstreams:
                raise ValueError(
                    f"model {entry.id!r}: unknown upstream {entry.upstream!r} "
                    f"(known: {', '.join(sorted(self.upstreams))})"
                )
        self.default_model = default_model or None
        self.allow_unlisted = allow_unlisted
        self._cache: dict[str, ModelRoute] = {}

    @classmethod
    def single(cls, upstream: Upstream, *, default_model: str | None = None) -> ModelCatalog:
        """A catalog with one upstream and no listed model: every id goes there unchanged."""
        return cls([upstream], default_model=default_model)

    @classmethod
    def from_toml(
        cls, path: str | Path, default: Upstream, *, environ: Mapping[str, str] | None = None
    ) -> ModelCatalog:
        """Load a catalog file; ``default`` is the upstream from the settings (a file may redefine it)."""
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"model catalog {str(path)!r}: {exc}") from exc
        return cls.from_dict(doc, default, environ=environ, source=str(path))

    @classmethod
    def from_dict(
        cls,
        doc: Mapping[str, Any],
        default: Upstream,
        *,
        environ: Mapping[str, str] | None = None,
        source: str = "catalog",
    ) -> ModelCatalog:
        """Build a catalog from parsed TOML (see the module docstring for the format)."""
        env = os.environ if environ is None else environ
        unknown = set(doc) - {"default_model", "allow_unlisted", "upstreams", "models"}
        if unknown:
            raise ValueError(f"{source}: unknown keys {sorted(unknown)}")
        upstreams = {"default": default}
        for name, spec in dict(doc.get("upstreams", {})).items():
            upstreams[name] = _upstream(name, spec, env, source)
        models = []
        for i, spec in enumerate(doc.get("models", [])):
            if not isinstance(spec, dict):
                raise ValueError(f"{source}: models[{i}] must be a table")
            extra = set(spec) - {"id", "upstream", "upstream_model", "task"}
            if extra:
                raise ValueError(f"{source}: models[{i}]: unknown keys {sorted(extra)}")
            try:
                models.append(ModelEntry(**spec))
            except TypeError as exc:
                raise ValueError(f"{source}: models[{i}]: {exc}") from None
        return cls(
            upstreams.values(),
            models,
            default_model=doc.get("default_model"),
            allow_unlisted=bool(doc.get("allow_unlisted", True)),
        )

    def resolve(self, model: str | None) -> ModelRoute:
        """Where ``model`` goes. Placeholders (``dummy``, ``tgi``, none) mean the default model.

        Raises a 400 :class:`GatewayError` when no model is given and none is configured, and a 404
        when the id is not listed and unlisted ids are not allowed.
        """
        if model is None or model in PLACEHOLDER_MODELS:
            if self.default_model is None:
                if self.default_upstream.kind is UpstreamKind.TGI:
                    return ModelRoute(model or "tgi", self.default_upstream, model or "tgi", None)
                raise GatewayError(
                    400,
                    ErrorType.MODEL_REQUIRED,
                    "No model was given (or a placeholder such as 'dummy') and the gateway has no default "
                    "model: pass the model id, or set default_model (HFASGI_DEFAULT_MODEL)",
                )
            model = self.default_model
        route = self._cache.get(model)
        if route is None:
            route = self._resolve(model)
            if len(self._cache) < 4096:
                self._cache[model] = route
        return route

    def _resolve(self, model: str) -> ModelRoute:
        entry, base, suffix = self.models.get(model), model, ""
        if entry is None:
            head, sep, tail = model.rpartition(":")
            if sep and tail in _SUFFIXES:
                base, suffix = head, sep + tail
                entry = self.models.get(head)
        if entry is not None:
            upstream = self.upstreams[entry.upstream]
            target = entry.upstream_model or entry.id
            task = entry.task
        elif self.allow_unlisted:
            upstream, target, task = self.default_upstream, base, None
        else:
            raise GatewayError(404, ErrorType.MODEL_NOT_FOUND, f"Model {model!r} is not served by this gateway")
        if suffix and upstream.kind is UpstreamKind.ROUTER:
            target += suffix
        return ModelRoute(model, upstream, target, task)


def _upstream(name: str, spec: Any, env: Mapping[str, str], source: str) -> Upstream:
    where = f"{source}: upstreams.{name}"
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a table")
    extra = set(spec) - {"kind", "url", "token", "token_env", "timeout", "connect_timeout", "read_timeout"}
    if extra:
        raise ValueError(f"{where}: unknown keys {sorted(extra)}")
    try:
        kind = UpstreamKind(spec.get("kind", "router"))
    except ValueError:
        raise ValueError(
            f"{where}.kind must be one of {[k.value for k in UpstreamKind]}, got {spec.get('kind')!r}"
        ) from None
    if "url" not in spec:
        raise ValueError(f"{where}.url is required")
    token = spec.get("token")
    if token is None and "token_env" in spec:
        token = env.get(spec["token_env"]) or None
    elif token is None and kind in (UpstreamKind.ROUTER, UpstreamKind.SERVERLESS):
        token = env.get("HF_TOKEN") or None
    defaults = Timeouts()
    try:
        timeouts = Timeouts(
            connect=float(spec.get("connect_timeout", defaults.connect)),
            total=float(spec.get("timeout", defaults.total)),
            read=float(spec.get("read_timeout", defaults.read)),
        )
        return Upstream(name=name, kind=kind, url=str(spec["url"]), token=token, timeouts=timeouts)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None
