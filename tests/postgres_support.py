"""PostgreSQL for the tests: the shared server (skipped when absent, but a failure on CI) and private servers.

* :data:`SHARED_POSTGRES_URL` is the PostgreSQL every developer machine and CI job runs
  (``HFASGI_TEST_POSTGRES_URL`` overrides it); tests share it safely by working in a table of their own
  (:func:`unique_table`) and dropping it afterwards (:func:`drop_table`).
* :func:`require_postgres` skips a test when that server does not answer, with the reason, except on CI
  (``CI=true``) where a missing PostgreSQL is a broken job, not an excuse: the test fails.
* :func:`private_postgres` makes a cluster of the test's own (``initdb`` into a temporary folder,
  ``pg_ctl start`` on a free port, as an unprivileged user when the tests run as root), for tests that stop
  and restart the server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit
from uuid import uuid4

from tests.redis_support import on_ci, require
from tests.servers import free_port

__all__ = [
    "SHARED_POSTGRES_URL",
    "PrivatePostgres",
    "drop_table",
    "on_ci",
    "postgres_available",
    "postgres_binaries",
    "private_postgres",
    "require_postgres",
    "unique_table",
]

SHARED_POSTGRES_URL = os.environ.get("HFASGI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
"""The shared PostgreSQL of the test machines (``HFASGI_TEST_POSTGRES_URL`` overrides it)."""

_START_TIMEOUT = 30
_PROTOCOL_3 = 196608


def _probe(host: str, port: int, user: str, database: str, timeout: float) -> str | None:
    """``None`` when a PostgreSQL on ``host:port`` answers a startup message for ``user``/``database``, else why not.

    Speaks the first message of the wire protocol on a plain socket: no driver, no event loop.
    """
    body = b"".join(
        [struct.pack("!i", _PROTOCOL_3), b"user\0", user.encode(), b"\0database\0", database.encode(), b"\0\0"]
    )
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack("!i", len(body) + 4) + body)
            outcome = _read_startup(s)
            with contextlib.suppress(OSError):
                s.sendall(b"X\0\0\0\4")  # Terminate
    except OSError as exc:
        return f"no PostgreSQL answers at {host}:{port} ({exc.strerror or exc})"
    if outcome is not None:
        return f"PostgreSQL at {host}:{port} refused {user}@{database}: {outcome}"
    return None


def _read_startup(s: socket.socket) -> str | None:
    """Read the server's answers up to ReadyForQuery (``None``), a password request (``None``) or an error."""
    buffer = b""
    while True:
        while len(buffer) >= 5:
            kind, length = buffer[:1], struct.unpack("!i", buffer[1:5])[0]
            if len(buffer) < 1 + length:
                break
            message, buffer = buffer[5 : 1 + length], buffer[1 + length :]
            if kind == b"E":
                fields = {part[:1]: part[1:] for part in message.split(b"\0") if part}
                return fields.get(b"M", b"?").decode(errors="replace")
            if kind == b"Z" or (kind == b"R" and struct.unpack("!i", message[:4])[0] != 0):
                return None  # ready, or it asks for a password: the server is there
            if kind not in (b"R", b"S", b"K", b"N"):
                return "it does not speak the PostgreSQL protocol"
        chunk = s.recv(4096)
        if not chunk:
            return "it closed the connection"
        buffer += chunk


def _parts(url: str) -> tuple[str, int, str, str]:
    parts = urlsplit(url)
    user = unquote(parts.username or os.environ.get("USER", "postgres"))
    database = unquote(parts.path.lstrip("/")) or user
    return parts.hostname or "127.0.0.1", parts.port or 5432, user, database


def postgres_available(url: str = SHARED_POSTGRES_URL, timeout: float = 1.0) -> str | None:
    """``None`` when the PostgreSQL at ``url`` accepts a connection attempt within ``timeout`` s, else the reason."""
    return _probe(*_parts(url), timeout=timeout)


def require_postgres(url: str = SHARED_POSTGRES_URL) -> str:
    """``url`` when that PostgreSQL answers; otherwise skip the test (fail on CI). Call it from a fixture."""
    reason = postgres_available(url)
    require(reason is None, f"{reason} (set HFASGI_TEST_POSTGRES_URL)")
    return url


def unique_table() -> str:
    """A table name no other test (or test run) uses."""
    return f"hfasgi_test_{uuid4().hex[:20]}"


async def drop_table(url: str, table: str) -> None:
    """Drop ``table`` (and its index) if it exists."""
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        await connection.close()


def postgres_binaries() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, if PostgreSQL's server programs are installed."""
    candidates = [shutil.which("initdb")] + sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    for initdb in candidates:
        if initdb:
            folder = Path(os.path.realpath(initdb)).parent
            if (folder / "pg_ctl").is_file() and (folder / "postgres").is_file():
                return folder
    return None


def _as_unprivileged() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that runs a server program as a user PostgreSQL accepts (it refuses root), and that user."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        require(False, "the tests run as root and there is no 'postgres' user to run a private PostgreSQL as")
        raise AssertionError("unreachable") from None
    runuser, setpriv = shutil.which("runuser"), shutil.which("setpriv")
    if runuser:
        return [runuser, "-u", user.pw_name, "--"], user
    if setpriv:
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"], user
    require(False, "the tests run as root and neither runuser nor setpriv can drop to the 'postgres' user")
    raise AssertionError("unreachable")


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own on a fixed free port: it can be stopped and restarted.

    ``url`` stays the same across restarts (same port, same data folder), so the data survives a restart
    and a client built on ``url`` reconnects by itself. ``fsync=off`` (what the OS has survives the server's
    death, not a machine crash); commits stay synchronous, so a commit the server confirmed survives even an
    ``immediate`` stop (with ``synchronous_commit=off`` it would not, and the ledger would lose the batch).
    """

    def __init__(self, binaries: Path, port: int, directory: Path, prefix: list[str]) -> None:
        self.binaries = binaries
        self.port = port
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "server.log"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._prefix = prefix

    def __repr__(self) -> str:
        return f"PrivatePostgres(port={self.port}, running={self.running})"

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def answers(self) -> bool:
        """Whether the server accepts a connection attempt now."""
        return _probe("127.0.0.1", self.port, "postgres", "postgres", timeout=0.5) is None

    def _run(self, program: str, *args: str) -> None:
        command = [*self._prefix, str(self.binaries / program), *args]
        done = subprocess.run(command, cwd=self.directory, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )

    def init(self) -> None:
        """``initdb`` (trust authentication, user ``postgres``)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        """Start the server (again, on the same port) and return once it accepts connections."""
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", str(_START_TIMEOUT), "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: abort sessions; ``immediate``: like a crash) and wait until it is gone."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(_START_TIMEOUT), "stop")

    def tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def private_postgres(*, attempts: int = 3) -> Iterator[PrivatePostgres]:
    """A started :class:`PrivatePostgres`, stopped and deleted when the block ends, whatever happened in it.

    Skips the test when PostgreSQL's server programs are not installed or cannot run unprivileged (fails
    on CI). The free port may be taken between choosing and binding it: start-up is then retried on another.
    """
    binaries = postgres_binaries()
    require(binaries is not None, "PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    assert binaries is not None
    prefix, user = _as_unprivileged()
    directory = Path(tempfile.mkdtemp(prefix="hfasgi-pg-"))
    server: PrivatePostgres | None = None
    try:
        if user is not None:
            os.chown(directory, user.pw_uid, user.pw_gid)
        server = PrivatePostgres(binaries, free_port(), directory, prefix)
        server.init()
        for attempt in range(attempts):
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                server.port = free_port()
                server.url = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        yield server
    finally:
        if server is not None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)
