"""API keys: how they are made, hashed and described. A key itself is never stored, only its hash.

A key is ``hfasgi_`` followed by 43 URL-safe random characters (256 bits), shown once when it is made.
Stores keep its SHA-256 hash (the key has too much entropy for a slow hash to matter) next to a
:class:`KeyRecord`: the key's id, its scopes and its limits.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hfasgi.limits import Limit
from hfasgi.principal import Principal

__all__ = ["KEY_PREFIX", "KeyRecord", "hash_key", "new_key"]

KEY_PREFIX = "hfasgi_"
"""What every generated key starts with (so secret scanners can recognise a leaked one)."""

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@\-]{0,127}")
_HASH = re.compile(r"sha256:[0-9a-f]{64}")


def new_key() -> str:
    """A new random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of ``key``: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    """What a store knows about one key: never the key, only its hash."""

    id: str
    """The key's name (``ci-bot``, ``team-search``): shown in lists and logs, and what limits count by."""
    hash: str = field(repr=False)
    """``sha256:<hex>`` of the key."""
    models: tuple[str, ...] | None = None
    """Allowed model ids or patterns (``meta-llama/*``); ``None``: any model."""
    tasks: tuple[str, ...] | None = None
    """Allowed HF tasks; ``None``: any task."""
    rate_limit: Limit | None = None
    """Requests per window for this key (``None``: the limiter's default)."""
    token_limit: Limit | None = None
    """Tokens per window for this key (``None``: the limiter's default)."""
    max_tokens: int | None = None
    """The most output tokens one request of this key may ask for."""
    max_prompt_length: int | None = None
    """The longest prompt (characters) one request of this key may send."""
    admin: bool = False
    """An admin key may administer the gateway (map models, read other keys' usage)."""
    created: str = field(default_factory=_now)
    """When the key was made (ISO 8601, UTC)."""
    revoked: str | None = None
    """When the key was revoked; a revoked key is refused."""
    principal: Principal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _ID.fullmatch(self.id):
            raise ValueError(f"invalid key id {self.id!r}: letters, digits and . _ @ - (at most 128)")
        if not _HASH.fullmatch(self.hash):
            raise ValueError(f"key {self.id!r}: the hash must be 'sha256:' and 64 hex digits")
        principal = Principal(
            id=self.id,
            models=self.models,
            tasks=frozenset(self.tasks) if self.tasks is not None else None,
            rate_limit=self.rate_limit,
            token_limit=self.token_limit,
            max_tokens=self.max_tokens,
            max_prompt_length=self.max_prompt_length,
            admin=self.admin,
        )
        object.__setattr__(self, "principal", principal)

    @classmethod
    def for_key(cls, id: str, key: str, **options: Any) -> KeyRecord:
        """The record of ``key`` (hashed here) under ``id``."""
        return cls(id=id, hash=hash_key(key), **options)

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any], *, id: str | None = None) -> KeyRecord:
        """A record from its stored form (a TOML table or a JSON object); raises ``ValueError`` on bad fields."""
        known = {
            "id",
            "hash",
            "models",
            "tasks",
            "rate_limit",
            "token_limit",
            "max_tokens",
            "max_prompt_length",
            "admin",
            "created",
            "revoked",
        }
        unknown = set(doc) - known
        name = id or doc.get("id")
        if unknown:
            raise ValueError(f"key {name!r}: unknown fields {sorted(unknown)}")
        if not isinstance(name, str):
            raise ValueError("a key record needs a string 'id'")
        values: dict[str, Any] = {"id": name, "hash": doc.get("hash")}
        for list_field in ("models", "tasks"):
            value = doc.get(list_field)
            if value is not None:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"key {name!r}: {list_field} must be a list of strings")
                values[list_field] = tuple(value)
        for limit_field in ("rate_limit", "token_limit"):
            value = doc.get(limit_field)
            if value is not None:
                try:
                    values[limit_field] = Limit.parse(value)
                except ValueError as exc:
                    raise ValueError(f"key {name!r}: {limit_field}: {exc}") from None
        for cap_field in ("max_tokens", "max_prompt_length"):
            value = doc.get(cap_field)
            if value is not None:
                if type(value) is not int or value < 1:
                    raise ValueError(f"key {name!r}: {cap_field} must be a positive integer")
                values[cap_field] = value
        admin = doc.get("admin")
        if admin is not None:
            if not isinstance(admin, bool):
                raise ValueError(f"key {name!r}: admin must be true or false")
            values["admin"] = admin
        for text_field in ("created", "revoked"):
            value = doc.get(text_field)
            if value is not None:
                values[text_field] = str(value)  # TOML may hand back a datetime
        if not isinstance(values["hash"], str):
            raise ValueError(f"key {name!r}: a string 'hash' is required")
        return cls(**values)

    def to_mapping(self) -> dict[str, Any]:
        """The stored form (no ``None`` values, so it fits TOML)."""
        doc: dict[str, Any] = {"id": self.id, "hash": self.hash, "created": self.created}
        if self.models is not None:
            doc["models"] = list(self.models)
        if self.tasks is not None:
            doc["tasks"] = list(self.tasks)
        if self.rate_limit is not None:
            doc["rate_limit"] = str(self.rate_limit)
        if self.token_limit is not None:
            doc["token_limit"] = str(self.token_limit)
        if self.max_tokens is not None:
            doc["max_tokens"] = self.max_tokens
        if self.max_prompt_length is not None:
            doc["max_prompt_length"] = self.max_prompt_length
        if self.admin:
            doc["admin"] = True
        if self.revoked is not None:
            doc["revoked"] = self.revoked
        return doc

    def revoke(self) -> KeyRecord:
        """This record, revoked now."""
        return KeyRecord(**{**self._fields(), "revoked": self.revoked or _now()})

    def _fields(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hash": self.hash,
            "models": self.models,
            "tasks": self.tasks,
            "rate_limit": self.rate_limit,
            "token_limit": self.token_limit,
            "max_tokens": self.max_tokens,
            "max_prompt_length": self.max_prompt_length,
            "admin": self.admin,
            "created": self.created,
            "revoked": self.revoked,
        }
