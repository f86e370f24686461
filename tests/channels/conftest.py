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


@pytest.fixture
def smtp_ready(acme, people, smtp_sink):
    """acme's e-mail settings point at the loopback SMTP server."""
    from apps.channels import services

    services.channel_settings_update(
        tenant=acme, by=None, smtp_host="127.0.0.1", smtp_port=smtp_sink.port, smtp_security="none",
        from_email="news@acme.test", sending_domain="mail.acme.test")
    return smtp_sink
