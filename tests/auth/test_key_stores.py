"""Keys and key stores: only hashes are stored; the file store follows edits; the chain asks in order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hfasgi.auth import (
    KEY_PREFIX,
    ChainKeyStore,
    FileKeyStore,
    KeyRecord,
    MemoryKeyStore,
    hash_key,
    new_key,
    read_key_file,
    write_key_file,
)
from hfasgi.limits import Limit


def test_new_keys_are_random_prefixed_and_hashed() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    key = keys.pop()
    assert key.startswith(KEY_PREFIX) and len(key) == len(KEY_PREFIX) + 43
    assert hash_key(key).startswith("sha256:") and key not in hash_key(key)
    assert hash_key(key) == hash_key(key) != hash_key(key + "x")


def test_a_record_never_holds_or_shows_the_key() -> None:
    key = new_key()
    record = KeyRecord.for_key("ci-bot", key, models=("org/*",), rate_limit=Limit.parse("5/minute"))
    assert key not in repr(record) and key not in str(record.to_mapping())
    assert record.principal.id == "ci-bot" and record.principal.rate_limit == Limit(5, 60)
    assert record.principal.allows_model("org/a") and not record.principal.allows_model("other/a")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"hash": "sha256:" + "0" * 64, "colour": "red"}, "unknown fields"),
        ({"hash": "md5:abc"}, "hash"),
        ({"hash": "sha256:" + "0" * 64, "models": "org/*"}, "models must be a list"),
        ({"hash": "sha256:" + "0" * 64, "rate_limit": "lots"}, "rate_limit"),
        ({}, "hash"),
    ],
)
def test_malformed_records_are_refused_by_name(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KeyRecord.from_mapping(doc, id="k")


def test_bad_ids_are_refused() -> None:
    for bad in ("", "has space", "x" * 200, "-leading"):
        with pytest.raises(ValueError, match="key id"):
            KeyRecord.for_key(bad, "k")


@pytest.mark.anyio
async def test_memory_store_from_settings_keys() -> None:
    store = MemoryKeyStore.from_keys(["alice=k-alice", "k-anon"])
    alice = await store.find(hash_key("k-alice"))
    anon = await store.find(hash_key("k-anon"))
    assert alice is not None and alice.id == "alice"
    assert anon is not None and anon.id == "key-" + hash_key("k-anon")[7:15]
    assert await store.find(hash_key("nope")) is None
    with pytest.raises(ValueError, match="empty"):
        MemoryKeyStore.from_keys(["alice="])


def test_key_file_round_trip_holds_hashes_only_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    keys = {name: new_key() for name in ("a", "team.search", "b@c")}
    records = [
        KeyRecord.for_key(name, key, models=("m/*",), tasks=("chat-completion",), token_limit=Limit(10, 3600))
        for name, key in keys.items()
    ]
    write_key_file(path, records)
    text = path.read_text()
    assert all(key not in text for key in keys.values())
    assert all(hash_key(key) in text for key in keys.values())
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert read_key_file(path) == {r.id: r for r in records}
    assert read_key_file(tmp_path / "missing.toml") == {}


def test_malformed_key_files_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text("[keys\n")
    with pytest.raises(ValueError, match="TOML"):
        read_key_file(path)
    path.write_text("[other]\nx = 1\n")
    with pytest.raises(ValueError, match="unknown top-level"):
        read_key_file(path)


@pytest.mark.anyio
async def test_file_store_follows_revocations_and_new_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    first, second = new_key(), new_key()
    record = KeyRecord.for_key("first", first)
    write_key_file(path, [record])
    store = FileKeyStore(path, reload_every=0)
    await store.open()
    assert (await store.find(hash_key(first))) == record
    write_key_file(path, [record.revoke(), KeyRecord.for_key("second", second)])
    assert await store.find(hash_key(first)) is None
    found = await store.find(hash_key(second))
    assert found is not None and found.id == "second"


@pytest.mark.anyio
async def test_file_store_keeps_its_keys_when_an_edit_breaks_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.toml"
    key = new_key()
    write_key_file(path, [KeyRecord.for_key("k", key)])
    store = FileKeyStore(path, reload_every=0)
    await store.open()
    path.write_text("this is [not toml")
    assert await store.find(hash_key(key)) is not None
    assert "could not be re-read" in caplog.text


@pytest.mark.anyio
async def test_file_store_refuses_to_start_on_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text("nonsense = [")
    with pytest.raises(ValueError, match=str(path)):
        await FileKeyStore(path).open()


@pytest.mark.anyio
async def test_chain_asks_each_store_in_order() -> None:
    chain = ChainKeyStore([MemoryKeyStore.from_keys(["a=ka"]), MemoryKeyStore.from_keys(["b=kb", "a2=ka"])])
    await chain.open()
    a, b = await chain.find(hash_key("ka")), await chain.find(hash_key("kb"))
    assert a is not None and a.id == "a"
    assert b is not None and b.id == "b"
    assert await chain.find(hash_key("kc")) is None
    await chain.aclose()


def test_caps_round_trip_and_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    record = KeyRecord.for_key("capped", new_key(), max_tokens=64, max_prompt_length=1000)
    write_key_file(path, [record])
    assert read_key_file(path)["capped"] == record
    with pytest.raises(ValueError, match="max_tokens must be a positive integer"):
        KeyRecord.from_mapping({"hash": record.hash, "max_tokens": 0}, id="bad")
    with pytest.raises(ValueError, match="max_prompt_length"):
        KeyRecord.for_key("bad", "k", max_prompt_length=-5)
