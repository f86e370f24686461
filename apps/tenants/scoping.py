"""Fail-closed tenant scoping.

A query on a tenant-owned model reads the tenant from a ContextVar and raises `TenantScopeError`
when none is set, in views, tasks and shell alike. The scope is set by the tenant middleware
(portal), the API base view, `@tenant_task` (Celery) and `with tenant_scope(tenant)` (commands,
scripts, tests). The one way around it is the manager named `dangerously_unscoped`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import models

if TYPE_CHECKING:
    from apps.tenants.models import Tenant

_current_tenant: ContextVar[Tenant | None] = ContextVar("current_tenant", default=None)

F = TypeVar("F", bound=Callable[..., Any])


class TenantScopeError(RuntimeError):
    """A tenant-owned model was queried with no tenant in scope, or across tenants."""


def current_tenant() -> Tenant:
    tenant = _current_tenant.get()
    if tenant is None:
        raise TenantScopeError(
            "No tenant in scope: wrap the code in `with tenant_scope(tenant):` or use a tenant-scoped "
            "view or task."
        )
    return tenant


def current_tenant_or_none() -> Tenant | None:
    return _current_tenant.get()


@contextmanager
def tenant_scope(tenant: Tenant) -> Iterator[Tenant]:
    """Run the block with `tenant` in scope (nesting restores the outer scope on exit)."""
    if tenant is None or tenant.pk is None:
        raise TenantScopeError("tenant_scope() needs a saved tenant")
    token = _current_tenant.set(tenant)
    try:
        yield tenant
    finally:
        _current_tenant.reset(token)


def tenant_task(func: F) -> F:
    """Decorate a Celery task body that takes `tenant_id=`: it runs inside that tenant's scope.
    A task sent without `tenant_id` fails rather than running unscoped."""

    @functools.wraps(func)
    def wrapper(*args: Any, tenant_id: int | None = None, **kwargs: Any) -> Any:
        from apps.tenants.models import Tenant

        if tenant_id is None:
            raise TenantScopeError(f"{func.__name__} must be called with tenant_id=")
        tenant = Tenant.objects.get(pk=tenant_id)
        with tenant_scope(tenant):
            return func(*args, tenant_id=tenant_id, **kwargs)

    return wrapper  # type: ignore[return-value]


class TenantQuerySet(models.QuerySet):
    def create(self, **kwargs: Any) -> Any:
        tenant = current_tenant()
        given = kwargs.get("tenant") or kwargs.get("tenant_id")
        given_id = getattr(given, "pk", given)
        if given_id is not None and given_id != tenant.pk:
            raise TenantScopeError("create() for another tenant than the one in scope")
        if given is None:
            kwargs["tenant"] = tenant
        return super().create(**kwargs)


class TenantScopedManager(models.Manager.from_queryset(TenantQuerySet)):  # type: ignore[misc]
    """The default manager of every tenant-owned model: only the tenant in scope's rows."""

    def get_queryset(self) -> TenantQuerySet:
        tenant = current_tenant()
        return super().get_queryset().filter(tenant_id=tenant.pk)


class TenantOwnedModel(models.Model):
    """Base of every tenant-owned model: a `tenant` column first in every key, a fail-closed
    default manager, and a save() that refuses to write a row into another tenant than the
    one in scope."""

    # No index of its own: every unique constraint and index of a tenant-owned table leads with
    # tenant_id, which serves lookups by tenant alone.
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+", editable=False,
                               db_index=False)

    objects = TenantScopedManager()
    dangerously_unscoped = models.Manager()

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(fields=["tenant", "id"], name="%(app_label)s_%(class)s_tenant_id_key"),
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        scoped = current_tenant_or_none()
        if scoped is not None:
            if self.tenant_id is None:
                self.tenant = scoped
            elif self.tenant_id != scoped.pk:
                raise TenantScopeError(
                    f"refusing to save {type(self).__name__} of tenant {self.tenant_id} "
                    f"inside the scope of tenant {scoped.pk}"
                )
        super().save(*args, **kwargs)
