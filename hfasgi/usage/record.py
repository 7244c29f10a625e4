"""UsageRecord: what one metered request used and cost, and its three shapes (JSON line, wire, row)."""

from __future__ import annotations

import math
import operator
import re
import time
from dataclasses import dataclass, fields
from typing import Any

import orjson

__all__ = ["COLUMNS", "UsageRecord"]

_INT64 = 2**63
_OPTIONAL_TEXT = ("key_id", "model", "task", "route", "upstream")
_TOKENS_AND_COST = ("input_tokens", "output_tokens", "cost_nano_usd")
_APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRecord:
    """One request's usage. ``request_id`` is the ledger's primary key: a record written twice counts once."""

    request_id: str
    """The request's id (unique: the primary key)."""
    timestamp: float
    """When the request started, epoch seconds."""
    key_id: str | None
    """The API key's id, or ``None`` without authentication."""
    model: str | None
    task: str | None
    route: str | None
    status: int
    """The HTTP status answered (499 when the client left first)."""
    input_tokens: int
    output_tokens: int
    cost_nano_usd: int
    """Integer nano-USD (10⁻⁹ USD)."""
    cache_hit: bool = False
    stream: bool = False
    upstream: str | None = None

    def to_line(self) -> bytes:
        """One JSON line (``\\n``-terminated): the spool's format."""
        try:
            return orjson.dumps(self, option=_APPEND_NEWLINE)
        except orjson.JSONEncodeError:  # a lone surrogate in a client-chosen string: keep the record, mend the text
            mended = {k: _mend(v) for k, v in _as_dict(self).items()}
            return orjson.dumps(mended, option=_APPEND_NEWLINE)

    @classmethod
    def from_line(cls, line: bytes) -> UsageRecord:
        """Parse and check one spool line; ``ValueError`` when it is not a valid record."""
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        if len(document) == len(_FIELDS) and cls is UsageRecord:
            try:  # the usual line: exactly the fields, set through the slots (under half of __init__'s cost)
                record = _NEW(cls)
                for name, set_slot in _SLOT_SETTERS:
                    set_slot(record, document[name])
                record.check()
                return record
            except KeyError:
                pass
        try:  # unknown fields (a newer version wrote it) or missing ones (defaults apply)
            record = cls(**{name: document[name] for name in _FIELDS if name in document})
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        record.check()
        return record

    def check(self) -> None:
        """``ValueError`` unless every field has its type and fits a 64-bit database column."""
        if type(self.request_id) is not str or not self.request_id:
            raise ValueError("request_id must be a non-empty string")
        if type(self.timestamp) not in (float, int) or not math.isfinite(self.timestamp):
            raise ValueError("timestamp must be a finite number")
        for name in _OPTIONAL_TEXT:
            value = getattr(self, name)
            if value is not None and type(value) is not str:
                raise ValueError(f"{name} must be a string or null")
        if type(self.status) is not int or not 0 <= self.status < 1000:
            raise ValueError("status must be an HTTP status (0 to 999)")
        for name in _TOKENS_AND_COST:
            value = getattr(self, name)
            if type(value) is not int or not -_INT64 <= value < _INT64:
                raise ValueError(f"{name} must be a 64-bit integer")
        if type(self.cache_hit) is not bool or type(self.stream) is not bool:
            raise ValueError("cache_hit and stream must be booleans")

    def to_wire(self) -> dict[str, Any]:
        """The provider API's record (``GET billing/usage``); ``timestamp`` in whole seconds, ISO 8601 UTC."""
        return {
            "request_id": self.request_id,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.timestamp)),
            "task": self.task,
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_nano_usd": self.cost_nano_usd,
            "key_id": self.key_id,
            "status": self.status,
            "cache_hit": self.cache_hit,
        }

    def to_row(self) -> tuple[Any, ...]:
        """The values in column order (:data:`COLUMNS`)."""
        row: tuple[Any, ...] = _ROW(self)
        return row


def _as_dict(record: UsageRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _FIELDS}


def _mend(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    return value


_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(UsageRecord))
COLUMNS = _FIELDS
"""The record's field names, in order: the ledger table's columns."""
_ROW = operator.attrgetter(*_FIELDS)
_NEW = object.__new__
_SLOT_SETTERS = tuple((name, UsageRecord.__dict__[name].__set__) for name in _FIELDS)
