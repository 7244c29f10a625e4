"""A managed child server: started, waited for, restarted with backoff when it dies, stopped at shutdown.

:class:`ManagedProcess` is a shared resource (``open()`` / ``aclose()``, see :mod:`hfasgi.stack`):

* ``open()`` starts the command in a process group of its own and polls its health URL until it answers
  200; if the child exits first, or ``start_timeout`` passes, it is stopped and :class:`ProcessStartError`
  names it, says why, and quotes its last output lines.
* While it runs, one task watches it: when the child dies it is started again after an exponential
  backoff (``restart_backoff``, doubled per failed start, at most ``max_restart_backoff``; back to the
  first step once a child has served ``stable_after`` seconds). :attr:`available` is false meanwhile and
  :attr:`retry_after` tells how long clients should wait.
* ``aclose()`` sends SIGTERM to the child's whole process group, SIGKILL after ``stop_grace`` seconds.
* The child does not outlive the gateway even when the gateway is killed: on Linux a tiny launcher asks
  the kernel (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to kill it when the thread that started it dies, then
  ``exec``\\ s the command (same pid). A launcher rather than ``preexec_fn``: Python documents
  ``preexec_fn`` as unsafe in a process with threads, and the gateway has some.

The child's stdout and stderr go, line by line, to the ``hfasgi.local`` logger (INFO), read by a task.
POSIX only (process groups and signals).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import shlex
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from hfasgi.local.posix import exited, launcher, signal_group

__all__ = ["ManagedProcess", "ProcessConfig", "ProcessStartError", "restart_delay"]

logger = logging.getLogger("hfasgi.local")

_MAX_LINE = 64 * 1024
"""A line longer than this is logged in pieces."""


class ProcessStartError(RuntimeError):
    """The child did not start: it could not be run, exited, or did not answer in time (the message says which)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessConfig:
    """What to run, how to tell it is ready, and how patiently to start, restart and stop it."""

    argv: tuple[str, ...]
    """The command (its first item the executable, looked up on ``PATH``)."""
    health_url: str
    """Polled with ``GET`` until it answers 200: the child is then ready."""
    name: str = "child"
    """What messages and log lines call it (``local model 'smollm2'``)."""
    env: Mapping[str, str] | None = None
    """The child's whole environment (``None``: this process's)."""
    cwd: str | None = None
    """The child's working directory (``None``: this process's)."""
    start_timeout: float = 300.0
    """Seconds a start may take, from spawning to the first 200 of :attr:`health_url`."""
    stop_grace: float = 10.0
    """Seconds between SIGTERM and SIGKILL when stopping."""
    restart_backoff: float = 0.5
    """Seconds before the first restart; doubled after each start that fails."""
    max_restart_backoff: float = 30.0
    """The longest wait before a restart."""
    stable_after: float = 60.0
    """A child that served this many seconds before dying is restarted after :attr:`restart_backoff` again."""
    probe_interval: float = 0.1
    """Seconds between two health probes during a start."""
    output_lines: int = 20
    """How many of the child's last output lines a start-up failure quotes."""
    quiet: tuple[str, ...] = ()
    """Output lines holding one of these are logged at DEBUG, not INFO (the access lines of health probes)."""

    def __post_init__(self) -> None:
        if not self.argv or not all(isinstance(part, str) and part for part in self.argv):
            raise ValueError("ProcessConfig.argv must be a non-empty sequence of non-empty strings")
        object.__setattr__(self, "argv", tuple(self.argv))
        if not self.health_url.startswith(("http://", "https://")):
            raise ValueError(f"ProcessConfig.health_url must be an http(s) URL, got {self.health_url!r}")
        for field_name in ("start_timeout", "stop_grace", "restart_backoff", "max_restart_backoff", "probe_interval"):
            value = getattr(self, field_name)
            if not value > 0:
                raise ValueError(f"ProcessConfig.{field_name} must be > 0 seconds, got {value!r}")
        if self.stable_after < 0:
            raise ValueError(f"ProcessConfig.stable_after must be >= 0 seconds, got {self.stable_after!r}")
        if self.output_lines < 1:
            raise ValueError(f"ProcessConfig.output_lines must be >= 1, got {self.output_lines!r}")


def restart_delay(failures: int, base: float, ceiling: float) -> float:
    """Seconds to wait before a restart after ``failures`` failures in a row (1-based): ``base * 2**(n-1)``, capped."""
    return float(min(ceiling, base * 2.0 ** max(0, failures - 1)))


class ManagedProcess:
    """One supervised child server (see the module docstring). ``__init__`` does no I/O."""

    def __init__(self, config: ProcessConfig) -> None:
        self.config = config
        self.restarts = 0
        """How many times the child was started again after dying."""
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._available = False
        self._stopping = False
        self._failures = 0
        self._spawned_at: float | None = None
        self._ready_at = 0.0
        self._restart_at: float | None = None
        self._start_estimate: float | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=config.output_lines)

    # ------------------------------------------------------------------ what the gateway reads
    @property
    def available(self) -> bool:
        """Whether the child is running and answered its health check (false while it starts or restarts)."""
        return self._available

    @property
    def pid(self) -> int | None:
        """The current child's process id (also its process group id), or ``None`` before the first start."""
        return self._proc.pid if self._proc is not None else None

    @property
    def retry_after(self) -> int:
        """Whole seconds (at least 1) after which the child should answer again: the wait before the restart,
        plus how long the last successful start took."""
        now = time.monotonic()
        estimate = self._start_estimate if self._start_estimate is not None else self.config.restart_backoff
        if self._restart_at is not None:
            wait = max(0.0, self._restart_at - now) + estimate
        elif self._spawned_at is not None:
            wait = max(0.0, self._spawned_at + estimate - now)
        else:
            wait = estimate
        return max(1, math.ceil(wait))

    async def wait_available(self, limit: float) -> bool:
        """Wait until the child is available, for at most ``limit`` seconds; return whether it is."""
        if self._available:
            return True
        ready = self._ready
        if ready is None or self._stopping:
            return False
        try:
            await asyncio.wait_for(ready.wait(), limit)
        except TimeoutError:
            return False
        return self._available

    # ------------------------------------------------------------------ lifespan
    async def open(self) -> None:
        """Start the child and wait until it is ready; raises :class:`ProcessStartError` if it does not start."""
        if self._supervisor is not None:
            return
        self._stopping = False
        self._ready = asyncio.Event()
        await self._start()
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"hfasgi-supervise-{self.config.name}"
        )

    async def aclose(self) -> None:
        """Stop the child (SIGTERM to its process group, SIGKILL after the grace period) and stop watching it."""
        self._stopping = True
        self._available = False
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        await self._terminate()

    # ------------------------------------------------------------------ starting
    async def _start(self) -> None:
        """Spawn the child and wait for its first 200; on any failure it is stopped again."""
        cfg = self.config
        self._tail.clear()
        began = self._spawned_at = time.monotonic()
        argv = launcher(cfg.argv)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(cfg.env) if cfg.env is not None else None,
                cwd=cfg.cwd,
                start_new_session=True,  # its own process group: killed as a whole, and a terminal's ^C is ours
            )
        except OSError as exc:
            self._spawned_at = None
            raise ProcessStartError(f"{cfg.name} could not be started ({shlex.join(cfg.argv)}): {exc}") from None
        self._proc = proc
        assert proc.stdout is not None
        self._reader = asyncio.get_running_loop().create_task(self._read_output(proc.stdout, proc.pid))
        logger.info("starting %s (pid %d): %s", cfg.name, proc.pid, shlex.join(cfg.argv))
        try:
            failure = await self._wait_ready(proc, began + cfg.start_timeout)
        except BaseException:
            await self._terminate()
            raise
        if failure is not None:
            await self._terminate()
            self._spawned_at = None
            raise ProcessStartError(f"{cfg.name} did not start: {failure}{self._quoted_tail()}")
        self._ready_at = time.monotonic()
        self._start_estimate = self._ready_at - began
        self._spawned_at = None
        self._available = True
        if self._ready is not None:
            self._ready.set()
        logger.info("%s is ready (pid %d) after %.1f s", cfg.name, proc.pid, self._start_estimate)

    async def _wait_ready(self, proc: asyncio.subprocess.Process, deadline: float) -> str | None:
        """Poll the health URL until it answers 200 (``None``), or say why the start failed."""
        cfg = self.config
        death = asyncio.get_running_loop().create_task(exited(proc))
        try:
            async with aiohttp.ClientSession(trust_env=False) as session:
                while True:
                    if death.done():
                        return f"it exited with code {proc.returncode} before answering {cfg.health_url}"
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return f"it did not answer {cfg.health_url} within {cfg.start_timeout:g} s"
                    if await _answers(session, cfg.health_url, min(2.0, remaining)):
                        return None
                    await asyncio.wait([death], timeout=min(cfg.probe_interval, max(0.0, remaining)))
        finally:
            death.cancel()

    def _quoted_tail(self) -> str:
        if not self._tail:
            return "; it wrote nothing"
        lines = "\n".join(f"    {line}" for line in self._tail)
        return f"; its last output lines:\n{lines}"

    # ------------------------------------------------------------------ watching and restarting
    async def _supervise(self) -> None:
        """Restart the child (with backoff) each time it dies, until :meth:`aclose`."""
        cfg = self.config
        while not self._stopping:
            proc = self._proc
            assert proc is not None
            code = await exited(proc)
            self._available = False
            if self._ready is not None:
                self._ready.clear()
            if self._stopping:
                return
            uptime = time.monotonic() - self._ready_at
            signal_group(proc.pid, signal.SIGKILL)  # whatever it left behind in its group
            await self._finish_reader()
            if uptime >= cfg.stable_after:
                self._failures = 0
            logger.warning("%s (pid %d) exited with code %s after %.1f s", cfg.name, proc.pid, code, uptime)
            try:
                await self._restart()
            except asyncio.CancelledError:
                raise
            except Exception:  # never leave the upstream down for good without a word
                logger.exception("%s: the restart loop failed; the local model stays down", cfg.name)
                return

    async def _restart(self) -> None:
        cfg = self.config
        while True:
            self._failures += 1
            delay = restart_delay(self._failures, cfg.restart_backoff, cfg.max_restart_backoff)
            self._restart_at = time.monotonic() + delay
            logger.warning(
                "restarting %s in %.1f s (attempt %d)",
                cfg.name,
                delay,
                self._failures,
                extra={"restart_delay": delay, "restart_attempt": self._failures},
            )
            try:
                await asyncio.sleep(delay)
            finally:
                self._restart_at = None
            try:
                await self._start()
            except ProcessStartError as exc:
                logger.error("%s", exc)
                continue
            self.restarts += 1
            return

    # ------------------------------------------------------------------ stopping
    async def _terminate(self) -> None:
        """Stop the current child and its group: SIGTERM, then SIGKILL after the grace period."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(exited(proc), self.config.stop_grace)
            except TimeoutError:
                logger.warning(
                    "%s (pid %d) did not stop within %g s of SIGTERM: killing it",
                    self.config.name,
                    proc.pid,
                    self.config.stop_grace,
                )
                signal_group(proc.pid, signal.SIGKILL)
                await exited(proc)
            logger.info("%s (pid %d) stopped with code %s", self.config.name, proc.pid, proc.returncode)
        signal_group(proc.pid, signal.SIGKILL)  # anything it started that outlived it
        await self._finish_reader()

    async def _finish_reader(self) -> None:
        """Let the output reader log the last lines (briefly: a stray process may hold the pipe open)."""
        reader, self._reader = self._reader, None
        if reader is None:
            return
        await asyncio.wait([reader], timeout=2.0)
        if not reader.done():
            reader.cancel()
            await asyncio.wait([reader])

    # ------------------------------------------------------------------ output
    async def _read_output(self, stream: asyncio.StreamReader, pid: int) -> None:
        """Log the child's output line by line until it closes (a progress bar's ``\\r`` updates: the last one)."""
        pending = b""
        while chunk := await stream.read(_MAX_LINE):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._emit(line, pid)
            if len(pending) >= _MAX_LINE:
                self._emit(pending, pid)
                pending = b""
        if pending:
            self._emit(pending, pid)

    def _emit(self, raw: bytes, pid: int) -> None:
        text = raw.decode(errors="replace").rstrip("\r").rpartition("\r")[2].rstrip()
        if text:
            self._tail.append(text)
            level = logging.DEBUG if any(part in text for part in self.config.quiet) else logging.INFO
            logger.log(level, "%s | %s", self.config.name, text, extra={"local_pid": pid})


async def _answers(session: aiohttp.ClientSession, url: str, within: float) -> bool:
    """Whether ``GET url`` answers 200 within ``within`` seconds."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=within), allow_redirects=False) as response:
            return response.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False
