"""``hfasgi serve`` over HTTPS, and its authentication switches.

A CA and a certificate for 127.0.0.1/localhost are made at run time with ``trustme``; the reference app
runs as a real ``python -m hfasgi.cli serve --ssl-certfile ... --ssl-keyfile ...`` process in front of
the fake HF upstream, with an API key from ``HFASGI_API_KEYS``. Real clients call it over TLS, trusting
only that CA: ``openai`` (through an ``httpx.Client(verify=<ssl context>)``) in this process, and
``huggingface_hub``'s ``InferenceClient`` in a child process with ``SSL_CERT_FILE`` set, since its HTTP
client can only be changed process-wide.

The last tests run ``main(["serve", ...])`` in-process with ``uvicorn.run`` replaced, to check what
``serve`` does with its flags (and that it refuses to run open by accident) without serving anything.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest
import trustme

import hfasgi.app
from hfasgi.cli import main
from hfasgi.settings import ENVIRONMENT, Settings
from tests.e2e.clients import CHAT_MODEL, MESSAGES
from tests.e2e.conftest import SERVER_TOKEN
from tests.processes import ROOT, ServeProcess, environment, serve_process
from tests.servers import free_port
from tests.upstream import FakeHF, expected_chat
from tests.upstream.fixtures import Upstream

API_KEY = "hfasgi_test-key-for-the-https-gateway"
"""The key the gateway accepts (``HFASGI_API_KEYS=https-test=<key>``)."""


@dataclass(frozen=True)
class Pki:
    """A run-time CA and the files of a server certificate it issued for 127.0.0.1 and localhost."""

    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only (hostname checks on)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(context)
        return context


@dataclass(frozen=True)
class Gateway:
    url: str
    port: int
    pki: Pki
    log: Path
    key_file: Path
    """The gateway's key file (``HFASGI_API_KEYS_FILE``), written by ``hfasgi keys``."""
    file_key: str
    """A key made by ``hfasgi keys add file-key`` (revoked by one of the tests)."""


def hfasgi_keys(*argv: str) -> str:
    """``hfasgi keys <argv>`` in-process (it must succeed); what it printed on stdout."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["keys", *argv])
    assert code == 0, err.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    pki = Pki(ca, directory / "ca.pem", directory / "server-chain.pem", directory / "server-key.pem")
    ca.cert_pem.write_to_path(str(pki.ca_file))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(pki.cert_file), append=i > 0)
    server.private_key_pem.write_to_path(str(pki.key_file))
    return pki


def _accepts_tls(context: ssl.SSLContext) -> Callable[[ServeProcess], bool]:
    """A readiness test: the port completes a TLS handshake with ``context``."""

    def check(served: ServeProcess) -> bool:
        try:
            with (
                socket.create_connection(("127.0.0.1", served.port), timeout=1.0) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                return True
        except (OSError, ssl.SSLError):  # refused until uvicorn listens
            return False

    return check


@pytest.fixture(scope="module")
def https_gateway(upstream: Upstream, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """``hfasgi serve`` with TLS, in a child process, in front of the fake upstream."""
    directory = tmp_path_factory.mktemp("serve")
    log, key_file = directory / "serve.log", directory / "keys.toml"
    file_key = hfasgi_keys("add", "file-key", "--file", str(key_file)).strip()
    env = environment(
        HFASGI_UPSTREAM_URL=upstream.url,
        HFASGI_API_KEYS=f"https-test={API_KEY}",
        HFASGI_API_KEYS_FILE=str(key_file),
        HF_TOKEN=SERVER_TOKEN,
    )
    tls = ("--ssl-certfile", str(pki.cert_file), "--ssl-keyfile", str(pki.key_file))
    ready = _accepts_tls(pki.client_context())
    with serve_process(env, log, "--log-level", "warning", *tls, scheme="https", ready=ready) as served:
        yield Gateway(served.url, served.port, pki, log, key_file, file_key)


def openai_client(gateway: Gateway, http: httpx.Client | httpx2.Client, api_key: str = API_KEY) -> openai.OpenAI:
    """An OpenAI client on the gateway's ``/v1``, over ``http`` (which trusts the test CA)."""
    return openai.OpenAI(
        base_url=f"{gateway.url}/v1",
        api_key=api_key,
        max_retries=0,
        http_client=http,  # type: ignore[arg-type]  # openai 3 takes an httpx2.Client, or a (legacy) httpx.Client
    )


# --- over TLS -----------------------------------------------------------------------------------------------


@pytest.mark.socket
def test_the_start_line_says_https(https_gateway: Gateway) -> None:
    log = https_gateway.log.read_text()
    assert f"on https://127.0.0.1:{https_gateway.port}" in log
    assert f"authentication: 1 key from HFASGI_API_KEYS, key file {https_gateway.key_file}" in log
    assert API_KEY not in log and https_gateway.file_key not in log and SERVER_TOKEN not in log


@pytest.mark.socket
@pytest.mark.parametrize("httpx_module", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_openai_chat_over_https(https_gateway: Gateway, fake: FakeHF, httpx_module: Any) -> None:
    """openai 3 runs on ``httpx2`` and still accepts an ``httpx.Client``: both, verifying with the test CA."""
    with httpx_module.Client(verify=https_gateway.pki.client_context()) as http:
        out = openai_client(https_gateway, http).chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, max_tokens=4
        )
    assert out.model == CHAT_MODEL and out.choices[0].message.content == expected_chat(MESSAGES, 4)
    sent = fake.last()
    assert sent.path == "/v1/chat/completions" and sent.json["messages"] == MESSAGES
    assert sent.headers["authorization"] == f"Bearer {SERVER_TOKEN}", "the client's key stays at the gateway"


@pytest.mark.socket
def test_a_wrong_key_over_https_is_401(https_gateway: Gateway, fake: FakeHF) -> None:
    with (
        httpx.Client(verify=https_gateway.pki.client_context()) as http,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        openai_client(https_gateway, http, api_key="hfasgi_not-a-key-this-gateway-knows").chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, max_tokens=4
        )
    assert caught.value.status_code == 401
    assert fake.requests == [], "a refused request never reaches the upstream"


@pytest.mark.socket
def test_a_key_from_hfasgi_keys_works_until_it_is_revoked(https_gateway: Gateway, fake: FakeHF) -> None:
    """``hfasgi keys add`` → the running gateway accepts the key; ``hfasgi keys revoke`` → it refuses it."""
    with httpx.Client(verify=https_gateway.pki.client_context()) as http:
        client = openai_client(https_gateway, http, api_key=https_gateway.file_key)
        out = client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=2)
        assert out.choices[0].message.content == expected_chat(MESSAGES, 2)
        hfasgi_keys("revoke", "file-key", "--file", str(https_gateway.key_file))
        deadline = time.monotonic() + 10  # the gateway re-reads the file at most once a second
        while True:
            try:
                client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=1)
            except openai.AuthenticationError as exc:
                assert exc.status_code == 401
                break
            assert time.monotonic() < deadline, "the revoked key is still accepted"
            time.sleep(0.1)


@pytest.mark.socket
def test_plain_http_to_the_tls_port_fails(https_gateway: Gateway) -> None:
    with httpx.Client() as http, pytest.raises(httpx.TransportError):
        http.get(f"http://127.0.0.1:{https_gateway.port}/health")


@pytest.mark.socket
def test_a_client_that_does_not_trust_the_ca_refuses_the_gateway(https_gateway: Gateway) -> None:
    """The certificate is really checked: without the test CA, the handshake fails."""
    untrusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts nothing at all
    with httpx.Client(verify=untrusting) as http, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY"):
        http.get(f"{https_gateway.url}/health")


@pytest.mark.socket
def test_huggingface_hub_over_https(https_gateway: Gateway, fake: FakeHF, tmp_path: Path) -> None:
    """``InferenceClient`` through TLS; it trusts the CA via ``SSL_CERT_FILE``, so it runs in a child process."""
    script = textwrap.dedent(
        """
        import json, sys
        from huggingface_hub import InferenceClient

        base_url, api_key, model, messages = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
        with InferenceClient(base_url=base_url, api_key=api_key) as client:
            out = client.chat_completion(messages, model=model, max_tokens=3)
        print(json.dumps({"model": out.model, "content": out.choices[0].message.content}))
        """
    )
    env = environment()
    env.pop("HF_TOKEN", None)
    env.update(SSL_CERT_FILE=str(https_gateway.pki.ca_file), HF_HUB_DISABLE_TELEMETRY="1", HF_HOME=str(tmp_path))
    argv = [f"{https_gateway.url}/v1", API_KEY, CHAT_MODEL, json.dumps(MESSAGES)]
    done = subprocess.run(
        [sys.executable, "-c", script, *argv], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"model": CHAT_MODEL, "content": expected_chat(MESSAGES, 3)}
    assert fake.last().headers["authorization"] == f"Bearer {SERVER_TOKEN}"


# --- what `serve` does with its flags (in-process; uvicorn.run replaced) ------------------------------------


@pytest.fixture
def uvicorn_runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The calls to ``uvicorn.run`` (which serves nothing here); no hfasgi setting from the environment."""
    import uvicorn

    for variable in ENVIRONMENT.values():
        monkeypatch.delenv(variable, raising=False)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append({"app": app, **options}))
    return calls


@pytest.fixture
def made_with(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """The settings ``create_app`` was called with (the real ``create_app`` still runs)."""
    seen: list[Settings] = []
    real = hfasgi.app.create_app

    def create_app(settings: Settings | None = None) -> Any:
        assert settings is not None
        seen.append(settings)
        return real(settings)

    monkeypatch.setattr(hfasgi.app, "create_app", create_app)
    return seen


def test_serve_refuses_to_start_without_keys(
    uvicorn_runs: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """No API key, key file, Redis key store or JWKS, and no ``--no-auth``: exit 2, naming ``--no-auth``."""
    assert main(["serve", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "hfasgi: invalid configuration:" in err and "--no-auth" in err
    assert uvicorn_runs == []


def test_serve_no_auth_warns_that_the_gateway_is_open(
    uvicorn_runs: list[dict[str, Any]], made_with: list[Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--port", "8123", "--no-auth"]) == 0
    [settings] = made_with
    assert settings.no_auth is True
    [run] = uvicorn_runs
    assert run["port"] == 8123 and run["ssl_certfile"] is None and run["ssl_keyfile"] is None
    err = capsys.readouterr().err
    assert "on http://127.0.0.1:8123" in err
    assert "authentication is off (--no-auth): anyone who can reach http://127.0.0.1:8123" in err
    assert "Hugging Face token" in err


def test_serve_no_auth_from_the_environment(
    uvicorn_runs: list[dict[str, Any]],
    made_with: list[Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without the flag, ``--no-auth`` is no override at all, so ``HFASGI_NO_AUTH`` decides."""
    monkeypatch.setenv("HFASGI_NO_AUTH", "1")
    assert main(["serve"]) == 0
    assert made_with[0].no_auth is True and len(uvicorn_runs) == 1
    assert "authentication is off" in capsys.readouterr().err


def test_serve_tls_flags_reach_uvicorn(
    uvicorn_runs: list[dict[str, Any]],
    made_with: list[Settings],
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HFASGI_API_KEYS", f"one={API_KEY},two=hfasgi_another-test-key")
    argv = ["serve", "--port", "8443", "--ssl-certfile", str(pki.cert_file), "--ssl-keyfile", str(pki.key_file)]
    assert main(argv) == 0
    [run] = uvicorn_runs
    assert (run["ssl_certfile"], run["ssl_keyfile"]) == (str(pki.cert_file), str(pki.key_file))
    assert (made_with[0].ssl_certfile, made_with[0].no_auth) == (str(pki.cert_file), False)
    err = capsys.readouterr().err
    assert "on https://127.0.0.1:8443" in err
    assert "authentication: 2 keys from HFASGI_API_KEYS" in err and "authentication is off" not in err
    assert API_KEY not in err and "another-test-key" not in err


def test_serve_tls_from_the_environment(
    uvicorn_runs: list[dict[str, Any]], pki: Pki, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HFASGI_SSL_CERTFILE", str(pki.cert_file))
    monkeypatch.setenv("HFASGI_SSL_KEYFILE", str(pki.key_file))
    assert main(["serve", "--no-auth"]) == 0
    assert uvicorn_runs[0]["ssl_certfile"] == str(pki.cert_file)
    assert "on https://127.0.0.1:8000" in capsys.readouterr().err


def test_serve_needs_both_tls_files(
    uvicorn_runs: list[dict[str, Any]], pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--no-auth", "--ssl-certfile", str(pki.cert_file)]) == 2
    assert "go together" in capsys.readouterr().err and uvicorn_runs == []
