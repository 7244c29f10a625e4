"""ManagedProcess with a fake child: start, readiness, start-up failures, restart with backoff, stop, no orphans."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from hfasgi.local.process import ManagedProcess, ProcessConfig, ProcessStartError, restart_delay
from hfasgi.local.wiring import child_environment
from tests.local.support import DEADLINE, FAKE_CHILD, alive, eventually, fake_config, wait_gone

pytestmark = pytest.mark.anyio

LOGGER = "hfasgi.local"


async def _get_json(url: str) -> object:
    async with aiohttp.ClientSession(trust_env=False) as session, session.get(url) as response:
        assert response.status == 200
        return await response.json()


def _restart_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and hasattr(r, "restart_delay")]


async def test_open_waits_until_ready_and_aclose_stops_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    config = fake_config(quiet=('"GET /health HTTP/1.1" 200',))
    process = ManagedProcess(config)
    assert not process.available and process.pid is None
    await process.open()
    try:
        assert process.available
        pid = process.pid
        assert pid is not None and alive(pid)
        assert await _get_json(config.health_url) == {"status": "ok"}
    finally:
        await process.aclose()
    assert not process.available
    assert not alive(pid)  # reaped before aclose returned
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert any("fake child | fake child listening on 127.0.0.1" in line for line in lines), lines
    assert any(f"(pid {pid}) stopped" in line for line in lines), lines
    probes = [r for r in caplog.records if r.name == LOGGER and '"GET /health HTTP/1.1" 200' in r.getMessage()]
    assert probes and all(r.levelno == logging.DEBUG for r in probes)


async def test_aclose_without_open_and_twice_is_harmless() -> None:
    process = ManagedProcess(fake_config())
    await process.aclose()
    await process.open()
    await process.aclose()
    await process.aclose()


async def test_the_child_gets_an_offline_environment_without_the_gateways_secrets(tmp_path: Path) -> None:
    parent = {
        **os.environ,
        "HF_TOKEN": "hf_secret",
        "HFASGI_API_KEYS": "gateway-key",
        "FAKE_MARK": "kept",
        "HF_HOME": str(tmp_path / "hf-home"),
    }
    parent.pop("HF_HUB_OFFLINE", None)
    config = fake_config(env=child_environment(parent))
    process = ManagedProcess(config)
    await process.open()
    try:
        seen = await _get_json(config.health_url.replace("/health", "/env"))
    finally:
        await process.aclose()
    assert seen == {
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_TOKEN": None,
        "HFASGI_API_KEYS": None,
        "FAKE_MARK": "kept",
    }
    assert (tmp_path / "hf-home" / "hub").is_dir()  # else transformers serve's /v1/models answers 500
    assert "HF_HUB_OFFLINE" not in os.environ  # the gateway's own clients stay online


async def test_a_child_that_exits_during_start_up_fails_open_with_its_last_lines() -> None:
    process = ManagedProcess(fake_config("--exit-code", "7", name="local model 'broken'"))
    with pytest.raises(ProcessStartError) as caught:
        await process.open()
    message = str(caught.value)
    assert message.startswith("local model 'broken' did not start: it exited with code 7 before answering")
    assert "its last output lines:" in message
    assert "fake child: something went wrong" in message
    assert not process.available


async def test_a_child_that_never_answers_times_out_and_is_stopped() -> None:
    process = ManagedProcess(fake_config("--never-ready", start_timeout=1.0))
    with pytest.raises(ProcessStartError, match=r"did not answer http://127\.0\.0\.1:\d+/health within 1 s"):
        await process.open()
    assert process.pid is not None
    assert not alive(process.pid)


async def test_a_missing_executable_is_named() -> None:
    config = ProcessConfig(argv=("/nonexistent/transformers", "serve"), health_url="http://127.0.0.1:9/health")
    with pytest.raises(ProcessStartError, match="/nonexistent/transformers") as caught:
        await ManagedProcess(config).open()
    assert "No such file or directory" in str(caught.value)


async def test_a_progress_bar_is_logged_as_its_last_state() -> None:
    script = "import sys; print('Loading: 0%\\rLoading: 50%\\rLoading: 100%'); sys.exit('boom')"
    config = ProcessConfig(argv=(sys.executable, "-c", script), health_url="http://127.0.0.1:9/health")
    with pytest.raises(ProcessStartError) as caught:
        await ManagedProcess(config).open()
    message = str(caught.value)
    assert "    Loading: 100%\n    boom" in message
    assert "50%" not in message


async def test_a_dead_child_is_restarted_with_growing_backoff(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    flag = tmp_path / "may-start"
    flag.touch()
    process = ManagedProcess(fake_config("--require", str(flag), stable_after=3600.0))
    await process.open()
    try:
        first = process.pid
        assert first is not None
        flag.unlink()  # every restart now fails until the flag is back
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: not process.available, "the death to be noticed")
        assert process.retry_after >= 1
        assert not await process.wait_available(0.01)
        await eventually(lambda: len(_restart_records(caplog)) >= 3, "three restart attempts")
        flag.touch()
        assert await process.wait_available(DEADLINE)
        assert process.available and process.restarts == 1
        second = process.pid
        assert second is not None and second != first and alive(second)
    finally:
        await process.aclose()
    attempts = _restart_records(caplog)
    delays = [r.restart_delay for r in attempts]
    assert [r.restart_attempt for r in attempts] == list(range(1, len(attempts) + 1))
    assert delays == [restart_delay(n, 0.05, 30.0) for n in range(1, len(attempts) + 1)]
    assert delays[0] < delays[1] < delays[2]
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("did not start: it exited with code 3" in line and "is missing" in line for line in failures)


def test_restart_delay_doubles_up_to_its_ceiling() -> None:
    assert [restart_delay(n, 0.5, 4.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    process = ManagedProcess(fake_config("--ignore-sigterm", stop_grace=0.3))
    await process.open()
    pid = process.pid
    assert pid is not None
    await process.aclose()
    assert not alive(pid)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"(pid {pid}) did not stop within 0.3 s of SIGTERM: killing it" in w for w in warnings), warnings


async def test_the_childs_own_children_are_stopped_with_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    process = ManagedProcess(fake_config("--grandchild", str(pid_file)))
    await process.open()
    grandchild = int(pid_file.read_text())
    assert alive(grandchild)
    await process.aclose()
    await eventually(lambda: not alive(grandchild), "the grandchild to die with the child")


async def test_a_dead_childs_leftovers_are_killed_before_the_restart(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    process = ManagedProcess(fake_config("--grandchild", str(pid_file)))
    await process.open()
    try:
        grandchild = int(pid_file.read_text())
        first = process.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: not alive(grandchild), "the grandchild to die with its parent")
        assert await process.wait_available(DEADLINE)
    finally:
        await process.aclose()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_the_child_dies_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(root=str(Path(__file__).parents[2]), child=str(FAKE_CHILD)))
    with subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as run:
        assert run.stdout is not None
        line = run.stdout.readline().decode()
        assert line.startswith("PID "), line
        child = int(line.split()[1])
        assert alive(child)
        run.kill()
        run.wait()
    assert wait_gone(child), "the child outlived its SIGKILLed supervisor"


DRIVER = """
import asyncio, sys
sys.path.insert(0, {root!r})
from hfasgi.local.process import ManagedProcess, ProcessConfig
from tests.servers import free_port

async def main():
    port = free_port()
    argv = (sys.executable, {child!r}, "--port", str(port))
    process = ManagedProcess(ProcessConfig(argv=argv, health_url=f"http://127.0.0.1:{{port}}/health"))
    await process.open()
    print("PID", process.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""
"""A supervisor that never stops its child: only the kernel's parent-death signal can."""


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="argv"):
        ProcessConfig(argv=(), health_url="http://127.0.0.1:1/health")
    with pytest.raises(ValueError, match="health_url"):
        ProcessConfig(argv=("x",), health_url="127.0.0.1:1/health")
    with pytest.raises(ValueError, match="stop_grace"):
        ProcessConfig(argv=("x",), health_url="http://127.0.0.1:1/health", stop_grace=0)
