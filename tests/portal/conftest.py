"""Portal fixtures: Django test clients signed in as the named people of tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from apps.tenants.models import Tenant
from tests.factories import MembershipFactory
from tests.portal.browser import page  # noqa: F401  (the Chromium fixture of the browser tests)


@pytest.fixture
def portal(people) -> Callable[..., Client]:
    """`portal("acme", "admin")` is a browser-like client signed in as acme's admin."""

    def make(slug: str, role: str) -> Client:
        client = Client()
        client.force_login(people[slug][role].user)
        return client

    return make


@pytest.fixture
def two_tenant_person(people, globex: Tenant):
    """acme's marketer, who is also an approver in globex."""
    person = people["acme"]["marketer"]
    MembershipFactory(tenant=globex, user=person.user, role="approver")
    return person

