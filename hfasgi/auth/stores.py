"""Key stores: where :class:`~hfasgi.auth.keys.KeyRecord` s live. Memory, a TOML key file, or a chain.

A store answers one question, ``await store.find(key_hash)``: the active record with that hash, or
``None`` (unknown or revoked). The Redis store is in :mod:`hfasgi.auth.redis_store`.

The key file (written by ``hfasgi keys``; hashes only, never keys)::

    [keys.ci-bot]
    hash = "sha256:9f86d0…"
    created = "2026-12-01T10:00:00Z"
    models = ["meta-llama/*"]          # optional: allowed models (shell patterns)
    tasks = ["chat-completion"]        # optional: allowed tasks
    rate_limit = "60/minute"           # optional: this key's own limits
    token_limit = "100000/hour"
    revoked = "2026-12-02T09:00:00Z"   # present once revoked
"""

from __future__ import annotations

import json
import logging
import time
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from hfasgi.auth.keys import KeyRecord, hash_key
from hfasgi.files import replace_atomically

__all__ = ["ChainKeyStore", "FileKeyStore", "KeyStore", "MemoryKeyStore", "read_key_file", "write_key_file"]

logger = logging.getLogger("hfasgi.auth")


class KeyStore(Protocol):
    """What :class:`~hfasgi.auth.middleware.ApiKeyAuth` asks of a key store."""

    async def find(self, key_hash: str) -> KeyRecord | None:
        """The active (not revoked) record whose hash is ``key_hash``, or ``None``."""
        ...

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...


class MemoryKeyStore:
    """Records held in memory: for keys from settings (``HFASGI_API_KEYS``) and for tests."""

    def __init__(self, records: Iterable[KeyRecord] = ()) -> None:
        self._by_hash = {r.hash: r for r in records if r.revoked is None}

    @classmethod
    def from_keys(cls, keys: Iterable[str]) -> MemoryKeyStore:
        """Records for plain keys; ``name=key`` names a key, a bare key gets the id ``key-<8 hex of its hash>``."""
        records = []
        for item in keys:
            name, sep, key = item.partition("=")
            if not sep:
                name, key = "", item
            key = key.strip()
            if not key:
                raise ValueError("an API key must not be empty")
            digest = hash_key(key)
            records.append(KeyRecord(id=name.strip() or f"key-{digest[7:15]}", hash=digest))
        return cls(records)

    async def find(self, key_hash: str) -> KeyRecord | None:
        return self._by_hash.get(key_hash)

    async def open(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class FileKeyStore:
    """Records from a TOML key file, re-read when the file changes (checked at most once per ``reload_every`` s).

    So ``hfasgi keys revoke`` takes effect in a running gateway within about a second. A file that
    fails to parse on reload is logged and the previous records stay in force.
    """

    def __init__(self, path: str | Path, *, reload_every: float = 1.0) -> None:
        self.path = Path(path)
        self.reload_every = reload_every
        self._by_hash: dict[str, KeyRecord] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0

    async def open(self) -> None:
        """Read the file (a missing or malformed file fails start-up, naming the file)."""
        self._load(strict=True)

    async def aclose(self) -> None:
        return None

    async def find(self, key_hash: str) -> KeyRecord | None:
        now = time.monotonic()
        if now - self._checked >= self.reload_every:
            self._checked = now
            self._load(strict=False)
        return self._by_hash.get(key_hash)

    def _load(self, *, strict: bool) -> None:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            records = read_key_file(self.path)
        except (OSError, ValueError) as exc:
            if strict:
                raise ValueError(f"API key file {str(self.path)!r}: {exc}") from None
            logger.error("hfasgi: API key file %s could not be re-read (%s); keeping the previous keys", self.path, exc)
            return
        self._by_hash = {r.hash: r for r in records.values() if r.revoked is None}
        self._stamp = stamp


class ChainKeyStore:
    """Several stores asked in order (settings keys, then a key file, then Redis)."""

    def __init__(self, stores: Sequence[KeyStore]) -> None:
        self.stores = list(stores)

    async def find(self, key_hash: str) -> KeyRecord | None:
        for store in self.stores:
            record = await store.find(key_hash)
            if record is not None:
                return record
        return None

    async def open(self) -> None:
        for store in self.stores:
            await store.open()

    async def aclose(self) -> None:
        for store in reversed(self.stores):
            await store.aclose()


def read_key_file(path: str | Path) -> dict[str, KeyRecord]:
    """The records of a key file, by id. A missing file has no records; a malformed one raises ``ValueError``."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not valid TOML: {exc}") from None
    unknown = set(doc) - {"keys"}
    if unknown:
        raise ValueError(f"unknown top-level entries {sorted(unknown)} (expected [keys.<id>] tables)")
    keys = doc.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(v, dict) for v in keys.values()):
        raise ValueError("expected [keys.<id>] tables")
    return {name: KeyRecord.from_mapping(table, id=name) for name, table in keys.items()}


def write_key_file(path: str | Path, records: Iterable[KeyRecord]) -> None:
    """Write ``records`` to ``path`` atomically, readable by its owner only."""
    lines = ["# hfasgi API keys: hashes only, never keys. Managed with `hfasgi keys add|list|revoke`.", ""]
    for record in records:
        lines.append(f"[keys.{json.dumps(record.id)}]")
        for name, value in record.to_mapping().items():
            if name != "id":
                lines.append(f"{name} = {json.dumps(value)}")
        lines.append("")
    replace_atomically(Path(path), "\n".join(lines), 0o600)
