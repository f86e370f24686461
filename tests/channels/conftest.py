"""Channel fixtures: a real SMTP server and a real HTTP server on loopback."""

from __future__ import annotations

import pytest

from tests.campaigns.conftest import eager, worker  # noqa: F401  (engine fixtures, shared)
from tests.channels.sinks import HttpSink, SmtpSink


@pytest.fixture
def smtp_sink():
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def http_sink():
    with HttpSink() as sink:
        yield sink
