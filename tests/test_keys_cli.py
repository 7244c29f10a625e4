"""``hfasgi keys add|list|revoke``: keys are shown once and stored as hashes, in a key file or in Redis.

Most tests call :func:`hfasgi.cli.main` in-process (with ``capsys``); one runs the installed console
script, as ``KEY=$(hfasgi keys add ci)`` would. The Redis tests use the Redis at 127.0.0.1:6379 under a
prefix of their own, removed afterwards; they skip when that Redis does not answer, except on CI
(``CI=true``), where a missing Redis is a failure.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import anyio.to_thread
import pytest
import redis

from hfasgi.auth import FileKeyStore, KeyRecord, RedisKeyStore, hash_key, read_key_file
from hfasgi.cli import main
from hfasgi.limits import Limit
from hfasgi.principal import Principal
from hfasgi.redis_client import RedisConnection
from hfasgi.settings import ENVIRONMENT
from tests.servers import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(autouse=True)
def _no_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own ``HFASGI_*`` variables must not pick a target for these tests."""
    for variable in ENVIRONMENT.values():
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "keys.toml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``hfasgi keys <argv>`` in-process: exit code, stdout, stderr."""
    code = main(["keys", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def add(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``hfasgi keys add <argv>``, which must succeed; the key it printed."""
    code, out, err = run(capsys, "add", *argv)
    assert code == 0, err
    return out.strip()


def fingerprint(key: str) -> str:
    return hash_key(key).removeprefix("sha256:")[:12]


# --- add ----------------------------------------------------------------------------------------------------


def test_add_prints_the_key_once_and_stores_only_its_hash(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    code, out, err = run(
        capsys, "add", "ci-bot", "--file", str(key_file), "--model", "meta-llama/*", "--model", "org/chat-model",
        "--task", "chat-completion", "--rate-limit", "60/minute", "--token-limit", "100000/hour",
    )  # fmt: skip
    assert code == 0, err
    key = out.strip()
    assert out == key + "\n", "stdout is the key alone, so KEY=$(hfasgi keys add ...) works"
    assert key.startswith("hfasgi_") and len(key) > 40
    assert "cannot be shown again" in err and key not in err
    text = key_file.read_text()
    assert hash_key(key) in text
    assert key not in text and key.removeprefix("hfasgi_") not in text
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    record = read_key_file(key_file)["ci-bot"]
    assert record.hash == hash_key(key)
    assert record.models == ("meta-llama/*", "org/chat-model") and record.tasks == ("chat-completion",)
    assert record.rate_limit == Limit(60, 60) and record.token_limit == Limit(100_000, 3600)
    assert record.revoked is None


def test_add_appends_to_an_existing_file_and_keeps_it_private(
    capsys: pytest.CaptureFixture[str], key_file: Path
) -> None:
    first = add(capsys, "one", "--file", str(key_file))
    key_file.chmod(0o644)
    second = add(capsys, "two", "--file", str(key_file))
    assert first != second
    records = read_key_file(key_file)
    assert {r.id: r.hash for r in records.values()} == {"one": hash_key(first), "two": hash_key(second)}
    assert records["one"].models is None and records["one"].tasks is None and records["one"].rate_limit is None
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_the_file_defaults_to_the_environment(
    capsys: pytest.CaptureFixture[str], key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HFASGI_API_KEYS_FILE", str(key_file))
    key = add(capsys, "from-env")
    assert read_key_file(key_file)["from-env"].hash == hash_key(key)


def test_a_taken_id_is_refused(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    key = add(capsys, "ci", "--file", str(key_file))
    before = key_file.read_text()
    code, out, err = run(capsys, "add", "ci", "--file", str(key_file))
    assert (code, out) == (1, "")
    assert "already exists" in err and "'ci'" in err and len(err.splitlines()) == 1
    assert key_file.read_text() == before
    assert run(capsys, "revoke", "ci", "--file", str(key_file))[0] == 0
    code, out, err = run(capsys, "add", "ci", "--file", str(key_file))
    assert (code, out) == (1, "") and "revoked" in err, "a revoked id stays taken"
    assert read_key_file(key_file)["ci"].hash == hash_key(key)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ok", "--rate-limit", "60/fortnight"], "--rate-limit: invalid limit '60/fortnight'"),
        (["ok", "--token-limit", "lots"], "--token-limit: invalid limit 'lots'"),
        (["ok", "--rate-limit", "0/minute"], "--rate-limit: a limit's count must be >= 1"),
        (["not valid!"], "invalid key id 'not valid!'"),
        (["ok", "--task", "Chat Completion"], "invalid task 'Chat Completion'"),
        (["ok", "--model", " "], "--model must not be empty"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], key_file: Path, argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "add", *argv, "--file", str(key_file))
    assert (code, out) == (2, "")
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not key_file.exists()


@pytest.mark.parametrize("command", [["add", "ci"], ["list"], ["revoke", "ci"]])
def test_no_target_exits_2(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, err = run(capsys, *command)
    assert (code, out) == (2, "")
    assert "name a key file (--file or HFASGI_API_KEYS_FILE) or Redis (--redis-url" in err
    assert len(err.splitlines()) == 1


def test_file_and_redis_are_exclusive(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    code, _, err = run(capsys, "list", "--file", str(key_file), "--redis-url", REDIS_URL)
    assert code == 2 and "not allowed with" in err


def test_an_unwritable_place_is_a_clean_failure(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "add", "ci", "--file", str(tmp_path / "missing-dir" / "keys.toml"))
    assert (code, out) == (1, "")
    assert "cannot write the key file" in err and "Traceback" not in err


def test_a_malformed_file_is_named(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    key_file.write_text("this is not = = toml")
    for command in (["add", "ci"], ["list"], ["revoke", "ci"]):
        code, out, err = run(capsys, *command, "--file", str(key_file))
        assert (code, out) == (1, "")
        assert str(key_file) in err and "not valid TOML" in err
    assert key_file.read_text() == "this is not = = toml"


def test_the_console_script(key_file: Path) -> None:
    """``KEY=$(hfasgi keys add ci)``: the installed script prints the key alone on stdout."""
    script = Path(sys.executable).with_name("hfasgi")
    assert script.is_file(), f"the console script is not installed next to {sys.executable}"
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT.values()}
    env["HFASGI_API_KEYS_FILE"] = str(key_file)
    done = subprocess.run([script, "keys", "add", "ci"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    key = done.stdout.removesuffix("\n")
    assert key.startswith("hfasgi_") and "\n" not in key
    assert "cannot be shown again" in done.stderr
    assert read_key_file(key_file)["ci"].hash == hash_key(key)


# --- list and revoke ----------------------------------------------------------------------------------------


def test_list_shows_keys_without_their_hashes(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    scoped = add(capsys, "scoped", "--file", str(key_file), "--model", "meta-llama/*", "--rate-limit", "10/30s")
    plain = add(capsys, "plain", "--file", str(key_file))
    code, out, err = run(capsys, "list", "--file", str(key_file))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["plain", "scoped"]
    plain_line, scoped_line = lines
    assert fingerprint(plain) in plain_line and "active" in plain_line
    assert "models=any" in plain_line and "tasks=any" in plain_line
    assert fingerprint(scoped) in scoped_line and "models=meta-llama/*" in scoped_line and "rate=10/30s" in scoped_line
    assert read_key_file(key_file)["plain"].created in plain_line
    for key in (scoped, plain):
        assert key not in out and hash_key(key) not in out


def test_list_json(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    key = add(capsys, "ci", "--file", str(key_file), "--task", "chat-completion", "--token-limit", "1000/minute")
    code, out, _ = run(capsys, "list", "--file", str(key_file), "--json")
    assert code == 0
    [doc] = json.loads(out)
    record = read_key_file(key_file)["ci"]
    assert doc == {
        "id": "ci",
        "created": record.created,
        "tasks": ["chat-completion"],
        "token_limit": "1000/minute",
        "fingerprint": fingerprint(key),
    }
    assert "hash" not in doc and hash_key(key) not in out


def test_list_of_nothing(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    code, out, err = run(capsys, "list", "--file", str(key_file))
    assert (code, out) == (0, "") and "no keys" in err
    code, out, _ = run(capsys, "list", "--file", str(key_file), "--json")
    assert (code, json.loads(out)) == (0, [])


def test_revoke_keeps_the_key_listed_as_revoked(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    key = add(capsys, "ci", "--file", str(key_file))
    other = add(capsys, "other", "--file", str(key_file))
    code, out, err = run(capsys, "revoke", "ci", "--file", str(key_file))
    assert (code, out) == (0, "") and "revoked" in err
    records = read_key_file(key_file)
    assert records["ci"].revoked is not None and records["ci"].hash == hash_key(key)
    assert records["other"].revoked is None and records["other"].hash == hash_key(other)
    _, out, _ = run(capsys, "list", "--file", str(key_file))
    assert f"revoked {records['ci'].revoked}" in out.splitlines()[0]
    code, _, err = run(capsys, "revoke", "ci", "--file", str(key_file))
    assert code == 0 and "already revoked" in err
    assert read_key_file(key_file)["ci"].revoked == records["ci"].revoked


def test_revoking_an_unknown_id_exits_1(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    add(capsys, "ci", "--file", str(key_file))
    before = key_file.read_text()
    code, out, err = run(capsys, "revoke", "nobody", "--file", str(key_file))
    assert (code, out) == (1, "") and "no key with id 'nobody'" in err
    assert key_file.read_text() == before


@pytest.mark.anyio
async def test_the_file_store_finds_the_key_until_it_is_revoked(
    capsys: pytest.CaptureFixture[str], key_file: Path
) -> None:
    """What the gateway's FileKeyStore sees: the added key, then (after a live reload) nothing."""
    key = add(capsys, "ci", "--file", str(key_file), "--model", "org/*")
    store = FileKeyStore(key_file, reload_every=0)
    await store.open()
    found = await store.find(hash_key(key))
    assert found is not None and found.id == "ci" and found.models == ("org/*",)
    assert await store.find(hash_key(key + "x")) is None
    assert run(capsys, "revoke", "ci", "--file", str(key_file))[0] == 0
    assert await store.find(hash_key(key)) is None, "a running store sees the revocation"
    fresh = FileKeyStore(key_file)
    await fresh.open()
    assert await fresh.find(hash_key(key)) is None


# --- Redis --------------------------------------------------------------------------------------------------


def _require_redis() -> None:
    """Skip when the test Redis does not answer; on CI (``CI=true``) fail instead."""
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = f"no Redis at 127.0.0.1:6379 ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true, so Redis tests must run, not skip")
        pytest.skip(reason)
    finally:
        client.close()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A prefix of this test's own in the test Redis; its keys are deleted afterwards."""
    _require_redis()
    prefix = f"hfasgi-test-{uuid4().hex}:"
    yield prefix
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        stale = list(client.scan_iter(match=prefix + "*"))
        if stale:
            client.delete(*stale)
    finally:
        client.close()


async def keys(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """:func:`run` from an async test: in a worker thread, as the command runs an event loop of its own."""
    return await anyio.to_thread.run_sync(lambda: run(capsys, *argv))


async def redis_store(prefix: str) -> RedisKeyStore:
    store = RedisKeyStore(RedisConnection(REDIS_URL), prefix=prefix, cache_ttl=0)
    await store.open()
    return store


@pytest.mark.anyio
async def test_redis_add_list_revoke(capsys: pytest.CaptureFixture[str], redis_prefix: str) -> None:
    target = ["--redis-url", REDIS_URL, "--redis-prefix", redis_prefix]
    code, out, err = await keys(capsys, "add", "ci", *target, "--task", "chat-completion", "--rate-limit", "5/second")
    assert code == 0, err
    key = out.strip()
    assert out == key + "\n" and key.startswith("hfasgi_") and "cannot be shown again" in err
    store = await redis_store(redis_prefix)
    try:
        found = await store.find(hash_key(key))
        assert found is not None and found.id == "ci"
        assert found.tasks == ("chat-completion",) and found.rate_limit == Limit(5, 1)
        client = store.redis.client
        stored = await client.get(f"{redis_prefix}key:{hash_key(key)}")
        index = await client.hgetall(f"{redis_prefix}keys")
        assert stored is not None and hash_key(key).encode() in stored and key.encode() not in stored
        assert index == {b"ci": hash_key(key).encode()}

        code, out, err = await keys(capsys, "add", "ci", *target)
        assert (code, out) == (1, "") and "already exists" in err

        code, out, _ = await keys(capsys, "list", *target)
        assert code == 0 and out.split()[0] == "ci" and fingerprint(key) in out and "active" in out
        assert hash_key(key) not in out
        code, out, _ = await keys(capsys, "list", *target, "--json")
        [doc] = json.loads(out)
        assert doc["id"] == "ci" and doc["fingerprint"] == fingerprint(key) and "hash" not in doc

        code, out, err = await keys(capsys, "revoke", "ci", *target)
        assert (code, out) == (0, "") and "revoked" in err
        assert await store.find(hash_key(key)) is None
        [record] = await store.records()
        assert isinstance(record, KeyRecord) and record.revoked is not None
        code, out, _ = await keys(capsys, "list", *target)
        assert f"revoked {record.revoked}" in out

        code, out, err = await keys(capsys, "revoke", "nobody", *target)
        assert (code, out) == (1, "") and "no key with id 'nobody'" in err
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_redis_flag_uses_the_environment(
    capsys: pytest.CaptureFixture[str], redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HFASGI_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("HFASGI_API_KEYS_FILE", "/nonexistent/must-not-be-used.toml")
    code, out, err = await keys(capsys, "add", "env-ci", "--redis", "--redis-prefix", redis_prefix)
    assert code == 0, err
    store = await redis_store(redis_prefix)
    try:
        found = await store.find(hash_key(out.strip()))
        assert found is not None and found.id == "env-ci"
    finally:
        await store.aclose()


def test_redis_flag_without_the_environment_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "list", "--redis")
    assert (code, out) == (2, "") and "HFASGI_REDIS_URL" in err


def test_a_bad_redis_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "list", "--redis-url", "http://127.0.0.1:6379")
    assert (code, out) == (2, "") and "redis://" in err


def test_redis_down_is_a_clean_failure(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://:secret-password@127.0.0.1:{free_port()}/0"
    code, out, err = run(capsys, "add", "ci", "--redis-url", url)
    assert (code, out) == (1, "")
    assert "is not answering" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert "secret-password" not in err


def test_concurrent_adds_lose_no_key(key_file: Path) -> None:
    """Eight `hfasgi keys add` at once on one file: the lock beside the file keeps every one of them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFASGI_")}
    command = [sys.executable, "-m", "hfasgi.cli", "keys", "add", "--file", str(key_file)]
    procs = [
        subprocess.Popen([*command, f"bot-{i}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(8)
    ]
    keys = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        keys.append(out.strip())
    records = read_key_file(key_file)
    assert sorted(records) == sorted(f"bot-{i}" for i in range(8))
    assert {r.hash for r in records.values()} == {hash_key(k) for k in keys}


def test_per_request_caps(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    """``--max-tokens`` and ``--max-prompt-length`` land in the record (and the principal), and show in the list."""
    add(capsys, "capped", "--file", str(key_file), "--max-tokens", "256", "--max-prompt-length", "8000")
    record = read_key_file(key_file)["capped"]
    assert (record.max_tokens, record.max_prompt_length) == (256, 8000)
    assert (record.principal.max_tokens, record.principal.max_prompt_length) == (256, 8000)
    code, out, _ = run(capsys, "list", "--file", str(key_file))
    assert code == 0 and "max_tokens=256" in out and "max_prompt=8000" in out
    code, _, err = run(capsys, "add", "zero", "--file", str(key_file), "--max-tokens", "0")
    assert code == 2 and "--max-tokens must be a positive integer" in err


# --- admin keys ---------------------------------------------------------------------------------------------


def test_admin_keys(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    """``--admin`` lands in the file (``admin = true``), the record and the principal, and shows in the list."""
    admin = add(capsys, "root", "--file", str(key_file), "--admin")
    add(capsys, "plain", "--file", str(key_file))
    records = read_key_file(key_file)
    assert records["root"].admin and records["root"].principal.admin
    assert not records["plain"].admin and not records["plain"].principal.admin
    text = key_file.read_text()
    assert text.count("admin = true") == 1 and "admin = false" not in text
    code, out, _ = run(capsys, "list", "--file", str(key_file))
    root_line = next(line for line in out.splitlines() if line.startswith("root"))
    plain_line = next(line for line in out.splitlines() if line.startswith("plain"))
    assert code == 0 and "active admin" in root_line and "admin" not in plain_line
    _, out, _ = run(capsys, "list", "--file", str(key_file), "--json")
    assert {doc["id"]: doc.get("admin") for doc in json.loads(out)} == {"plain": None, "root": True}
    assert run(capsys, "revoke", "root", "--file", str(key_file))[0] == 0
    revoked = read_key_file(key_file)["root"]
    assert revoked.admin and revoked.revoked is not None and revoked.hash == hash_key(admin)


@pytest.mark.anyio
async def test_a_hand_written_key_file_may_say_admin_true(tmp_path: Path) -> None:
    key = "hfasgi_an-admin-key"
    path = tmp_path / "keys.toml"
    path.write_text(f'[keys.ops]\nhash = "{hash_key(key)}"\nadmin = true\n\n[keys.dev]\nhash = "{hash_key("k2")}"\n')
    store = FileKeyStore(path)
    await store.open()
    ops, dev = await store.find(hash_key(key)), await store.find(hash_key("k2"))
    assert ops is not None and ops.principal.admin and ops.principal.id == "ops"
    assert dev is not None and not dev.principal.admin
    assert KeyRecord.from_mapping({"id": "x", "hash": hash_key("k"), "admin": False}).admin is False
    for value in ("yes", 1, "true"):
        with pytest.raises(ValueError, match="admin must be true or false"):
            KeyRecord.from_mapping({"id": "x", "hash": hash_key("k"), "admin": value})


def test_principals_are_not_admins_unless_told() -> None:
    assert Principal(id="a").admin is False
    assert Principal.restricted("a", admin=True, models=["m"]).admin is True
    assert KeyRecord.for_key("k", "key").principal.admin is False
