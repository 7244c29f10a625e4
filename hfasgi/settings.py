"""Settings of the reference app: defaults, then a TOML file, then environment variables, then arguments.

Environment variables (names are stable):

==============================  ========================================================================
``HFASGI_UPSTREAM_URL``         the upstream base URL (default ``https://router.huggingface.co``)
``HFASGI_UPSTREAM_KIND``        ``router`` (default), ``serverless``, ``tgi`` or ``openai``
``HF_TOKEN``                    the server-side Hugging Face token sent upstream
``HFASGI_UPSTREAM_TIMEOUT``     seconds for a whole non-streamed exchange (default 300)
``HFASGI_MAX_BODY_BYTES``       the largest request body accepted (default 10 MiB)
``HFASGI_MODELS``               a model catalog TOML file (see :mod:`hfasgi.catalog`)
``HFASGI_DEFAULT_MODEL``        the model for TGI routes and ``"model": "dummy"``
``HFASGI_UPSTREAM_ATTEMPTS``    attempts per upstream request on connection errors and 429 (default 3)
``HFASGI_LOADING_WAIT``         seconds to wait out a loading model (503 + ``estimated_time``, default 30)
``HFASGI_API_KEYS``             comma-separated API keys (``key`` or ``name=key``), for development
``HFASGI_API_KEYS_FILE``        a key file written by ``hfasgi keys`` (hashes only)
``HFASGI_KEY_STORE``            ``local`` (default: the two above) or ``redis`` (also keys in Redis)
``HFASGI_RATE_LIMIT``           requests per key, e.g. ``60/minute`` (default: none)
``HFASGI_TOKEN_LIMIT``          tokens per key, e.g. ``100000/minute`` (default: none)
``HFASGI_DEFAULT_MAX_TOKENS``   the output budget reserved when a request names none (default 4096)
``HFASGI_REDIS_URL``            Redis for limits shared by every replica (and ``HFASGI_KEY_STORE=redis``)
``HFASGI_RATE_LIMIT_FAILURE``   when Redis is down: ``open`` (serve, uncounted; default) or ``closed`` (503)
``HFASGI_JWT_JWKS_FILE``        accept JWT bearer tokens signed by a key of this JWKS file
``HFASGI_JWT_ISSUER``           the required ``iss`` of those tokens
``HFASGI_JWT_AUDIENCE``         the required ``aud`` of those tokens
``HFASGI_NO_AUTH``              ``1`` to run without authentication (as ``hfasgi serve --no-auth``)
``HFASGI_VALIDATE``             ``0`` to forward bodies unchecked (default ``1``: the task schemas apply)
``HFASGI_CACHE_TTL``            seconds a deterministic answer is served from the cache (default 0: no cache)
``HFASGI_CACHE_MAX_ENTRIES``    answers the in-memory cache holds (default 1024; Redis when set is shared)
``HFASGI_USAGE_DB``             usage records: a SQLite file (default ``hfasgi-usage.db``), a
                                ``postgresql://`` URL, or ``off``
``HFASGI_USAGE_SPOOL``          the folder where usage records wait for the database (default: beside it)
``HFASGI_PRICES``               a TOML price table (nano-USD per token or per request, per model)
``HFASGI_LOCAL_MODEL``          a model folder or id that ``hfasgi serve`` runs itself with ``transformers serve``
``HFASGI_LOCAL_START_TIMEOUT``  seconds to wait for that local model to answer (default 300)
``HFASGI_SSL_CERTFILE``         serve HTTPS with this certificate (PEM) ...
``HFASGI_SSL_KEYFILE``          ... and this private key
==============================  ========================================================================

With no API key, key file, Redis key store or JWKS file configured, the reference app refuses to
start unless authentication is switched off explicitly (``--no-auth``).

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
from hfasgi.limits import Limit

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
    "api_keys": "HFASGI_API_KEYS",
    "api_keys_file": "HFASGI_API_KEYS_FILE",
    "key_store": "HFASGI_KEY_STORE",
    "rate_limit": "HFASGI_RATE_LIMIT",
    "token_limit": "HFASGI_TOKEN_LIMIT",
    "default_max_tokens": "HFASGI_DEFAULT_MAX_TOKENS",
    "redis_url": "HFASGI_REDIS_URL",
    "rate_limit_failure": "HFASGI_RATE_LIMIT_FAILURE",
    "jwt_jwks_file": "HFASGI_JWT_JWKS_FILE",
    "jwt_issuer": "HFASGI_JWT_ISSUER",
    "jwt_audience": "HFASGI_JWT_AUDIENCE",
    "no_auth": "HFASGI_NO_AUTH",
    "validate": "HFASGI_VALIDATE",
    "tasks_prefix": "HFASGI_TASKS_PREFIX",
    "audit_log": "HFASGI_AUDIT_LOG",
    "audit_bodies": "HFASGI_AUDIT_BODIES",
    "health_interval": "HFASGI_HEALTH_INTERVAL",
    "metrics": "HFASGI_METRICS",
    "cache_ttl": "HFASGI_CACHE_TTL",
    "cache_max_entries": "HFASGI_CACHE_MAX_ENTRIES",
    "usage_db": "HFASGI_USAGE_DB",
    "usage_spool": "HFASGI_USAGE_SPOOL",
    "prices_file": "HFASGI_PRICES",
    "local_model": "HFASGI_LOCAL_MODEL",
    "local_start_timeout": "HFASGI_LOCAL_START_TIMEOUT",
    "ssl_certfile": "HFASGI_SSL_CERTFILE",
    "ssl_keyfile": "HFASGI_SSL_KEYFILE",
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
    api_keys: str | None = field(default=None, repr=False)
    """Comma-separated API keys (``key`` or ``name=key``): convenient for development, kept in memory."""
    api_keys_file: str | None = None
    """A TOML key file (hashes only), written by ``hfasgi keys``; re-read when it changes."""
    key_store: str = "local"
    """``local``: keys from :attr:`api_keys` and :attr:`api_keys_file`; ``redis``: also keys in Redis."""
    rate_limit: str | None = None
    """Requests per key and window (``60/minute``); a key's own limit wins."""
    token_limit: str | None = None
    """Tokens per key and window (``100000/minute``), reserved up front and settled on the real usage."""
    default_max_tokens: int = 4096
    """The output tokens reserved (and asked for) when a token-limited request names no maximum."""
    redis_url: str | None = field(default=None, repr=False)
    """Redis shared by every replica: rate-limit counters (and keys, with ``key_store = "redis"``)."""
    rate_limit_failure: str = "open"
    """What the limiter does when Redis fails: ``open`` (serve, uncounted) or ``closed`` (refuse with 503)."""
    jwt_jwks_file: str | None = None
    """Accept JWT bearer tokens signed by a key of this JWKS (JSON) file."""
    jwt_issuer: str | None = None
    """The ``iss`` claim JWTs must carry."""
    jwt_audience: str | None = None
    """The ``aud`` claim JWTs must carry."""
    no_auth: bool = False
    """Run without authentication (anyone who reaches the gateway spends its token)."""
    validate: bool = True
    """Check request bodies against the route's or task's schema (422 naming the field) before forwarding."""
    tasks_prefix: str = "/hf/tasks/"
    """Where the provider-style task API is served (``/hf/tasks/summarization``, ...); empty: not served."""
    audit_log: str | None = None
    """One JSON line per request to this file (``-``: standard output); keys appear only as their id."""
    audit_bodies: bool = False
    """Also log request bodies in the audit log, secrets redacted (off: prompts never reach the log)."""
    health_interval: float = 10.0
    """Seconds between background probes of every upstream (``GET /health``, ``/health/upstream``)."""
    metrics: bool = True
    """Serve ``GET /metrics`` (Prometheus text) and record request metrics (needs the ``otel`` extra)."""
    cache_ttl: float = 0.0
    """Seconds a deterministic answer is served from the response cache (0, the default: no cache; answers are
    never reused unless the operator says for how long)."""
    cache_max_entries: int = 1024
    """Answers the in-memory response cache holds (the Redis cache, with :attr:`redis_url`, is bounded by TTL)."""
    usage_db: str | None = field(default="hfasgi-usage.db", repr=False)
    """Where usage records go: a SQLite file, a ``postgresql://`` URL, or ``None``/``off``: no metering."""
    usage_spool: str | None = None
    """The folder where usage records wait until the database has them (default: ``<db file>.spool`` beside a
    SQLite file, ``hfasgi-usage.spool`` for PostgreSQL)."""
    prices_file: str | None = None
    """A TOML price table: per model id ``input_nano_usd_per_token``, ``output_nano_usd_per_token`` or
    ``nano_usd_per_request`` (a model with no price costs 0)."""
    local_model: str | None = None
    """A model folder (or Hub id already in the local cache) that ``hfasgi serve`` runs as a child
    ``transformers serve`` and forwards to."""
    local_start_timeout: float = 300.0
    """Seconds to wait for :attr:`local_model` to answer before giving up at start-up."""
    ssl_certfile: str | None = None
    """Serve HTTPS with this PEM certificate (chain)."""
    ssl_keyfile: str | None = None
    """The private key of :attr:`ssl_certfile`."""

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
        for name in ("api_keys_file", "jwt_jwks_file", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{_name(name)}: {path!r} does not exist")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(f"{_name('ssl_certfile')} and {_name('ssl_keyfile')} go together: set both or neither")
        for name in ("rate_limit", "token_limit"):
            value = getattr(self, name)
            if value is not None:
                try:
                    Limit.parse(value)
                except ValueError as exc:
                    raise ValueError(f"{_name(name)}: {exc}") from None
        if self.key_store not in ("local", "redis"):
            raise ValueError(f"{_name('key_store')} must be 'local' or 'redis', got {self.key_store!r}")
        if self.rate_limit_failure not in ("open", "closed"):
            raise ValueError(
                f"{_name('rate_limit_failure')} must be 'open' or 'closed', got {self.rate_limit_failure!r}"
            )
        if self.default_max_tokens < 1:
            raise ValueError(f"{_name('default_max_tokens')} must be >= 1, got {self.default_max_tokens!r}")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{_name('redis_url')} must start with redis://, rediss:// or unix://")
        if self.key_store == "redis" and self.redis_url is None:
            raise ValueError(f"{_name('key_store')} = 'redis' needs {_name('redis_url')}")
        if not self.health_interval > 0:
            raise ValueError(f"{_name('health_interval')} must be > 0 seconds, got {self.health_interval!r}")
        if self.tasks_prefix and not (self.tasks_prefix.startswith("/") and self.tasks_prefix.endswith("/")):
            raise ValueError(
                f"{_name('tasks_prefix')} must start and end with '/' (or be empty), got {self.tasks_prefix!r}"
            )
        if self.cache_ttl < 0:
            raise ValueError(f"{_name('cache_ttl')} must be >= 0 seconds (0: off), got {self.cache_ttl!r}")
        if self.cache_max_entries < 1:
            raise ValueError(f"{_name('cache_max_entries')} must be >= 1, got {self.cache_max_entries!r}")
        if self.prices_file is not None and not Path(self.prices_file).is_file():
            raise ValueError(f"{_name('prices_file')}: {self.prices_file!r} does not exist")
        if self.usage_db is not None and self.usage_db.strip().lower() in ("", "off", "none", "0"):
            object.__setattr__(self, "usage_db", None)
        database = self.usage_db
        if database is not None and "://" in database and not database.startswith(_DATABASE_URLS):
            raise ValueError(f"{_name('usage_db')} must be a SQLite file path, a postgresql:// URL or 'off'; got a URL")
        if not self.local_start_timeout > 0:
            raise ValueError(f"{_name('local_start_timeout')} must be > 0 seconds, got {self.local_start_timeout!r}")
        if self.jwt_jwks_file is None and (self.jwt_issuer or self.jwt_audience):
            raise ValueError(f"{_name('jwt_issuer')} and {_name('jwt_audience')} need {_name('jwt_jwks_file')}")

    @property
    def auth_configured(self) -> bool:
        """Whether any way of authenticating callers is configured."""
        return bool(self.api_keys or self.api_keys_file or self.key_store == "redis" or self.jwt_jwks_file)

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
        "default_max_tokens": int,
        "health_interval": float,
        "cache_ttl": float,
        "cache_max_entries": int,
        "local_start_timeout": float,
    }
    for name, kind in numbers.items():
        if name in out and isinstance(out[name], str):
            try:
                out[name] = kind(out[name])
            except ValueError:
                variable = ENVIRONMENT.get(name, name)
                raise ValueError(f"{variable} must be a number, got {out[name]!r}") from None
    for name in ("no_auth", "validate", "audit_bodies", "metrics"):
        value = out.get(name)
        if isinstance(value, str):
            flag = _FLAGS.get(value.strip().lower())
            if flag is None:
                raise ValueError(f"{ENVIRONMENT[name]} must be 1/true/yes/on or 0/false/no/off, got {value!r}")
            out[name] = flag
    return out


_DATABASE_URLS = ("postgresql://", "postgres://", "sqlite:///")

_FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
