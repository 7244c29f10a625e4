"""The reference app with a managed child (the fake one), on real sockets: served, 503 while restarting, stopped."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from hfasgi.app import create_app
from hfasgi.local import wiring
from hfasgi.settings import Settings
from tests.local.support import DEADLINE, alive, fake_command
from tests.servers import serve

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def may_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``transformers serve`` is the fake child here (no torch needed); it starts only while this file exists."""
    flag = tmp_path / "may-start"
    flag.touch()
    monkeypatch.setattr(wiring, "serve_command", lambda model, port: fake_command(port, "--require", str(flag)))
    monkeypatch.setattr(wiring, "REQUIRED_MODULES", ())
    return flag


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    folder = tmp_path / "tiny"
    folder.mkdir()
    return Settings(local_model=str(folder), no_auth=True, usage_db="off", health_interval=3600.0)


def _answer_pid(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    content = response.json()["choices"][0]["message"]["content"]
    assert content.startswith("hello from ")
    return int(content.rpartition(" ")[2])


def test_chat_and_tgi_reach_the_child_which_stops_with_the_app(may_start: Path, settings: Settings) -> None:
    with serve(create_app(settings), timeout=DEADLINE) as url, httpx.Client(base_url=url, timeout=10) as client:
        pid = _answer_pid(client.post("/v1/chat/completions", json=CHAT))
        generated = client.post("/generate", json={"inputs": "hi", "parameters": {"max_new_tokens": 4}})
        assert generated.status_code == 200, generated.text
        assert generated.json()["generated_text"] == f"hello from {pid}"
        models = client.get("/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["tiny"]
        assert alive(pid)
    assert not alive(pid)  # the lifespan's shutdown stopped it


def test_a_dead_child_means_503_with_retry_after_until_it_is_back(may_start: Path, settings: Settings) -> None:
    with serve(create_app(settings), timeout=DEADLINE) as url, httpx.Client(base_url=url, timeout=10) as client:
        first = _answer_pid(client.post("/v1/chat/completions", json=CHAT))
        may_start.unlink()  # its restarts fail until the flag is back
        os.kill(first, signal.SIGKILL)
        for document in (CHAT, {**CHAT, "model": "dummy"}):
            response = client.post("/v1/chat/completions", json=document)
            assert response.status_code == 503, response.text
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error_type"] == "upstream_unavailable"
        tgi = client.post("/generate", json={"inputs": "hi"})
        assert (tgi.status_code, tgi.json()["error_type"]) == (503, "upstream_unavailable")
        assert "retry-after" in tgi.headers
        assert client.get("/v1/models").status_code == 200  # answered from the catalog
        may_start.touch()
        deadline = time.monotonic() + DEADLINE
        while (response := client.post("/v1/chat/completions", json=CHAT)).status_code == 503:
            assert time.monotonic() < deadline, "the child did not come back"
            time.sleep(0.02)
        second = _answer_pid(response)
        assert second != first and not alive(first)
