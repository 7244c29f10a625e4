"""The health flip end to end: an upstream stops and restarts on its port, and real clients see it.

The gateway is the reference app (``create_app``, probing every 0.2 s) served on a socket; the
upstreams are :class:`FakeHF` servers that can be stopped and started again on one port.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from huggingface_hub import InferenceClient

from hfasgi.app import create_app
from hfasgi.settings import Settings
from tests.servers import free_port, serve
from tests.upstream import FakeHF

pytestmark = [pytest.mark.socket, pytest.mark.usefixtures("no_ambient_hf_token")]

TOKEN = "hf_flip_upstream_secret"


class Restartable:
    """An ASGI app served by uvicorn on a fixed loopback port, stopped and started again at will."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Serve on :attr:`port` (retried until the port can be bound again, within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            config = uvicorn.Config(
                self.app, host="127.0.0.1", port=self.port, log_level="critical", lifespan="off", access_log=False
            )
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, name=f"restartable-{self.port}", daemon=True)
            thread.start()
            while not server.started and thread.is_alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            if server.started:
                self._server, self._thread = server, thread
                return
            server.should_exit = True
            thread.join(timeout)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"could not serve on port {self.port} again within {timeout}s")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (idempotent); the port is free again afterwards."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout)
            assert not thread.is_alive(), "the upstream did not stop"


@pytest.fixture
def restartable() -> Iterator[Callable[[], Restartable]]:
    """``restartable()`` → a started :class:`Restartable` fake TGI upstream (stopped after the test)."""
    made: list[Restartable] = []

    def make() -> Restartable:
        server = Restartable(FakeHF())
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        server.stop()


@contextlib.contextmanager
def gateway(*upstreams: Restartable) -> Iterator[str]:
    """The reference app (``create_app``) in front of ``upstreams`` (TGI kind), probing every 0.2 s."""
    first, *spares = upstreams
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models.toml"
        models.write_text(
            "".join(
                f'[upstreams.spare{i}]\nkind = "tgi"\nurl = "{u.url}"\ntoken = "{TOKEN}"\n'
                for i, u in enumerate(spares, 1)
            )
        )
        settings = Settings(
            upstream_url=first.url,
            upstream_kind="tgi",
            hf_token=TOKEN,
            no_auth=True,
            health_interval=0.2,
            models_file=str(models) if spares else None,
        )
        with serve(create_app(settings)) as url:
            yield url


def until(condition: Callable[[], bool], what: str, deadline: float = 15.0) -> None:
    """Poll ``condition`` until it holds; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for: {what}")
        time.sleep(0.02)


def test_health_flips_when_the_only_upstream_stops_and_back_when_it_restarts(
    restartable: Callable[[], Restartable],
) -> None:
    upstream = restartable()
    with (
        gateway(upstream) as url,
        httpx.Client(base_url=url) as http,
        InferenceClient(base_url=url, provider="hf-inference") as hf,
    ):

        def detail() -> dict[str, Any]:
            doc: dict[str, Any] = http.get("/health/upstream").json()["upstreams"]["default"]
            return doc

        until(lambda: http.get("/health").json()["provider_status"] == {"default": "healthy"}, "first probe")
        assert hf.health_check() is True
        response = http.get("/health")
        assert response.status_code == 200 and response.json()["status"] == "healthy"
        fake: FakeHF = upstream.app
        probe = fake.probes[-1]
        assert probe.path == "/health" and probe.headers["authorization"] == f"Bearer {TOKEN}"

        upstream.stop()
        until(lambda: http.get("/health").status_code == 503, "the gateway notices the upstream is gone")
        doc = http.get("/health").json()
        assert (doc["status"], doc["error"], doc["error_type"]) == ("unhealthy", "unhealthy", "healthcheck")
        assert doc["provider_status"] == {"default": "unhealthy"}
        assert hf.health_check() is False
        until(lambda: detail()["last_error"] == "connection refused", "a refused connection is reported")
        assert detail()["status"] == "unhealthy" and detail()["consecutive_failures"] >= 1

        upstream.start()
        until(lambda: hf.health_check() is True, "the gateway notices the upstream is back")
        doc = http.get("/health").json()
        assert doc["status"] == "healthy" and "error" not in doc
        assert detail()["status"] == "healthy" and detail()["consecutive_failures"] == 0
        assert TOKEN not in http.get("/health/upstream").text


def test_one_upstream_down_of_two_is_degraded_and_still_healthy_for_hf_clients(
    restartable: Callable[[], Restartable],
) -> None:
    first, second = restartable(), restartable()
    with (
        gateway(first, second) as url,
        httpx.Client(base_url=url) as http,
        InferenceClient(base_url=url, provider="hf-inference") as hf,
    ):
        until(lambda: http.get("/health").json()["status"] == "healthy", "both upstreams probed")
        second.stop()
        until(lambda: http.get("/health").json()["status"] == "degraded", "one upstream gone")
        response = http.get("/health")
        assert response.status_code == 200 and "error" not in response.json()
        assert response.json()["provider_status"] == {"default": "healthy", "spare1": "unhealthy"}
        assert hf.health_check() is True
        second.start()
        until(lambda: http.get("/health").json()["status"] == "healthy", "both upstreams back")
        assert http.get("/health/upstream").json()["status"] == "healthy"
