"""Every API route, discovered from the URL resolver, walked as a user of another tenant and as
each role of the owning tenant.

- A route that carries an object id in its path is called with an `acme` object's id by each
  `globex` role: the answer is 404 (never 403, never the object), and nothing changes.
- A collection route answers `globex` users without any `acme` object in it.
- Each `acme` role gets exactly what its role's capabilities allow (403 otherwise); the capability
  each action needs is read from the view's `capabilities`, so routes added later are covered
  without editing this file. Unauthenticated callers get 401.

Object ids come from the API itself: the list route in front of each path parameter is read as
acme's admin (see tests/world.py for the data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from apps.tenants.api.base import TenantAPIMixin
from apps.tenants.api.views import IsOperator, MeView, TokenView
from apps.tenants.roles import role_can
from tests.conftest import ROLES, api_client_for
from tests.world import build_world

API_PREFIX = "api/v1/"
PUBLIC_VIEWS = {TokenView}          # no authentication at all
ANY_USER_VIEWS = {MeView}           # any authenticated user, no tenant object
METHODS = ("get", "post", "put", "patch", "delete")
PARAM = re.compile(r"<(?:(?P<conv>[^>:]+):)?(?P<name>[^>]+)>")


@dataclass
class Route:
    path: str                         # e.g. "/api/v1/users/<int:pk>/deactivate"
    view: Any                         # the callback
    methods: dict[str, str | None] = field(default_factory=dict)  # method -> viewset action

    @property
    def cls(self) -> Any:
        return getattr(self.view, "cls", None) or getattr(self.view, "view_class", None)

    @property
    def params(self) -> list[str]:
        return [m.group("name") for m in PARAM.finditer(self.path)]

    def capability(self, method: str) -> str | None:
        action = self.methods[method]
        capabilities = getattr(self.cls, "capabilities", {})
        key = action or method
        return capabilities.get(key, capabilities.get("*"))

    def __str__(self) -> str:
        return self.path


def _walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            found += _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            found.append((prefix + str(entry.pattern), entry.callback))
    return found


def discover_routes() -> list[Route]:
    routes = []
    for path, view in _walk(get_resolver().url_patterns):
        if not path.startswith(API_PREFIX) or not (hasattr(view, "cls") or hasattr(view, "view_class")):
            continue
        path = "/" + path.replace("^", "").replace("$", "").replace("\\Z", "")
        route = Route(path=path, view=view)
        if getattr(view, "actions", None):
            route.methods = dict(view.actions)
        else:
            route.methods = {m: None for m in METHODS if hasattr(route.cls, m)}
        routes.append(route)
    return routes


ROUTES = discover_routes()


def test_routes_are_discovered():
    paths = {route.path for route in ROUTES}
    assert "/api/v1/users/<int:pk>/" in paths and "/api/v1/auth/token" in paths


def test_every_api_view_declares_its_tenancy():
    for route in ROUTES:
        cls = route.cls
        if cls in PUBLIC_VIEWS | ANY_USER_VIEWS or _is_operator_view(cls):
            continue
        assert issubclass(cls, TenantAPIMixin), f"{route}: {cls.__name__} must use TenantAPIMixin"
        if route.params:
            assert hasattr(cls, "lookup_object"), f"{route}: {cls.__name__} must define lookup_object()"
        for method in route.methods:
            assert route.capability(method) is not None, f"{route} {method}: no capability declared"


def _is_operator_view(cls: Any) -> bool:
    return IsOperator in getattr(cls, "permission_classes", [])


def _id_of(row: dict[str, Any], param: str) -> Any:
    for key in (param, "id" if param in ("pk", "id") or param.endswith(("_id", "_pk")) else None,
                "name", "slug", "key", "id"):
        if key and key in row:
            return row[key]
    raise AssertionError(f"cannot tell the value of <{param}> from {sorted(row)}")


def _resolve(route: Route, client: APIClient, operator_client: APIClient | None = None) -> str:
    """Fill the route's path parameters with the first object the list route in front of each
    parameter shows to `client`."""
    path = route.path
    while (match := PARAM.search(path)) is not None:
        collection = path[: match.start()]
        listing = client.get(collection)
        assert listing.status_code == 200, f"{route}: listing {collection} gave {listing.status_code}"
        body = listing.json()
        rows = body["results"] if isinstance(body, dict) and "results" in body else body
        assert rows, f"{route}: {collection} lists nothing for acme; add a populator in tests/<app>/world.py"
        path = path[: match.start()] + str(_id_of(rows[0], match.group("name"))) + path[match.end():]
    return path


def _content(response: Any) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


def _body_id(response: Any) -> Any:
    try:
        body = response.json()
    except (ValueError, TypeError, AttributeError):
        return None
    return body.get("id") if isinstance(body, dict) else None


class _Rollback(Exception):
    pass


def _call(client: APIClient, method: str, url: str) -> Any:
    """Call and roll the effects back, so that every role meets the same world."""
    response = None
    try:
        with transaction.atomic():
            response = getattr(client, method)(url, {}, format="json")
            raise _Rollback
    except _Rollback:
        pass
    return response


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """Built once for the module inside a transaction that is rolled back at the end; each test
    runs in a savepoint of it (the `db` fixture), as Django's setUpTestData does."""
    from tests.conftest import make_people
    from tests.factories import TenantFactory, UserFactory

    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            acme = TenantFactory(slug="acme", name="Acme Corporation", time_zone="Europe/Paris")
            globex = TenantFactory(slug="globex", name="Globex Inc.", time_zone="America/New_York")
            people = make_people(acme, globex)
            operator = UserFactory(email="operator@platform.test", is_superuser=True, is_staff=True)
            build_world(acme, people["acme"])
            build_world(globex, people["globex"])
            yield {**people, "operator": operator}
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


def _tenant_routes() -> list[Route]:
    return [r for r in ROUTES if r.cls not in PUBLIC_VIEWS | ANY_USER_VIEWS and not _is_operator_view(r.cls)]


@pytest.mark.parametrize("route", [r for r in _tenant_routes() if r.params], ids=str)
def test_other_tenant_gets_404_on_objects(route, world, db):
    owner = api_client_for(world["acme"]["admin"].user)
    url = _resolve(route, owner)
    # Objects named by an id are acme's alone: anyone else gets 404. Objects named by a name
    # (schemas, fields...) may exist under the same name in every tenant: then globex reaches its
    # own object, never acme's.
    by_id_only = all(m.group("conv") == "int" for m in PARAM.finditer(route.path))
    acme_id = _body_id(owner.get(url)) if "get" in route.methods else None
    for method in route.methods:
        before = _content(owner.get(url)) if "get" in route.methods else None
        for role in ROLES:
            stranger = api_client_for(world["globex"][role].user)
            response = _call(stranger, method, url)
            if by_id_only or response.status_code >= 400:
                assert response.status_code in ((404,) if by_id_only else (400, 403, 404, 405, 409)), (
                    f"{method.upper()} {url} as globex {role}: {response.status_code} {_content(response)[:200]!r}")
            else:
                assert acme_id is None or _body_id(response) != acme_id, f"{url} showed acme's object to globex"
            assert b"acme" not in _content(response).lower()
        if before is not None:
            assert _content(owner.get(url)) == before


@pytest.mark.parametrize("route", [r for r in _tenant_routes() if not r.params and "get" in r.methods], ids=str)
def test_collections_never_show_another_tenant(route, world, db):
    owner = api_client_for(world["acme"]["admin"].user)
    answer = owner.get(route.path)
    theirs = answer.json() if answer["Content-Type"].startswith("application/json") else None  # CSV routes
    for role in ROLES:
        response = api_client_for(world["globex"][role].user).get(route.path)
        if response.status_code != 200:
            assert response.status_code == 403
            continue
        assert "acme" not in _content(response).decode().lower()
        rows = theirs.get("results") if isinstance(theirs, dict) else theirs
        if isinstance(rows, list):
            mine = response.json()
            mine = mine.get("results", mine) if isinstance(mine, dict) else mine
            acme_ids = {row.get("id") for row in rows if isinstance(row, dict)} - {None}
            assert not acme_ids & {row.get("id") for row in mine if isinstance(row, dict)} or (
                route.path == "/api/v1/users/"  # user ids are global; a person may belong to both
            )


@pytest.mark.parametrize("route", _tenant_routes(), ids=str)
def test_each_role_gets_what_its_capabilities_allow(route, world, db):
    owner = api_client_for(world["acme"]["admin"].user)
    url = _resolve(route, owner)
    for method in route.methods:
        capability = route.capability(method)
        for role in ROLES:
            response = _call(api_client_for(world["acme"][role].user), method, url)
            if role_can(role, capability):
                assert response.status_code not in (401, 403, 404, 405, 500), (
                    f"{method.upper()} {url} as acme {role} ({capability}): {response.status_code} "
                    f"{_content(response)[:300]!r}")
            else:
                assert response.status_code == 403, (
                    f"{method.upper()} {url} as acme {role} lacks {capability}: {response.status_code}")


@pytest.mark.parametrize("route", [r for r in ROUTES if r.cls not in PUBLIC_VIEWS], ids=str)
def test_anonymous_gets_401(route, world, db):
    url = route.path
    if route.params:
        resolver = world["operator"] if _is_operator_view(route.cls) else world["acme"]["admin"].user
        url = _resolve(route, api_client_for(resolver))
    for method in route.methods:
        response = getattr(APIClient(), method)(url, {}, format="json")
        assert response.status_code == 401, f"{method.upper()} {url}: {response.status_code}"


@pytest.mark.parametrize("route", [r for r in ROUTES if _is_operator_view(r.cls)], ids=str)
def test_operator_routes_are_invisible_to_tenant_users(route, world, db):
    url = route.path
    if route.params:
        url = _resolve(route, api_client_for(world["operator"]))
    for method in route.methods:
        for role in ROLES:
            response = _call(api_client_for(world["acme"][role].user), method, url)
            assert response.status_code == 404, f"{method.upper()} {url} as {role}: {response.status_code}"
