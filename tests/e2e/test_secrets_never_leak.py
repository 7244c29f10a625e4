"""Secrets never leak: client keys (valid, invalid, in ``x-api-key``, next to an unrelated HF token) and the
gateway's own token stay out of logs, response bodies and headers, everything the upstream receives, key
files and ``repr(Settings)``.

Two gateways are watched: the reference app served in this process with every log record captured at
DEBUG (``caplog``, root and ``hfasgi`` loggers), and ``python -m hfasgi.cli serve --log-level debug
--access-log`` in a subprocess whose stdout and stderr are captured whole.
"""

from __future__ import annotations

import logging
import secrets
import stat
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError, TextGenerationError

from hfasgi import cli
from hfasgi.app import create_app
from hfasgi.auth import KeyRecord, hash_key, new_key, read_key_file, write_key_file
from hfasgi.settings import Settings
from tests.e2e.clients import CHAT_MODEL, MESSAGES, PROMPT
from tests.e2e.conftest import SERVER_TOKEN
from tests.processes import environment, serve_process
from tests.servers import serve
from tests.upstream import FakeHF
from tests.upstream.fixtures import Upstream

pytestmark = [pytest.mark.socket, pytest.mark.usefixtures("no_ambient_hf_token")]

VALID = new_key()
X_API_KEY = new_key()
BARE = new_key()
"""Registered without a name: its id is derived from its hash, and must not be the key."""
FILE_KEY = new_key()
INVALID = new_key()
UNRELATED = "hf_" + secrets.token_urlsafe(24)
"""The user's own HF token, sent in ``Authorization`` next to ``x-api-key``."""
CLIENT_SECRETS = {"valid": VALID, "x-api-key": X_API_KEY, "bare": BARE, "file": FILE_KEY, "invalid": INVALID}
ALL_SECRETS = {**CLIENT_SECRETS, "unrelated": UNRELATED}
API_KEYS = f"ci={VALID},xk={X_API_KEY},{BARE}"
RATE_LIMIT = 10


def leaks(text: str, named: dict[str, str]) -> list[str]:
    """The names of the secrets in ``named`` found in ``text``."""
    return [name for name, value in named.items() if value in text]


class Seen:
    """Everything a client got back: bodies, headers, exception texts."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def response(self, response: httpx.Response | Any) -> None:
        self.parts.append(f"{response.status_code} {list(response.headers.multi_items())} {response.text}")

    def error(self, exc: BaseException) -> None:
        self.parts.append(f"{type(exc).__name__}: {exc!s} {exc!r}")
        http = exc.__cause__ if isinstance(exc, TextGenerationError) else exc
        response = getattr(http, "response", None)
        if response is not None:
            self.response(response)

    def value(self, value: Any) -> None:
        self.parts.append(repr(value))

    @property
    def text(self) -> str:
        return "\n".join(self.parts)


def exercise(url: str, fake: FakeHF, seen: Seen) -> None:
    """Good keys, bad keys and refusals through real clients and raw httpx, recording what comes back."""
    with InferenceClient(base_url=url, api_key=VALID) as client:
        seen.value(client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=2))
    with InferenceClient(model=f"{url}/models/fake/text-generation", api_key=VALID) as client:
        seen.value(list(client.text_generation(PROMPT, max_new_tokens=3, stream=True, details=True)))
    with InferenceClient(
        model=f"{url}/models/fake/text-classification", api_key=UNRELATED, headers={"x-api-key": X_API_KEY}
    ) as client:
        seen.value(client.text_classification("Alice met Bob"))
    for key in (INVALID, f"{VALID}x", VALID[:-1]):  # unknown keys, also near misses of a real one
        with InferenceClient(base_url=url, api_key=key) as client, pytest.raises(HfHubHTTPError) as hub:
            client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=2)
        seen.error(hub.value)
    with (
        InferenceClient(model=f"{url}/models/fake/text-generation", api_key=INVALID) as client,
        pytest.raises(TextGenerationError) as generation,
    ):
        client.text_generation(PROMPT, max_new_tokens=2)
    seen.error(generation.value)
    with openai.OpenAI(base_url=f"{url}/v1", api_key=INVALID, max_retries=0) as oai:
        with pytest.raises(openai.AuthenticationError) as refused:
            oai.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=2)
        seen.error(refused.value)
    with openai.OpenAI(base_url=f"{url}/v1", api_key=VALID, max_retries=0) as oai:
        seen.value(list(oai.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=2, stream=True)))
    with httpx.Client(base_url=url) as raw:
        body = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 2}
        for headers in (
            {"authorization": f"Bearer: {INVALID}"},
            {"authorization": f"Basic {INVALID}"},
            {"x-api-key": INVALID, "authorization": f"Bearer {UNRELATED}"},
            {"x-api-key": FILE_KEY},
            {"authorization": f"Bearer {VALID}", "x-fake-scenario": "error:500"},
            {"authorization": f"Bearer {VALID}", "x-fake-scenario": "stream-error"},
        ):
            seen.response(raw.post("/v1/chat/completions", json={**body, "stream": True}, headers=headers))
        seen.response(raw.post("/v1/chat/completions", content=b"{not json", headers={"x-api-key": VALID}))
        for _ in range(RATE_LIMIT + 1):  # the bare key's 429 names its id, derived from its hash
            limited = raw.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {BARE}"})
            seen.response(limited)
        assert limited.status_code == 429 and f"'key-{hash_key(BARE)[7:15]}'" in limited.json()["error"]
    assert len(fake.requests) >= 8


def upstream_text(fake: FakeHF) -> str:
    """Everything the fake upstream received: methods, paths, queries, headers and bodies."""
    return "\n".join(
        f"{r.method} {r.path}?{r.query} {r.headers} {r.body.decode('utf-8', 'replace')}" for r in fake.requests
    )


def key_file_with(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    write_key_file(path, [KeyRecord.for_key("from-file", FILE_KEY)])
    return path


def test_in_process_gateway_logs_nothing_secret(
    upstream: Upstream, fake: FakeHF, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every record logged at DEBUG while serving (the gateway's threads included) is free of secrets."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="hfasgi")
    key_file = key_file_with(tmp_path)
    settings = Settings(
        upstream_url=upstream.url,
        hf_token=SERVER_TOKEN,
        api_keys=API_KEYS,
        api_keys_file=str(key_file),
        rate_limit=f"{RATE_LIMIT}/minute",
        token_limit="100000/minute",
    )
    seen = Seen()
    with serve(create_app(settings)) as url:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            caplog.set_level(logging.DEBUG, logger=name)
        exercise(url, fake, seen)
        key_file.write_text("[keys.broken\n")  # the store logs that it cannot re-read the file
        deadline = time.monotonic() + 5
        while not any("could not be re-read" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the key store never logged the unreadable file"
            seen.response(httpx.post(f"{url}/v1/chat/completions", json={}, headers={"x-api-key": INVALID}))
            time.sleep(0.1)
    # the servers (gateway, fake upstream) log from their own threads; the clients' records are theirs
    served = [r for r in caplog.records if r.thread != threading.get_ident()]
    assert any(r.name == "hfasgi.auth" and r.levelno == logging.ERROR for r in served)  # gateway logs were seen
    logged = "\n".join(f"{caplog.handler.format(r)} {vars(r)!r}" for r in served)
    assert leaks(logged, ALL_SECRETS) == [] and SERVER_TOKEN not in logged
    assert leaks(seen.text, ALL_SECRETS) == [] and SERVER_TOKEN not in seen.text
    sent = upstream_text(fake)
    assert leaks(sent, ALL_SECRETS) == []
    assert f"Bearer {SERVER_TOKEN}" in sent  # the gateway's own token is what goes upstream


def test_cli_gateway_logs_nothing_secret(upstream: Upstream, fake: FakeHF, tmp_path: Path) -> None:
    """The real command at ``--log-level debug --access-log``: its whole output is free of secrets."""
    env = environment(
        HFASGI_UPSTREAM_URL=upstream.url,
        HFASGI_UPSTREAM_KIND="router",
        HF_TOKEN=SERVER_TOKEN,
        HFASGI_API_KEYS=API_KEYS,
        HFASGI_API_KEYS_FILE=str(key_file_with(tmp_path)),
        HFASGI_RATE_LIMIT=f"{RATE_LIMIT}/minute",
        HFASGI_TOKEN_LIMIT="100000/minute",
    )
    seen = Seen()
    with serve_process(env, tmp_path / "serve.log", "--log-level", "debug", "--access-log") as served:
        url = served.url
        exercise(url, fake, seen)
        Path(env["HFASGI_API_KEYS_FILE"]).write_text("[keys.broken\n")  # the gateway logs an error about it
        deadline = time.monotonic() + 5
        while "could not be re-read" not in served.output():
            assert time.monotonic() < deadline, "the key store never logged the unreadable file"
            seen.response(httpx.post(f"{url}/v1/chat/completions", json={}, headers={"x-api-key": INVALID}))
            time.sleep(0.1)
        logged = served.output()
    assert "hfasgi: authentication: 3 keys from HFASGI_API_KEYS, key file " in logged  # the start-up line
    assert '"POST /v1/chat/completions HTTP/1.1" 401' in logged and '"POST /v1/chat/completions HTTP/1.1" 200' in logged
    assert '"POST /v1/chat/completions HTTP/1.1" 429' in logged  # the access log saw every exchange
    assert leaks(logged, ALL_SECRETS) == [] and SERVER_TOKEN not in logged
    assert leaks(seen.text, ALL_SECRETS) == [] and SERVER_TOKEN not in seen.text
    assert leaks(upstream_text(fake), ALL_SECRETS) == []


# --- key files and settings -----------------------------------------------------------------------


def test_key_file_holds_hashes_only(tmp_path: Path) -> None:
    """``write_key_file`` stores the hash and the record, never the key; the file is its owner's alone."""
    path = tmp_path / "keys.toml"
    record = KeyRecord.for_key(
        "ci", VALID, models=("org/*",), tasks=("chat-completion",), rate_limit=None, token_limit=None
    )
    write_key_file(path, [record, KeyRecord.for_key("other", X_API_KEY).revoke()])
    text = path.read_text()
    assert leaks(text, CLIENT_SECRETS) == []
    assert hash_key(VALID) in text and hash_key(X_API_KEY) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = read_key_file(path)
    assert loaded["ci"] == record and loaded["other"].revoked is not None
    assert leaks(repr(loaded), CLIENT_SECRETS) == [] and hash_key(VALID) not in repr(loaded)  # repr hides the hash


def test_keys_add_prints_the_key_once_and_stores_its_hash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``hfasgi keys add`` prints the key on stdout once; the file and ``keys list`` only know its hash."""
    path = tmp_path / "keys.toml"
    assert cli.main(["keys", "add", "ci-bot", "--file", str(path)]) == 0
    added = capsys.readouterr()
    key = added.out.strip()
    assert key.startswith("hfasgi_") and key not in added.err
    text = path.read_text()
    assert key not in text and hash_key(key) in text
    assert cli.main(["keys", "list", "--file", str(path)]) == 0
    listed = capsys.readouterr()
    assert "ci-bot" in listed.out and key not in listed.out + listed.err
    assert cli.main(["keys", "list", "--json", "--file", str(path)]) == 0
    as_json = capsys.readouterr()
    assert "ci-bot" in as_json.out and key not in as_json.out and hash_key(key) not in as_json.out


def test_settings_repr_hides_keys_redis_url_and_token(tmp_path: Path) -> None:
    """``repr``/``str`` of :class:`Settings` (what ends up in tracebacks and logs) omit every secret."""
    redis_password = secrets.token_urlsafe(16)
    settings = Settings(
        api_keys=API_KEYS,
        api_keys_file=str(key_file_with(tmp_path)),
        redis_url=f"redis://:{redis_password}@127.0.0.1:6379/0",
        hf_token=SERVER_TOKEN,
        rate_limit="5/minute",
    )
    for text in (repr(settings), str(settings), repr(settings.with_(port=9000))):
        assert leaks(text, {**CLIENT_SECRETS, "redis": redis_password, "server": SERVER_TOKEN}) == []
        assert "api_keys=" not in text and "redis_url" not in text and "hf_token" not in text
        assert "rate_limit='5/minute'" in text  # the rest is shown


def test_settings_errors_do_not_echo_keys() -> None:
    """A bad setting next to keys is reported without repeating the keys."""
    with pytest.raises(ValueError) as info:
        Settings.load(environ={"HFASGI_API_KEYS": API_KEYS, "HFASGI_RATE_LIMIT": "lots"})
    assert "HFASGI_RATE_LIMIT" in str(info.value) and leaks(str(info.value), CLIENT_SECRETS) == []
