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
    parameters = { temperature = 0.7 }                     # optional: default request parameters

A later ``[[models]]`` with the same ``id`` replaces an earlier one, so :meth:`ModelCatalog.add` can
append a mapping to the file it was loaded from without editing what is already there.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hfasgi.errors import ErrorType, GatewayError
from hfasgi.files import locked, replace_atomically
from hfasgi.forwarding.upstream import Timeouts, Upstream, UpstreamKind

__all__ = ["PLACEHOLDER_MODELS", "CatalogWriteError", "ModelCatalog", "ModelEntry", "ModelRoute"]

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
    parameters: Mapping[str, Any] | None = None
    """Default request parameters (the provider task API merges a request's own over them)."""

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a catalog model needs a non-empty id")
        if self.parameters is not None:
            if not isinstance(self.parameters, Mapping) or not all(isinstance(k, str) for k in self.parameters):
                raise ValueError(f"model {self.id!r}: parameters must be a table with string keys")
            object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))


class CatalogWriteError(Exception):
    """The catalog file could not be updated (unwritable, or it no longer accepts a ``[[models]]`` block)."""


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

    __slots__ = ("_cache", "allow_unlisted", "default_model", "default_upstream", "models", "path", "upstreams")

    def __init__(
        self,
        upstreams: Iterable[Upstream],
        models: Iterable[ModelEntry] = (),
        *,
        default_model: str | None = None,
        allow_unlisted: bool = True,
        path: str | Path | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        """The TOML file the catalog was loaded from; :meth:`add` appends new models to it."""
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
        catalog = cls.from_dict(doc, default, environ=environ, source=str(path))
        catalog.path = Path(path)
        return catalog

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
            extra = set(spec) - {"id", "upstream", "upstream_model", "task", "parameters"}
            if extra:
                raise ValueError(f"{source}: models[{i}]: unknown keys {sorted(extra)}")
            if "parameters" in spec and not isinstance(spec["parameters"], dict):
                raise ValueError(f"{source}: models[{i}].parameters must be a table")
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

    def entry(self, model: str) -> ModelEntry | None:
        """The listed entry of ``model`` (also when it carries a ``:provider`` suffix), or ``None``."""
        entry = self.models.get(model)
        if entry is None:
            head, sep, tail = model.rpartition(":")
            if sep and tail in _SUFFIXES:
                entry = self.models.get(head)
        return entry

    def add(self, entry: ModelEntry, *, persist: bool = True) -> None:
        """List ``entry`` (replacing a model with the same id) and, when the catalog has a file, save it there.

        Saving appends a ``[[models]]`` block to the file atomically (a temporary file beside it, then a
        rename), keeping its text and comments, under a lock beside it (``<file>.lock``) so that two
        processes never lose each other's mapping. The new file is parsed before it replaces the old one.

        Raises ``ValueError`` for an entry that cannot be listed (unknown upstream) or stored (a ``null``
        or non-finite parameter), and :class:`CatalogWriteError` when the file cannot be updated; in
        both cases the catalog is left as it was.
        """
        if entry.upstream not in self.upstreams:
            raise ValueError(
                f"model {entry.id!r}: unknown upstream {entry.upstream!r} (known: {', '.join(sorted(self.upstreams))})"
            )
        lines = _model_lines(_model_table(entry), f"model {entry.id!r}")  # storable, with a file or without
        if persist and self.path is not None:
            _append_model(self.path, lines)
        self.models = {**self.models, entry.id: entry}
        self._cache = {}

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


# --- appending a model to the catalog file ------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_\-]+")
_TOML_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\", 8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}
_TOML_ESCAPES.update({c: f"\\u{c:04X}" for c in (*range(0x20), 0x7F) if c not in _TOML_ESCAPES})
_INT64 = range(-(2**63), 2**63)


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, other characters as they are."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a lone surrogate cannot be stored in a TOML file") from None
    return '"' + text.translate(_TOML_ESCAPES) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value not in _INT64:
            raise ValueError(f"{where}: {value} does not fit a TOML integer (64 bits)")
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Mapping):
        items = [f"{_toml_key(str(k))} = {_toml_value(v, f'{where}.{k}')}" for k, v in value.items()]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, f"{where}[{i}]") for i, v in enumerate(value)) + "]"
    if value is None:
        raise ValueError(f"{where}: null cannot be stored in TOML (leave the key out)")
    raise ValueError(f"{where}: a {type(value).__name__} cannot be stored in TOML")


def _model_lines(table: Mapping[str, Any], where: str) -> list[str]:
    return [f"{key} = {_toml_value(value, f'{where}.{key}')}" for key, value in table.items()]


def _model_table(entry: ModelEntry) -> dict[str, Any]:
    table: dict[str, Any] = {"id": entry.id, "upstream": entry.upstream}
    if entry.upstream_model is not None:
        table["upstream_model"] = entry.upstream_model
    if entry.task is not None:
        table["task"] = entry.task
    if entry.parameters is not None:
        table["parameters"] = entry.parameters
    return table


def _append_model(path: Path, lines: list[str]) -> None:
    """Append a ``[[models]]`` block of ``lines`` to the catalog file at ``path`` (see :meth:`ModelCatalog.add`)."""
    stamp = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    block = "\n".join([f"# added by hfasgi at {stamp}", "[[models]]", *lines, ""])
    target = Path(os.path.realpath(path))
    try:
        with locked(target):
            try:
                text = target.read_text(encoding="utf-8")
                mode: int | None = os.stat(target).st_mode & 0o7777
            except FileNotFoundError:
                text, mode = "", None
            except UnicodeDecodeError:
                raise CatalogWriteError(f"model catalog {str(path)!r} is not UTF-8 text") from None
            if text and not text.endswith("\n"):
                text += "\n"
            updated = text + ("\n" if text else "") + block
            _check_appended(updated, lines, target)
            replace_atomically(target, updated, mode)
    except OSError as exc:
        raise CatalogWriteError(f"model catalog {str(path)!r}: {exc.strerror or exc}") from None


def _check_appended(text: str, lines: list[str], target: Path) -> None:
    """The updated file must parse and end with the model just written (it may define ``models`` inline)."""
    try:
        models = tomllib.loads(text).get("models")
    except tomllib.TOMLDecodeError as exc:
        raise CatalogWriteError(f"model catalog {str(target)!r} would not load after the update: {exc}") from None
    last = models[-1] if isinstance(models, list) and models else None
    try:
        appended = isinstance(last, dict) and _model_lines(last, "") == lines
    except ValueError:  # the last model is not ours: it holds what we never write (a date, ...)
        appended = False
    if not appended:
        raise CatalogWriteError(f"model catalog {str(target)!r}: its models do not accept a [[models]] block")
