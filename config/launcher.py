"""One command to run the product and one to test it, on a machine with or without services.

    python -m config.launcher run            # what `make run` does
    python -m config.launcher test [ARGS]    # what `make test` does; ARGS go to pytest
    python -m config.launcher stop           # stop embedded servers left behind

`run` and `test` use `DATABASE_URL` and `CELERY_BROKER_URL` when they are set. When one is not,
they start the embedded PostgreSQL / Redis of `config.embedded` under the data directory
(`CAMPAIGNS_DATA_DIR`, default `.data/`; the tests use its `test/` subdirectory so that a test
run never touches the demo's data), export the URLs to every child, and stop the servers again
on exit. Several launchers may share one data directory: the last one out stops the servers.

`run` migrates, collects static files when they changed, seeds the demo tenants, declares the
periodic tasks (sweeper, nightly purge, a schedule dispatcher per tenant), then starts
web (runserver), a Celery worker and Celery Beat, prefixes and interleaves their output, and
stops all of them on Ctrl-C / SIGTERM (exit 0) or as soon as one of them dies (exit 1)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from config import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DEMO_PASSWORD = "demo-campaigns-2026"
DEFAULT_PORT = 8000
DEFAULT_HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 15.0

_output_lock = threading.Lock()
_COLOURS = {"launcher": "1", "setup": "36", "web": "32", "worker": "33", "beat": "35"}


def say(name: str, text: str, stream: IO[str] | None = None) -> None:
    """Write `text` line by line, each prefixed with the name of the process it comes from."""
    stream = stream or sys.stdout
    label = f"{name:<8}|"
    if stream.isatty():
        label = f"\033[{_COLOURS.get(name, '0')}m{label}\033[0m"
    # Output is best effort: a closed terminal or pipe must not stop the launcher from cleaning up.
    with _output_lock, contextlib.suppress(OSError, ValueError):
        for line in text.rstrip("\n").split("\n"):
            stream.write(f"{label} {line}\n")
        stream.flush()


class Stop(Exception):
    """Raised in the main thread by SIGINT / SIGTERM / SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Signals:
    """Turns the first stop signal into a `Stop` exception in the main thread. Later ones, and any
    that arrive once shutdown has begun, only call `on_repeat` (a second Ctrl-C shortens the
    grace period): the launcher must never be cut short before it stops the embedded servers."""

    def __init__(self) -> None:
        self.received = 0
        self.armed = True
        self.on_repeat: Any = None

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def disarm(self) -> None:
        self.armed = False

    def _handle(self, signum: int, frame: Any) -> None:
        self.received += 1
        if self.armed:
            self.armed = False
            raise Stop(signum)
        if self.on_repeat is not None:
            self.on_repeat()


# --- Services: the database and the broker ------------------------------------------------------


class Services:
    """Provides `DATABASE_URL` and `CELERY_BROKER_URL` in `os.environ` for the duration of a
    `with` block: the ones already set, or embedded servers under `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.embedded: list[str] = []
        self._lock: IO[str] | None = None

    def __enter__(self) -> Services:
        wants_db = not os.environ.get("DATABASE_URL")
        wants_broker = not os.environ.get("CELERY_BROKER_URL")
        if not (wants_db or wants_broker):
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A shared lock says "in use"; whoever can turn it exclusive on exit is the last user.
        self._lock = open(self.data_dir / "launcher.lock", "a+")
        fcntl.flock(self._lock, fcntl.LOCK_SH)
        try:
            if wants_db:
                started = time.monotonic()
                os.environ["DATABASE_URL"] = embedded.postgres_url(self.data_dir)
                self.embedded.append("PostgreSQL")
                say("launcher", f"embedded PostgreSQL ready in {time.monotonic() - started:.1f}s: "
                                f"{os.environ['DATABASE_URL']}")
            if wants_broker:
                os.environ["CELERY_BROKER_URL"] = embedded.redis_url(self.data_dir)
                self.embedded.append("Redis")
                say("launcher", f"embedded Redis ready: {os.environ['CELERY_BROKER_URL']}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is None:
            return
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("launcher", f"embedded servers under {self.data_dir} are still used by another "
                            "launcher: leaving them running")
        else:
            embedded.stop_all(self.data_dir)
            say("launcher", f"embedded {' and '.join(self.embedded) or 'servers'} under {self.data_dir} stopped")
        finally:
            self._lock.close()
            self._lock = None


# --- Children ---------------------------------------------------------------------------------


def _die_with_launcher() -> None:  # pragma: no cover - runs in the forked child
    """Linux: the child gets SIGTERM if the launcher is killed without a chance to clean up."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """A process in its own process group whose output is copied to ours with a prefix."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.argv = argv
        self.process = subprocess.Popen(
            argv, cwd=BASE_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_launcher if sys.platform == "linux" else None,
        )
        self._pump = threading.Thread(target=self._copy_output, name=f"output-{name}", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            say(self.name, raw.decode("utf-8", errors="replace"))

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def signal_group(self, signum: int) -> None:
        # The group also holds the worker's pool processes.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def flush(self) -> None:
        self._pump.join(timeout=2)


class Supervisor:
    """Starts children and stops them all: SIGTERM, then SIGKILL after a grace period."""

    def __init__(self, signals: Signals) -> None:
        self.signals = signals
        self.children: list[Child] = []

    def step(self, name: str, argv: list[str]) -> int:
        """Run a setup command to completion; returns its exit code."""
        child = self.start(name, argv)
        child.process.wait()
        child.flush()
        self.children.remove(child)
        return child.process.returncode

    def start(self, name: str, argv: list[str]) -> Child:
        child = Child(name, argv)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        alive = [child for child in self.children if child.returncode is None]
        for child in alive:
            say("launcher", f"stopping {child.name} (pid {child.process.pid})")
            # Only the leader: a Celery worker then shuts its pool down warmly.
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        received = self.signals.received
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while any(child.returncode is None for child in alive):
            if time.monotonic() > deadline or self.signals.received > received:
                break
            time.sleep(0.1)
        for child in self.children:
            # SIGKILL the whole group: also reaps pool processes a dead leader left behind.
            if child.returncode is None:
                say("launcher", f"{child.name} did not stop in time: killing it")
            child.signal_group(signal.SIGKILL)
            child.process.wait()
            child.flush()
        self.children.clear()


# --- run --------------------------------------------------------------------------------------


def _settings() -> Any:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"config.settings.{os.environ.get('DJANGO_ENV', 'local')}")
    from django.conf import settings

    return settings


def worker_queues() -> list[str]:
    """`WORKER_QUEUES` (comma-separated), else every queue the settings route tasks to."""
    if os.environ.get("WORKER_QUEUES"):
        return [queue.strip() for queue in os.environ["WORKER_QUEUES"].split(",") if queue.strip()]
    settings = _settings()
    queues = [getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")]
    routes = getattr(settings, "CELERY_TASK_ROUTES", None) or {}
    if isinstance(routes, dict):
        queues += [route["queue"] for route in routes.values() if isinstance(route, dict) and "queue" in route]
    queues += [getattr(queue, "name", str(queue)) for queue in getattr(settings, "CELERY_TASK_QUEUES", None) or []]
    return list(dict.fromkeys(queues))


def _newest_mtime(paths: list[Path]) -> float:
    newest = 0.0
    for path in paths:
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
        elif path.is_dir():
            for dirpath, _dirs, files in os.walk(path):
                for name in files:
                    with contextlib.suppress(OSError):
                        newest = max(newest, (Path(dirpath) / name).stat().st_mtime)
    return newest


def collectstatic_needed() -> bool:
    """True when the manifest is missing or older than a static source or the installed packages."""
    settings = _settings()
    manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
    if not manifest.exists():
        return True
    sources = [Path(p) for p in settings.STATICFILES_DIRS]
    sources += list(BASE_DIR.glob("apps/*/static"))
    sources += [BASE_DIR / "pyproject.toml", BASE_DIR / ".venv" / ".installed"]
    return _newest_mtime(sources) > manifest.stat().st_mtime


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


def _answers(host: str, port: int) -> bool:
    target = "127.0.0.1" if host in {"0.0.0.0", ""} else host.strip("[]")
    try:
        with socket.create_connection((target, port), timeout=0.5):
            return True
    except OSError:
        return False


def run() -> int:
    host = os.environ.get("HOST") or DEFAULT_HOST
    port = int(os.environ.get("PORT") or DEFAULT_PORT)
    password = os.environ.get("DEMO_PASSWORD") or DEFAULT_DEMO_PASSWORD
    if not _port_is_free(host, port):
        say("launcher", f"{host}:{port} is already in use: stop what listens there or set PORT", sys.stderr)
        return 2
    os.environ["PYTHONUNBUFFERED"] = "1"
    signals = Signals()
    signals.install()
    supervisor = Supervisor(signals)
    started = time.monotonic()
    try:
        with Services(embedded.data_dir()):
            try:
                return _start_and_watch(supervisor, host, port, password, started)
            finally:
                signals.disarm()
                supervisor.stop_all()
    except Stop as stop:
        say("launcher", f"{stop}: stopped")
        return 0


def _start_and_watch(supervisor: Supervisor, host: str, port: int, password: str, started: float) -> int:
    python, manage = sys.executable, str(BASE_DIR / "manage.py")
    setup = [("migrate", [python, manage, "migrate", "--noinput"])]
    if collectstatic_needed():
        setup.append(("collectstatic", [python, manage, "collectstatic", "--noinput", "-v", "0"]))
    setup.append(("seed_demo", [python, manage, "seed_demo", "--password", password]))
    setup.append(("periodic tasks", [python, manage, "setup_periodic_tasks"]))
    for label, argv in setup:
        say("launcher", f"{label}...")
        code = supervisor.step("setup", argv)
        if code != 0:
            say("launcher", f"{label} failed with exit code {code}", sys.stderr)
            return code
    queues = worker_queues()
    concurrency = os.environ.get("WORKER_CONCURRENCY") or "2"
    supervisor.start("web", [python, manage, "runserver", f"{host}:{port}", "--noreload"])
    supervisor.start("worker", [python, "-m", "celery", "-A", "config", "worker", "-l", "info",
                                "-Q", ",".join(queues), "--concurrency", concurrency])
    supervisor.start("beat", [python, "-m", "celery", "-A", "config", "beat", "-l", "info"])
    return _watch(supervisor, host, port, password, started)


def _watch(supervisor: Supervisor, host: str, port: int, password: str, started: float) -> int:
    """Wait until a child dies (exit 1) or a signal arrives (raises Stop)."""
    announced = False
    while True:
        for child in supervisor.children:
            if child.returncode is not None:
                child.flush()
                say("launcher", f"{child.name} exited with code {child.returncode}: stopping everything",
                    sys.stderr)
                return 1
        if not announced and _answers(host, port):
            announced = True
            base = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
            say("launcher", "\n".join([
                f"ready in {time.monotonic() - started:.0f}s. Portal {base}/  API {base}/api/v1/  "
                f"docs {base}/api/docs/  admin {base}/admin/",
                f"demo logins: admin@acme.test, marketer@acme.test, approver@acme.test (and @globex.test), "
                f"password {password!r}",
                "Ctrl-C stops web, worker, beat and the embedded servers.",
            ]))
        time.sleep(0.2)


# --- test -------------------------------------------------------------------------------------


def test(pytest_args: list[str]) -> int:
    args = shlex.split(os.environ.get("PYTEST_ARGS", "")) + pytest_args
    signals = Signals()
    signals.install()
    try:
        with Services(embedded.data_dir() / "test"):
            # pytest gets its own session so that a Ctrl-C reaches it once, through us, and it
            # still prints its summary; the embedded servers are stopped after it is done.
            env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
            process = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=BASE_DIR,
                                       start_new_session=True, env=env)
            signals.on_repeat = lambda: _kill_group(process.pid)
            try:
                return process.wait()
            except Stop:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGINT)
                return process.wait()
            finally:
                signals.disarm()
    except Stop as stop:
        say("launcher", f"{stop}: stopped before pytest started")
        return 130


def _kill_group(pid: int) -> None:
    say("launcher", "signal received again: killing pytest")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# --- stop -------------------------------------------------------------------------------------


def stop() -> int:
    base = embedded.data_dir()
    for data_dir in (base, base / "test"):
        found = embedded.running(data_dir)
        if found:
            embedded.stop_all(data_dir)
            say("launcher", f"stopped {', '.join(f'{n} (pid {p})' for n, p in found.items())} under {data_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.launcher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="migrate, seed and start web, worker and beat")
    test_parser = commands.add_parser("test", help="run pytest (extra arguments go to pytest)")
    test_parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    commands.add_parser("stop", help="stop embedded servers left running under the data directory")
    args, extra = parser.parse_known_args(argv)
    if args.command == "test":
        return test([*extra, *args.pytest_args])
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return run() if args.command == "run" else stop()


if __name__ == "__main__":
    sys.exit(main())
