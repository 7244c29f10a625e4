"""The operating-system side of a managed child: the orphan-proof launcher, its exit, its process group.

POSIX only. The launcher uses Linux's ``prctl(PR_SET_PDEATHSIG)``; elsewhere the command runs as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

__all__ = ["exited", "launcher", "signal_group"]

_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG, kept across exec\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit('hfasgi: the gateway is already gone')\n"
    "try:\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "except OSError as exc:\n"
    "    sys.exit(f'hfasgi: cannot run {sys.argv[2]}: {exc.strerror}')\n"
)
"""The Linux launcher: the kernel SIGKILLs the child when its parent thread dies; then it becomes the command."""

_EXIT_POLL = 0.05
"""Seconds between two looks at whether the child's exit status has arrived."""


def launcher(argv: tuple[str, ...]) -> tuple[str, ...]:
    """``argv`` run so that the kernel SIGKILLs it when this process dies (Linux), keeping its pid; else ``argv``.

    A tiny Python launcher sets ``PR_SET_PDEATHSIG`` on itself and ``exec``\\ s the command, rather than a
    ``preexec_fn``, which Python documents as unsafe in a process with threads. The signal fires when the
    *thread* that started the child ends: the event loop's thread, which outlives the app.
    """
    if sys.platform != "linux":
        return argv
    return (sys.executable, "-I", "-c", _LAUNCHER, str(os.getpid()), *argv)


async def exited(proc: asyncio.subprocess.Process) -> int:
    """``proc``'s exit code, as soon as it exits.

    Not ``proc.wait()``: that also waits until the child's output pipe closes, which a process it started
    may keep open. On Linux a pidfd tells the moment it exits; elsewhere (or if that fails) this polls.
    """
    if proc.returncode is None and hasattr(os, "pidfd_open"):
        with contextlib.suppress(OSError):
            await _pidfd_exit(proc.pid)
    while (code := proc.returncode) is None:  # noqa: ASYNC110 (set by asyncio's child watcher: no event to await)
        await asyncio.sleep(_EXIT_POLL)
    return code


async def _pidfd_exit(pid: int) -> None:
    """Wait until process ``pid`` has exited (its pidfd turns readable)."""
    fd = os.pidfd_open(pid)
    try:
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not gone.done():
                gone.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await gone
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to process group ``pgid``, if any of it is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
