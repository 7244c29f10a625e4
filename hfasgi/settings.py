"""Settings of the reference app: defaults, then a TOML file, then environment variables, then arguments.

Environment variables (names are stable):

============================  ========================================================================
``HFASGI_UPSTREAM_URL``       the upstream base URL (default ``https://router.huggingface.co``)
``HFASGI_UPSTREAM_KIND``      ``router`` (default), ``serverless``, ``tgi`` or ``openai``
``HF_TOKEN``                  the server-side Hugging Face token sent upstream
``HFASGI_UPSTREAM_TIMEOUT``   seconds for a whole non-streamed exchange (default 300)
``HFASGI_MAX_BODY_BYTES``     the largest request body accepted (default 10 MiB)
``HFASGI_MODELS``             a model catalog TOML file (see :mod:`hfasgi.catalog`)
``HFASGI_DEFAULT_MODEL``      the model for TGI routes and ``"model": "dummy"``
``HFASGI_UPSTREAM_ATTEMPTS``  attempts per upstream request on connection errors and 429 (default 3)
``HFASGI_LOADING_WAIT``       seconds to wait out a loading model (503 + ``estimated_time``, default 30)
============================  ========================================================================

A ``--config`` TOML file uses the field names below (``upstream_url = "..."``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hfasgi.body import DEFAULT_MAX_BODY_BYTES
from hfasgi.forwarding.upstream import UpstreamKind

__all__ = ["ENVIRONMENT", "Settings"]

ENVIRONMENT: dict[str, str] = {
    "upstream_url": "HFASGI_UPSTREAM_URL",
    "upstream_kind": "HFASGI_UPSTREAM_KIND",
    "hf_token": "HF_TOKEN",
    "upstream_timeout": "HFASGI_UPSTREAM_TIMEOUT",
    "max_body_bytes": "HFASGI_MAX_BODY_BYTES",
    "models_file": "HFASGI_MODELS",
    "default_model": "HFASGI_DEFAULT_MODEL",
    "upstream_attempts": "HFASGI_UPSTREAM_ATTEMPTS",
    "loading_wait": "HFASGI_LOADING_WAIT",
}
"""Setting name → environment variable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the reference app needs; validated when built, so a bad value fails at start-up."""

    upstream_url: str = "https://router.huggingface.co"
    """Base URL of the default upstream."""
    upstream_kind: str = "router"
    """Kind of the default upstream: ``router``, ``serverless``, ``tgi`` or ``openai``."""
    hf_token: str | None = field(default=None, repr=False)
    """The gateway's own token, sent to the default upstream; never to clients, never logged."""
    upstream_timeout: float = 300.0
    """Seconds allowed for a whole non-streamed exchange (for a stream: until its first byte)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Request bodies larger than this are refused with 413."""
    models_file: str | None = None
    """Path of a model catalog TOML file."""
    default_model: str | None = None
    """The model used by TGI routes and for placeholder names such as ``dummy``."""
    host: str = "127.0.0.1"
    """Where ``hfasgi serve`` listens."""
    port: int = 8000
    """The port ``hfasgi serve`` listens on."""
    upstream_attempts: int = 3
    """Attempts per upstream request for connection errors and short-``Retry-After`` 429s (1: no retry)."""
    loading_wait: float = 30.0
    """Seconds to wait out a 503 "model is currently loading" before passing it on (0: never wait)."""

    def __post_init__(self) -> None:
        try:
            UpstreamKind(self.upstream_kind)
        except ValueError:
            kinds = ", ".join(k.value for k in UpstreamKind)
            raise ValueError(f"{_name('upstream_kind')} must be one of {kinds}; got {self.upstream_kind!r}") from None
        if not self.upstream_url.startswith(("http://", "https://")):
            raise ValueError(f"{_name('upstream_url')} must be an http(s) URL, got {self.upstream_url!r}")
        if not self.upstream_timeout > 0:
            raise ValueError(f"{_name('upstream_timeout')} must be > 0 seconds, got {self.upstream_timeout!r}")
        if self.max_body_bytes < 1:
            raise ValueError(f"{_name('max_body_bytes')} must be >= 1, got {self.max_body_bytes!r}")
        if self.upstream_attempts < 1:
            raise ValueError(f"{_name('upstream_attempts')} must be >= 1, got {self.upstream_attempts!r}")
        if self.loading_wait < 0:
            raise ValueError(f"{_name('loading_wait')} must be >= 0 seconds, got {self.loading_wait!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port!r}")
        if self.models_file is not None and not Path(self.models_file).is_file():
            raise ValueError(f"{_name('models_file')}: {self.models_file!r} does not exist")

    @classmethod
    def load(
        cls,
        config_file: str | Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Defaults, then ``config_file`` (TOML), then the environment, then ``overrides`` (``None`` ignored)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if config_file is not None:
            try:
                with open(config_file, "rb") as f:
                    doc = tomllib.load(f)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ValueError(f"config file {str(config_file)!r}: {exc}") from exc
            unknown = set(doc) - {f.name for f in fields(cls)}
            if unknown:
                raise ValueError(f"config file {str(config_file)!r}: unknown settings {sorted(unknown)}")
            values.update(doc)
        for name, variable in ENVIRONMENT.items():
            if env.get(variable):
                values[name] = env[variable]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**_coerce(values))

    def with_(self, **changes: Any) -> Settings:
        """A copy with some settings changed (validated again)."""
        return replace(self, **changes)


def _name(setting: str) -> str:
    """A setting's name for error messages, with its environment variable."""
    variable = ENVIRONMENT.get(setting)
    return f"{setting} ({variable})" if variable else setting


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    """Turn environment strings into the fields' types, naming the setting on failure."""
    out = dict(values)
    numbers = {
        "upstream_timeout": float,
        "max_body_bytes": int,
        "port": int,
        "upstream_attempts": int,
        "loading_wait": float,
    }
    for name, kind in numbers.items():
        if name in out and isinstance(out[name], str):
            try:
                out[name] = kind(out[name])
            except ValueError:
                variable = ENVIRONMENT.get(name, name)
                raise ValueError(f"{variable} must be a number, got {out[name]!r}") from None
    return out
