"""Engine fixtures.

- `eager`: Celery's eager mode with on-commit callbacks executed: for tests about the engine's
  logic, which then runs in the test's process and transaction.
- `worker`: a real Celery worker process on the real broker, against the test database (the test
  must use `transactional_db` so that the worker sees its rows).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from apps.campaigns import services
from apps.campaigns.models import Run
from apps.tenants.scoping import tenant_scope

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def eager(settings, django_capture_on_commit_callbacks):
    """Tasks run inline; every on-commit kick is executed (engine logic tests)."""
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        yield django_capture_on_commit_callbacks
    finally:
        app.conf.task_always_eager = False


def database_url_of_tests() -> str:
    params = connection.settings_dict
    host = params.get("HOST") or ""
    user = quote(params.get("USER") or "postgres")
    password = params.get("PASSWORD") or ""
    auth = f"{user}:{quote(password)}@" if password else f"{user}@"
    if host.startswith("/"):
        return f"postgres://{auth}{quote(host, safe='')}/{params['NAME']}"
    return f"postgres://{auth}{host}:{params.get('PORT') or 5432}/{params['NAME']}"


class Worker:
    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.log = ROOT / "test-artifacts" / "celery-worker.log"
        self.log.parent.mkdir(exist_ok=True)

    def start(self, concurrency: int = 2) -> None:
        self.log.parent.mkdir(exist_ok=True)
        env = {**os.environ, "DATABASE_URL": database_url_of_tests(), "DJANGO_SETTINGS_MODULE": "config.settings.test",
               "DB_CONN_MAX_AGE": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-l", "info", "-c", str(concurrency),
             "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", f"test-{os.getpid()}@%h"],
            cwd=ROOT, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while "ready." not in self.log.read_text(errors="replace").split("--- start ---")[-1]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Celery worker did not start: see " + str(self.log))
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and its pool children)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker(transactional_db):
    from config.celery import app

    app.control.purge()
    w = Worker()
    with w.log.open("a") as f:
        f.write("\n--- start ---\n")
    w.start()
    try:
        yield w
    finally:
        w.stop()


def wait_for_run(run: Run, statuses=("completed", "failed", "stopped"), timeout: float = 60,
                 sweep: bool = True) -> Run:
    """Poll the run until it reaches one of `statuses`; calls the sweeper meanwhile, as beat would."""
    from apps.campaigns import engine

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with tenant_scope(run.tenant):
            run.refresh_from_db()
            if run.status in statuses:
                return run
        if sweep:
            from django.db import transaction

            with transaction.atomic():
                engine.sweep()
        time.sleep(0.3)
    raise AssertionError(f"run {run.pk} still {run.status} after {timeout}s")


def make_campaign(tenant, by, graph, **kwargs):
    with tenant_scope(tenant):
        return services.campaign_create(tenant=tenant, by=by, name=kwargs.pop("name", "Test campaign"),
                                        graph=graph, **kwargs)
