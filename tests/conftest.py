"""Fixtures shared by the whole suite: two tenants, `acme` and `globex`, each with a user of
every role (`people["acme"]["admin"]` and so on), and API clients that act as them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.tenants.models import Tenant, User
from apps.tenants.roles import Role
from tests.factories import PASSWORD, MembershipFactory, TenantFactory, UserFactory

ROLES = [role.value for role in Role]


@dataclass
class Person:
    user: User
    tenant: Tenant
    role: str

    @property
    def email(self) -> str:
        return self.user.email


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Let transactional tests wipe the append-only audit table between tests (TRUNCATE only;
    row UPDATE/DELETE stay refused, see apps/tenants/migrations/0002_audit_immutable.py)."""
    from django.db import connection
    from psycopg import sql

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        statement = sql.SQL("ALTER DATABASE {} SET campaigns.allow_audit_truncate = 'on'").format(
            sql.Identifier(connection.settings_dict["NAME"]))
        cursor.execute(statement.as_string(cursor.connection))
        cursor.execute("SET campaigns.allow_audit_truncate = 'on'")


@pytest.fixture
def acme(db) -> Tenant:
    return TenantFactory(slug="acme", name="Acme Corporation", time_zone="Europe/Paris")


@pytest.fixture
def globex(db) -> Tenant:
    return TenantFactory(slug="globex", name="Globex Inc.", time_zone="America/New_York")


@pytest.fixture
def people(acme, globex) -> dict[str, dict[str, Person]]:
    """`people[slug][role]`: one member of each role in each tenant."""
    return make_people(acme, globex)


def make_people(*tenants: Tenant) -> dict[str, dict[str, Person]]:
    result: dict[str, dict[str, Person]] = {}
    for tenant in tenants:
        result[tenant.slug] = {}
        for role in ROLES:
            user = UserFactory(email=f"{role}@{tenant.slug}.test", first_name=role.title())
            MembershipFactory(tenant=tenant, user=user, role=role)
            result[tenant.slug][role] = Person(user=user, tenant=tenant, role=role)
    return result


@pytest.fixture
def operator(db) -> User:
    user = UserFactory(email="operator@platform.test", is_superuser=True, is_staff=True)
    return user


def api_client_for(user: User | None, tenant: Tenant | None = None) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}",
                           **({"HTTP_X_TENANT": tenant.slug} if tenant else {}))
    return client


@pytest.fixture
def api(people) -> Any:
    """`api("acme", "admin")` is an APIClient authenticated as acme's admin."""

    def make(slug: str, role: str) -> APIClient:
        person = people[slug][role]
        return api_client_for(person.user)

    return make


@pytest.fixture
def password() -> str:
    return PASSWORD
