"""Running the product: the production settings pass Django's deployment checks, and
`python -m config.launcher run` (what `make run` calls) brings up web, worker and beat on embedded
servers from nothing, answers a person and an API client, and leaves nothing behind on Ctrl-C."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from django.urls import reverse

from config import embedded
from config.launcher import DEFAULT_DEMO_PASSWORD

BASE_DIR = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 75
STOP_TIMEOUT = 30
# Unused addresses: enough for settings to load, never connected to.
OFFLINE_SERVICES = {"DATABASE_URL": "postgres://nobody@127.0.0.1:9/none",
                    "CELERY_BROKER_URL": "redis://127.0.0.1:9/0"}


def _environment(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "DJANGO_ENV",
                          "DEBUG", "CACHE_URL", "DEMO_PASSWORD", "PORT", "HOST", "CAMPAIGNS_DATA_DIR"}}
    env.update(overrides)
    return env


def test_production_settings_pass_the_deployment_checks():
    env = _environment(DJANGO_ENV="production", SECRET_KEY=secrets.token_urlsafe(64),
                       ALLOWED_HOSTS="example.com", **OFFLINE_SERVICES)
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = _environment(DJANGO_ENV="production", ALLOWED_HOSTS="example.com", **OFFLINE_SERVICES)
    env.pop("SECRET_KEY", None)
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(predicate, timeout: float, launcher: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if launcher.poll() is not None:
            pytest.fail(f"the launcher exited with {launcher.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"not ready after {timeout}s:\n{log.read_text()}")
        time.sleep(0.25)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except OSError:
        return 0


@pytest.mark.worker
def test_run_starts_everything_from_nothing_and_stops_it_on_ctrl_c(tmp_path):
    data_dir = tmp_path / "data"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "launcher.log"
    env = _environment(CAMPAIGNS_DATA_DIR=str(data_dir), PORT=str(port), HOST="127.0.0.1",
                       DJANGO_ENV="local", WORKER_CONCURRENCY="1")
    with log.open("wb") as output:
        launcher = subprocess.Popen([sys.executable, "-m", "config.launcher", "run"], cwd=BASE_DIR, env=env,
                                    stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    try:
        # A person: the portal's login page.
        _wait_for(lambda: _get(base + reverse("portal:login")) == 200, READY_TIMEOUT, launcher, log)
        # An API client: a demo user exchanges the documented password for a token.
        request = urllib.request.Request(
            f"{base}/api/v1/auth/token", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"username": "admin@acme.test", "password": DEFAULT_DEMO_PASSWORD}).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert json.load(response)["token"]
        # The worker and beat are up too.
        _wait_for(lambda: " ready." in log.read_text() and "beat: Starting" in log.read_text(),
                  30, launcher, log)

        servers = embedded.running(data_dir)
        assert set(servers) == {"postgres", "redis"}, log.read_text()
        tree = [process.pid for process in psutil.Process(launcher.pid).children(recursive=True)]
        assert len(tree) >= 3  # web, worker (+ its pool), beat

        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=STOP_TIMEOUT) == 0, log.read_text()
        assert [pid for pid in tree if _alive(pid)] == [], log.read_text()
        assert embedded.running(data_dir) == {}
        assert [pid for pid in servers.values() if _alive(pid)] == []
        assert _get(base + reverse("portal:login")) == 0
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
        embedded.stop_all(data_dir)
