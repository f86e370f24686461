"""factory_boy factories. Tenant-owned factories write through the explicitly unscoped manager
and take their tenant from their parent, so no test builds cross-tenant data by accident."""

from __future__ import annotations

import factory

from apps.tenants.models import Membership, Tenant, User
from apps.tenants.roles import Role

PASSWORD = "correct-horse-battery"


class TenantOwnedFactory(factory.django.DjangoModelFactory):
    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # Factories run outside any request: save() directly rather than through the scoped manager.
        obj = model_class(*args, **kwargs)
        obj.save()
        return obj


class TenantFactory(factory.django.DjangoModelFactory):
    """Tenants are made by the real service, so they get what every tenant gets on creation."""

    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Tenant {n}")
    slug = factory.Sequence(lambda n: f"tenant-{n}")
    time_zone = "Europe/Paris"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from apps.tenants.services import tenant_create

        return tenant_create(by=None, **kwargs)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    username = factory.LazyAttribute(lambda o: o.email)
    first_name = "Test"
    last_name = "User"
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @classmethod
    def _after_postgeneration(cls, instance, create, results=None):
        if create and results:
            instance.save()


class MembershipFactory(TenantOwnedFactory):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MARKETER
