"""``hfasgi keys add|list|revoke``: manage API keys in a key file or in Redis.

A key is printed once, by ``add``, and never stored: the key file (or Redis) keeps only its hash and
its :class:`~hfasgi.auth.keys.KeyRecord`. ``add`` prints the bare key on stdout, so
``KEY=$(hfasgi keys add ci-bot)`` works; everything meant for a human goes to stderr.

Where keys live (one target per command):

* ``--file PATH`` (default: ``HFASGI_API_KEYS_FILE``): a TOML key file, created by the first ``add``
  (mode 0600). A running gateway re-reads it, so a revocation takes effect within about a second.
* ``--redis-url URL``, or ``--redis`` for the URL in ``HFASGI_REDIS_URL``: the Redis key store
  (``HFASGI_KEY_STORE=redis``), under ``--redis-prefix`` (default ``hfasgi:``, as the gateway uses).

Exit codes: 0 done, 1 the operation failed (unknown or duplicate id, unreadable file, Redis down),
2 bad arguments (invalid id or limit, no target).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfasgi.auth.keys import KeyRecord, new_key
from hfasgi.auth.stores import read_key_file, write_key_file
from hfasgi.files import locked
from hfasgi.limits import Limit
from hfasgi.settings import ENVIRONMENT

if TYPE_CHECKING:
    from hfasgi.auth.redis_store import RedisKeyStore

__all__ = ["add_parser", "run"]

DEFAULT_REDIS_PREFIX = "hfasgi:"
"""The key prefix of :class:`~hfasgi.auth.redis_store.RedisKeyStore` (must stay equal to its default)."""

_REDIS_TIMEOUT = 5.0
"""Seconds per Redis call: an operator's command may cross a slow network, unlike the request path."""
_TASK = re.compile(r"[a-z][a-z0-9\-]{0,63}")
_NO_TARGET = "name a key file (--file or HFASGI_API_KEYS_FILE) or Redis (--redis-url, or --redis for HFASGI_REDIS_URL)"


class _Failure(Exception):
    """A one-line error for stderr, with the exit code that goes with it."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class _Target:
    """Where the keys of one command live: a key file or Redis (never both)."""

    file: Path | None = None
    redis_url: str | None = None
    redis_prefix: str = DEFAULT_REDIS_PREFIX

    def describe(self) -> str:
        """For messages; never the Redis URL (it may carry a password)."""
        if self.file is not None:
            return f"key file {str(self.file)!r}"
        return f"Redis (prefix {self.redis_prefix!r})"


def _add_target_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where the keys live (one of --file, --redis-url, --redis)")
    choice = where.add_mutually_exclusive_group()
    choice.add_argument(
        "--file",
        metavar="PATH",
        help=f"a TOML key file (default: ${ENVIRONMENT['api_keys_file']}); created by the first `add`",
    )
    choice.add_argument("--redis-url", metavar="URL", help="the Redis key store at this URL (redis://, rediss://)")
    choice.add_argument("--redis", action="store_true", help=f"the Redis key store at ${ENVIRONMENT['redis_url']}")
    where.add_argument(
        "--redis-prefix",
        default=DEFAULT_REDIS_PREFIX,
        metavar="PREFIX",
        help=f"the Redis key prefix (default {DEFAULT_REDIS_PREFIX!r}, as the gateway uses)",
    )


def add_parser(commands: Any) -> None:
    """Add the ``keys`` command to ``commands`` (the ``add_subparsers()`` of the ``hfasgi`` parser)."""
    keys = commands.add_parser(
        "keys",
        help="add, list and revoke API keys (key file or Redis)",
        description="Manage API keys. Only hashes are stored; `add` shows a new key once.",
    )
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="{add,list,revoke}")

    add = actions.add_parser(
        "add",
        help="make a key and print it (once)",
        description="Make a key, store its hash, and print the key on stdout (it cannot be shown again).",
    )
    add.add_argument("id", help="the key's name (letters, digits and . _ @ -): shown in lists and logs")
    add.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="PATTERN",
        help="allow this model id or shell pattern (meta-llama/*); repeatable (default: any model)",
    )
    add.add_argument(
        "--task",
        dest="tasks",
        action="append",
        metavar="TASK",
        help="allow this HF task (chat-completion, feature-extraction, ...); repeatable (default: any task)",
    )
    add.add_argument("--rate-limit", metavar="LIMIT", help="requests per window for this key, e.g. 60/minute")
    add.add_argument("--token-limit", metavar="LIMIT", help="tokens per window for this key, e.g. 100000/hour")
    add.add_argument("--max-tokens", type=int, metavar="N", help="the most output tokens one request may ask for")
    add.add_argument(
        "--max-prompt-length", type=int, metavar="CHARS", help="the longest prompt one request may send (characters)"
    )
    add.add_argument(
        "--admin", action="store_true", help="an admin key: may map models into the catalog (POST .../models/map)"
    )

    listing = actions.add_parser("list", help="list keys (never the keys themselves)", description="List the keys.")
    listing.add_argument("--json", action="store_true", help="print a JSON list of records (without hashes)")

    revoke = actions.add_parser(
        "revoke",
        help="revoke a key (it stays listed)",
        description="Revoke a key: running gateways refuse it within about a second. It stays listed.",
    )
    revoke.add_argument("id", help="the id of the key to revoke")
    for command in (add, listing, revoke):
        _add_target_arguments(command)


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``hfasgi keys ...`` command; returns the exit code."""
    try:
        target = _target(args)
        if args.keys_command == "add":
            return _add(args, target)
        if args.keys_command == "list":
            return _list(args, target)
        return _revoke(args, target)
    except _Failure as exc:
        print(f"hfasgi keys: {exc}", file=sys.stderr)
        return exc.code


# --- the commands -------------------------------------------------------------------------------------------


def _add(args: argparse.Namespace, target: _Target) -> int:
    key = new_key()
    record = _record(args, key)
    if target.file is not None:
        with _locked(target.file):
            records = _read(target.file)
            if record.id in records:
                raise _Failure(_taken(records[record.id], target))
            records[record.id] = record
            _write(target.file, records)
    else:
        taken = _redis(target, _redis_add, record)
        if taken is not None:
            raise _Failure(_taken(taken, target))
    print(key, flush=True)
    print(
        f"hfasgi keys: key {record.id!r} added to {target.describe()}. Store it now: it cannot be shown again.",
        file=sys.stderr,
    )
    return 0


def _list(args: argparse.Namespace, target: _Target) -> int:
    if target.file is not None:
        records = sorted(_read(target.file).values(), key=lambda r: r.id)
    else:
        records = _redis(target, _redis_records)
    if args.json:
        docs = [{**_public(r), "fingerprint": _fingerprint(r)} for r in records]
        print(json.dumps(docs, indent=2))
        return 0
    if not records:
        missing = " (it does not exist yet)" if target.file is not None and not target.file.exists() else ""
        print(f"hfasgi keys: no keys in {target.describe()}{missing}", file=sys.stderr)
        return 0
    rows = [_row(r) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip())
    return 0


def _revoke(args: argparse.Namespace, target: _Target) -> int:
    key_id: str = args.id
    if target.file is not None:
        with _locked(target.file):
            records = _read(target.file)
            record = records.get(key_id)
            if record is None:
                raise _Failure(f"no key with id {key_id!r} in {target.describe()}")
            if record.revoked is not None:
                print(f"hfasgi keys: key {key_id!r} was already revoked at {record.revoked}", file=sys.stderr)
                return 0
            records[key_id] = revoked = record.revoke()
            _write(target.file, records)
    else:
        try:
            revoked = _redis(target, _redis_revoke, key_id)
        except KeyError:
            raise _Failure(f"no key with id {key_id!r} in {target.describe()}") from None
    print(
        f"hfasgi keys: key {key_id!r} revoked at {revoked.revoked}; running gateways refuse it within about a second",
        file=sys.stderr,
    )
    return 0


# --- arguments ----------------------------------------------------------------------------------------------


def _target(args: argparse.Namespace) -> _Target:
    redis_url: str | None = args.redis_url
    if args.redis:
        redis_url = os.environ.get(ENVIRONMENT["redis_url"]) or None
        if redis_url is None:
            raise _Failure(f"--redis needs {ENVIRONMENT['redis_url']} (or give --redis-url URL)", 2)
    if redis_url is not None:
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise _Failure("the Redis URL must start with redis://, rediss:// or unix://", 2)
        if not args.redis_prefix:
            raise _Failure("--redis-prefix must not be empty", 2)
        return _Target(redis_url=redis_url, redis_prefix=args.redis_prefix)
    file = args.file or os.environ.get(ENVIRONMENT["api_keys_file"]) or None
    if file is None:
        raise _Failure(_NO_TARGET, 2)
    return _Target(file=Path(file))


def _record(args: argparse.Namespace, key: str) -> KeyRecord:
    """The record of ``key`` from the ``add`` arguments; bad values exit 2 with one line."""
    options: dict[str, Any] = {}
    for name in ("rate_limit", "token_limit"):
        value = getattr(args, name)
        if value is not None:
            try:
                options[name] = Limit.parse(value)
            except ValueError as exc:
                raise _Failure(f"--{name.replace('_', '-')}: {exc}", 2) from None
    for name in ("max_tokens", "max_prompt_length"):
        cap = getattr(args, name)
        if cap is not None:
            if cap < 1:
                raise _Failure(f"--{name.replace('_', '-')} must be a positive integer, got {cap}", 2)
            options[name] = cap
    if args.models is not None:
        models = tuple(m.strip() for m in args.models)
        if not all(models):
            raise _Failure("--model must not be empty", 2)
        options["models"] = models
    if args.tasks is not None:
        tasks = tuple(t.strip() for t in args.tasks)
        bad = [t for t in tasks if not _TASK.fullmatch(t)]
        if bad:
            raise _Failure(f"invalid task {bad[0]!r}: an HF task name such as 'chat-completion'", 2)
        options["tasks"] = tasks
    if args.admin:
        options["admin"] = True
    try:
        return KeyRecord.for_key(args.id, key, **options)
    except ValueError as exc:
        raise _Failure(str(exc), 2) from None


# --- the key file -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the key file's lock (:func:`hfasgi.files.locked`); a lock that cannot be taken is a clear failure."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locked(path))
        except OSError as exc:
            raise _Failure(f"cannot write the key file {str(path)!r}: {_reason(exc)}") from None
        yield


def _read(path: Path) -> dict[str, KeyRecord]:
    try:
        return read_key_file(path)
    except (OSError, ValueError) as exc:
        raise _Failure(f"key file {str(path)!r}: {_reason(exc)}") from None


def _write(path: Path, records: dict[str, KeyRecord]) -> None:
    try:
        write_key_file(path, sorted(records.values(), key=lambda r: r.id))
    except OSError as exc:
        raise _Failure(f"cannot write the key file {str(path)!r}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


# --- Redis --------------------------------------------------------------------------------------------------


def _redis(target: _Target, operation: Any, *operands: Any) -> Any:
    """Run ``await operation(store, *operands)`` against the Redis key store of ``target``."""
    from hfasgi.redis_client import STORE_ERRORS

    try:
        return asyncio.run(_with_store(target, operation, *operands))
    except STORE_ERRORS as exc:
        raise _Failure(f"{target.describe()} is not answering: {exc}") from None
    except RuntimeError as exc:  # no redis package
        raise _Failure(str(exc)) from None
    except ValueError as exc:  # a record that does not decode
        raise _Failure(f"{target.describe()} holds a malformed key record: {exc}") from None


async def _with_store(target: _Target, operation: Any, *operands: Any) -> Any:
    from hfasgi.auth.redis_store import RedisKeyStore
    from hfasgi.redis_client import RedisConnection

    assert target.redis_url is not None
    store = RedisKeyStore(RedisConnection(target.redis_url, timeout=_REDIS_TIMEOUT), prefix=target.redis_prefix)
    with _quiet("hfasgi.redis"):  # open() only warns when Redis is down; the ping below says it once, as an error
        await store.open()
    try:
        await store.redis.client.ping()
        return await operation(store, *operands)
    finally:
        await store.aclose()


async def _redis_add(store: RedisKeyStore, record: KeyRecord) -> KeyRecord | None:
    """Add ``record``; when its id is taken, the record holding it instead (``None``: added)."""
    try:
        await store.add(record)
    except ValueError:
        taken = {r.id: r for r in await store.records()}.get(record.id)
        # The id is in the index but its record is gone (an add interrupted halfway): still taken.
        return taken or KeyRecord(id=record.id, hash="sha256:" + "0" * 64)
    return None


async def _redis_records(store: RedisKeyStore) -> list[KeyRecord]:
    return await store.records()


async def _redis_revoke(store: RedisKeyStore, key_id: str) -> KeyRecord:
    return await store.revoke(key_id)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    log = logging.getLogger(name)
    was = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = was


# --- output -------------------------------------------------------------------------------------------------


def _taken(record: KeyRecord, target: _Target) -> str:
    where = f" in {target.describe()}"
    if record.revoked is not None:
        return f"a key with id {record.id!r} already exists{where} (revoked at {record.revoked}); choose another id"
    return f"a key with id {record.id!r} already exists{where}; revoke it or choose another id"


def _fingerprint(record: KeyRecord) -> str:
    """The first 12 hex digits of the key's hash: enough to tell keys apart, nothing to guess from."""
    return record.hash.removeprefix("sha256:")[:12]


def _public(record: KeyRecord) -> dict[str, Any]:
    return {k: v for k, v in record.to_mapping().items() if k != "hash"}


def _row(record: KeyRecord) -> list[str]:
    status = "active" if record.revoked is None else f"revoked {record.revoked}"
    models = ",".join(record.models) if record.models is not None else "any"
    tasks = ",".join(record.tasks) if record.tasks is not None else "any"
    limits = f"rate={record.rate_limit or 'default'} tokens={record.token_limit or 'default'}"
    if record.max_tokens is not None:
        limits += f" max_tokens={record.max_tokens}"
    if record.max_prompt_length is not None:
        limits += f" max_prompt={record.max_prompt_length}"
    if record.admin:
        status += " admin"
    return [
        record.id,
        f"created {record.created}",
        status,
        f"sha256:{_fingerprint(record)}",
        f"models={models}",
        f"tasks={tasks}",
        limits,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """``hfasgi keys ...`` on its own (``python -m hfasgi.keys_cli add ci``)."""
    from hfasgi.cli import main as hfasgi_main

    return hfasgi_main(["keys", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
