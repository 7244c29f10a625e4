"""The audit log: the exact line, its destinations, batching and drops, and what bodies may (not) show."""

from __future__ import annotations

import io
import json
import logging
import stat
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hfasgi.auth import new_key
from hfasgi.context import RequestContext
from hfasgi.observability.audit import AuditConfig, AuditLog
from hfasgi.observability.record import RequestRecord

HF_TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567"
API_KEY = new_key()

FULL = RequestRecord(
    request_id="req-1",
    started=1714564800.25,
    duration=0.1234567,
    method="POST",
    path="/v1/chat/completions",
    route="chat",
    status=200,
    model="meta-llama/Llama-3.1-8B-Instruct",
    upstream="default",
    upstream_model="meta-llama/Llama-3.1-8B-Instruct:novita",
    task="chat-completion",
    key_id="alice",
    upstream_status=200,
    upstream_duration=0.1,
    attempts=3,
    stream=True,
    time_to_first_token=0.05,
    input_tokens=12,
    output_tokens=34,
    error_type=None,
    cache_hit=False,
)

FULL_LINE = (
    b'{"time":"2024-05-01T12:00:00.250Z","request_id":"req-1","method":"POST","path":"/v1/chat/completions",'
    b'"route":"chat","key_id":"alice","model":"meta-llama/Llama-3.1-8B-Instruct","upstream":"default",'
    b'"upstream_model":"meta-llama/Llama-3.1-8B-Instruct:novita","task":"chat-completion","status":200,'
    b'"upstream_status":200,"latency_ms":123.457,"upstream_ms":100.0,"ttft_ms":50.0,"input_tokens":12,'
    b'"output_tokens":34,"retries":2,"stream":true,"cache_hit":false,"error_type":null}\n'
)


def record(request_id: str = "r", **fields: Any) -> RequestRecord:
    """A minimal record: what a request the gateway answered itself (no upstream) leaves."""
    base: dict[str, Any] = {"started": 0.0, "duration": 0.0015, "method": "GET", "path": "/x", "route": None}
    return RequestRecord(request_id=request_id, status=fields.pop("status", 404), **(base | fields))


def context(body: bytes | None = None) -> RequestContext:
    ctx = RequestContext()
    ctx.body = body
    return ctx


def lines_of(path: Path) -> list[dict[str, Any]]:
    text = path.read_text("utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def body_of(config: AuditConfig, body: bytes | None) -> Any:
    """The ``request_body`` field ``config`` logs for ``body``."""
    line = AuditLog(config).line(record(), context(body))
    return json.loads(line)["request_body"]


# -- the line ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_line_of_a_request_holds_every_field_compact_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(AuditConfig(destination=str(path)))
    await log.open()
    log.sink(FULL, context(b'{"messages": "not logged"}'))
    log.sink(record("bare"), context())
    await log.aclose()
    data = path.read_bytes()
    first, second = data.splitlines(keepends=True)
    assert first == FULL_LINE
    assert json.loads(second) == {
        "time": "1970-01-01T00:00:00.000Z",
        "request_id": "bare",
        "method": "GET",
        "path": "/x",
        "route": None,
        "key_id": None,
        "model": None,
        "upstream": None,
        "upstream_model": None,
        "task": None,
        "status": 404,
        "upstream_status": None,
        "latency_ms": 1.5,
        "upstream_ms": None,
        "ttft_ms": None,
        "input_tokens": None,
        "output_tokens": None,
        "retries": 0,
        "stream": False,
        "cache_hit": None,
        "error_type": None,
    }
    assert (log.written, log.dropped) == (2, 0)


def test_an_error_answer_carries_its_type_and_retries_are_never_negative() -> None:
    log = AuditLog(AuditConfig())
    line = json.loads(log.line(record(status=502, error_type="upstream_error", attempts=0), context()))
    assert (line["status"], line["error_type"], line["retries"]) == (502, "upstream_error", 0)
    assert json.loads(log.line(record(attempts=1), context()))["retries"] == 0


def test_configured_secrets_are_redacted_from_every_field() -> None:
    log = AuditLog(AuditConfig(secrets=(HF_TOKEN, API_KEY)))
    line = log.line(
        record(request_id=f"id-{API_KEY}", path=f"/models/{HF_TOKEN}/x", model=API_KEY, error_type=HF_TOKEN),
        context(),
    )
    assert HF_TOKEN.encode() not in line and API_KEY.encode() not in line
    doc = json.loads(line)
    assert (doc["request_id"], doc["path"], doc["model"]) == ("id-[redacted]", "/models/[redacted]/x", "[redacted]")


# -- destinations ------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_new_file_is_created_0600_and_appended_to_across_openings(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(AuditConfig(destination=str(path)))
    for name in ("first", "second"):  # the same log reopened (a second lifespan) appends
        await log.open()
        log.sink(record(name), context())
        await log.aclose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [line["request_id"] for line in lines_of(path)] == ["first", "second"]


@pytest.mark.anyio
async def test_an_existing_file_keeps_its_lines_and_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text('{"request_id":"older"}\n')
    path.chmod(0o640)
    log = AuditLog(AuditConfig(destination=str(path)))
    await log.open()
    log.sink(record("newer"), context())
    await log.aclose()
    assert [line["request_id"] for line in lines_of(path)] == ["older", "newer"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.anyio
async def test_a_file_that_cannot_be_opened_fails_open(tmp_path: Path) -> None:
    log = AuditLog(AuditConfig(destination=str(tmp_path / "missing" / "audit.log")))
    with pytest.raises(FileNotFoundError):
        await log.open()


@pytest.mark.anyio
async def test_stdout_gets_the_lines(capsys: pytest.CaptureFixture[str]) -> None:
    log = AuditLog(AuditConfig(destination="-"))
    await log.open()
    log.sink(FULL, context())
    log.sink(record("two", model="modèle/ünïcode"), context())
    await log.aclose()
    out = capsys.readouterr().out
    assert out.encode() == FULL_LINE + AuditLog(AuditConfig()).line(record("two", model="modèle/ünïcode"), context())


@pytest.mark.anyio
async def test_a_text_only_stdout_gets_the_lines_too(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    log = AuditLog(AuditConfig())
    await log.open()
    log.sink(FULL, context())
    await log.aclose()
    assert out.getvalue().encode() == FULL_LINE


# -- batching, drops ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_aclose_writes_everything_queued_in_order_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(AuditConfig(destination=str(path)))
    await log.open()
    writes = []
    emit = log._emit
    assert emit is not None

    def counting(data: bytes) -> None:
        writes.append(data.count(b"\n"))
        emit(data)

    log._emit = counting
    for i in range(2500):  # all queued before the writer runs: it takes them 1024 at a time
        log.sink(record(f"r{i}"), context())
    await log.aclose()
    assert [line["request_id"] for line in lines_of(path)] == [f"r{i}" for i in range(2500)]
    assert writes == [1024, 1024, 452]
    assert (log.written, log.dropped) == (2500, 0)


@pytest.mark.anyio
async def test_a_full_queue_drops_counts_and_warns_once_per_burst(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(AuditConfig(destination=str(path), queue_size=3))
    await log.open()
    with caplog.at_level(logging.WARNING, logger="hfasgi.audit"):
        for i in range(10):  # sink never waits: the writer cannot run in between
            log.sink(record(f"a{i}"), context())
        assert log.dropped == 7
        assert len(caplog.records) == 1
        assert "queue of 3 lines is full" in caplog.records[0].getMessage()
        await log.flush()
        assert log.written == 3
        for i in range(5):  # the writer caught up: a new burst, a new warning
            log.sink(record(f"b{i}"), context())
        assert (log.dropped, len(caplog.records)) == (9, 2)
    await log.aclose()
    assert [line["request_id"] for line in lines_of(path)] == ["a0", "a1", "a2", "b0", "b1", "b2"]


@pytest.mark.anyio
async def test_lines_before_open_and_after_aclose_are_dropped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(AuditConfig(destination=str(path)))
    with caplog.at_level(logging.WARNING, logger="hfasgi.audit"):
        log.sink(record("early"), context())
        await log.open()
        log.sink(record("kept"), context())
        await log.aclose()
        log.sink(record("late"), context())
        log.sink(record("later"), context())
    assert log.dropped == 3
    assert [line["request_id"] for line in lines_of(path)] == ["kept"]
    assert [r.getMessage().count("not open") for r in caplog.records] == [1, 1]


@pytest.mark.anyio
async def test_a_failing_write_is_counted_and_the_writer_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(AuditConfig(destination=str(path)))
    await log.open()
    emit = log._emit
    assert emit is not None
    failures = [OSError(28, "No space left on device")]

    def flaky(data: bytes) -> None:
        if failures:
            raise failures.pop()
        emit(data)

    log._emit = flaky
    log.sink(record("lost"), context())
    await log.flush()
    assert (log.dropped, log.written) == (1, 0)
    log.sink(record("kept"), context())
    await log.aclose()
    assert (log.dropped, log.written) == (1, 1)
    assert [line["request_id"] for line in lines_of(path)] == ["kept"]


# -- bodies ------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_bodies_off_no_body_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(AuditConfig(destination=str(path)))
    await log.open()
    log.sink(record(), context(b'{"messages":[{"role":"user","content":"a private prompt"}]}'))
    await log.aclose()
    assert b"private" not in path.read_bytes()
    assert "request_body" not in lines_of(path)[0]


def test_bodies_on_a_plain_json_body_is_logged_as_sent() -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hello \\"you\\""}], "max_tokens": 5}'
    assert body_of(AuditConfig(bodies=True), body) == body.decode()
    assert body_of(AuditConfig(bodies=True), None) is None  # no body was read
    assert body_of(AuditConfig(bodies=True), b"") == ""


def test_bodies_on_configured_secrets_are_redacted_even_escaped() -> None:
    config = AuditConfig(bodies=True, secrets=(HF_TOKEN, API_KEY, "correct horse battery"))
    escaped = json.dumps({"note": f"mine is {API_KEY}!"}, ensure_ascii=True).replace("h", "\\u0068")
    body = json.dumps({"a": HF_TOKEN, f"key {API_KEY}": 1, "b": ["x correct horse battery y"]}).encode()
    logged = body_of(config, body)
    assert json.loads(logged) == {"a": "[redacted]", "key [redacted]": 1, "b": ["x [redacted] y"]}
    assert json.loads(body_of(config, escaped.encode())) == {"note": "mine is [redacted]!"}
    assert body_of(config, f"plain text {API_KEY}{API_KEY}".encode()) == "plain text [redacted][redacted]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("use Bearer abcdefghijklmnop0123456789 now", "use Bearer [redacted] now"),
        ("bearer eyJhbGciOi.J9eyJzdWIi.abc", "bearer [redacted]"),
        (f"token {HF_TOKEN}.", "token [redacted]."),
        ("k=sk-proj-0123456789abcdefXYZ", "k=[redacted]"),
        (f"my key: {API_KEY}", "my key: [redacted]"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl ok", "jwt [redacted] ok"),
        ("password=hunter2&user=bob&x-api-key=zzz", "password=[redacted]&user=bob&x-api-key=[redacted]"),
        ("Authorization: Bearer short", "Authorization: [redacted]"),
        ("max_tokens=5 tokenizer: fast task-specific-model", "max_tokens=5 tokenizer: fast task-specific-model"),
    ],
)
def test_bodies_on_credential_looking_strings_are_redacted(text: str, expected: str) -> None:
    assert body_of(AuditConfig(bodies=True), text.encode()) == expected


def test_bodies_on_values_of_secret_named_json_keys_are_redacted() -> None:
    body = {
        "model": "m",
        "api_key": "plain",
        "headers": {"Authorization": "Basic dXNlcjpwYXNz", "X-Api-Key": "k"},
        "auth": {"access_token": "t", "password": 1234, "client_secret": True, "passwd": None},
        "private_key": "-----BEGIN-----",
        "secret": {"nested": "kept, its own keys are looked at"},
        "max_tokens": 5,
        "max_new_tokens": 6,
        "tokenizer": "fast",
        "token": "x",
    }
    logged = json.loads(body_of(AuditConfig(bodies=True), json.dumps(body, indent=2).encode()))
    redacted = "[redacted]"
    assert logged == body | {
        "api_key": redacted,
        "headers": {"Authorization": redacted, "X-Api-Key": redacted},
        "auth": {"access_token": redacted, "password": redacted, "client_secret": redacted, "passwd": redacted},
        "private_key": redacted,
        "token": redacted,
    }


@pytest.mark.parametrize(
    "body",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        bytes(range(256)) * 4,
        b"RIFF$\x00\x00\x00WAVEfmt ",
        bytes(range(128, 256)),
    ],
)
def test_bodies_on_binary_bodies_are_a_size(body: bytes) -> None:
    assert body_of(AuditConfig(bodies=True), body) == f"<{len(body)} bytes of binary>"


def test_bodies_on_a_stray_invalid_byte_is_replaced() -> None:
    assert body_of(AuditConfig(bodies=True), "un café".encode("latin-1")) == "un caf\ufffd"


def test_bodies_on_long_bodies_are_truncated_and_marked() -> None:
    config = AuditConfig(bodies=True, max_body_chars=20)
    body = b'{"prompt": "' + b"a" * 100 + b'"}'
    assert body_of(config, body) == f'{{"prompt": "aaaaaaaa…[truncated: {len(body)} bytes]'
    assert body_of(config, b"b" * 20) == "b" * 20  # exactly the limit: whole


@pytest.mark.parametrize(("secret", "configured"), [(API_KEY, True), ("hf_" + "x1" * 50, False)])
def test_bodies_on_a_huge_body_is_scanned_in_part_and_a_secret_at_the_cut_does_not_leak(
    secret: str, configured: bool
) -> None:
    log = AuditLog(AuditConfig(bodies=True, secrets=(secret,) if configured else ()))
    queued = log._snapshot(context(b"x" * 10**6))
    assert queued is not None and len(queued[0]) < 10**5  # bounded, whatever the body's size
    # Redactions shrink the text, so the cut (a secret in the middle) lands within what is shown
    for offset in range(len(secret) + 1):
        body = ("y" * offset + (secret + " ") * 1000).encode()
        logged = body_of(log.config, body)
        marker = f"…[truncated: {len(body)} bytes]"
        assert logged.endswith(marker) and logged.startswith("y" * offset)
        leftover = logged.removesuffix(marker)[offset:].replace("[redacted] ", "")
        assert "[redacted] ".startswith(leftover), leftover  # at most a cut-off "[redac"


# -- configuration -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"destination": ""},
        {"destination": "a\0b"},
        {"bodies": "yes"},
        {"secrets": "hf_token"},
        {"secrets": ("ok", "")},
        {"secrets": (None,)},
        {"max_body_chars": 0},
        {"max_body_chars": True},
        {"queue_size": 0},
        {"queue_size": 1.5},
    ],
)
def test_a_bad_config_is_refused_naming_the_field(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=f"AuditConfig.{next(iter(kwargs))}"):
        AuditConfig(**kwargs)


def test_the_config_never_shows_its_secrets() -> None:
    config = AuditConfig(secrets=[API_KEY, API_KEY])  # type: ignore[arg-type]
    assert config.secrets == (API_KEY,)
    assert API_KEY not in repr(config)


# -- property: a secret never reaches the line -------------------------------------------------------------

_ESCAPED_IN_JSON = {'"', "\\"} | {chr(c) for c in range(0x20)}
_FIXED_TEXT = ("[redacted]", "…[truncated: ", " bytes]", " bytes of binary>", "<withheld: it still held a secret")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@st.composite
def bodies_with_secrets(draw: st.DrawFn) -> tuple[list[str], bytes]:
    secrets = draw(st.lists(st.text(min_size=8, max_size=40), min_size=1, max_size=3, unique=True))
    text = st.text(max_size=30)
    pieces: list[str] = []
    for secret in secrets:
        pieces.append(draw(text))
        pieces.append(secret)
    pieces.append(draw(text))
    shape = draw(st.sampled_from(["raw", "json", "json-ascii", "json-key", "padded"]))
    if shape == "raw":
        body = "".join(pieces)
    elif shape == "padded":  # long enough to be cut (and scanned only in part)
        pad = "p" * draw(st.integers(0, 5000))
        body = pad.join(pieces)
    else:
        doc: Any = {"messages": [{"role": "user", "content": "".join(pieces)}]}
        if shape == "json-key":
            doc = {"".join(pieces): draw(st.sampled_from([1, "v", None])), "password": secrets[0]}
        body = json.dumps(doc, ensure_ascii=shape == "json-ascii")
    return secrets, body.encode("utf-8")


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=bodies_with_secrets(), max_chars=st.integers(1, 400))
def test_property_a_secret_embedded_anywhere_never_reaches_the_line(
    case: tuple[list[str], bytes], max_chars: int
) -> None:
    secrets, body = case
    config = AuditConfig(bodies=True, secrets=tuple(secrets), max_body_chars=max_chars)
    baseline = AuditLog(AuditConfig(secrets=tuple(secrets))).line(record(), context()).decode()
    for secret in secrets:  # a secret that is part of the line's own text cannot be kept out of it
        assume(secret not in baseline and not any(secret in fixed for fixed in _FIXED_TEXT))
    line = AuditLog(config).line(record(), context(body))
    logged = orjson.loads(line)["request_body"]
    try:
        inner: Any = json.loads(logged)
    except ValueError:
        inner = None
    for secret in secrets:
        assert secret not in logged
        assert not any(secret in s for s in _strings(inner))
        if not _ESCAPED_IN_JSON & set(secret):
            assert secret.encode() not in line


def test_a_secret_formed_by_a_replacement_next_to_it_goes_too_and_an_endless_one_withholds_the_body() -> None:
    config = AuditConfig(bodies=True, secrets=("AAAAAAAA", "d]BBBBBBBB"))
    assert body_of(config, b"x AAAAAAAABBBBBBBB y") == "x [redacte[redacted] y"
    withheld = body_of(AuditConfig(bodies=True, secrets=("redacted",)), b"x redacted y")
    assert withheld.startswith("<withheld") and "redacted" not in withheld
