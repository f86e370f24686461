"""Create the demo tenants `acme` and `globex` with an admin, a marketer and an approver each.
Idempotent: running it again changes nothing but passwords given with --password."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from apps.tenants import services
from apps.tenants.models import Membership, Tenant, User
from apps.tenants.roles import Role
from apps.tenants.scoping import tenant_scope

DEMO_TENANTS = [
    ("acme", "Acme Corporation", "Europe/Paris"),
    ("globex", "Globex Inc.", "America/New_York"),
]
DEMO_ROLES = [("admin", Role.ADMIN), ("marketer", Role.MARKETER), ("approver", Role.APPROVER)]


class Command(BaseCommand):
    help = "Seed the demo tenants and users (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--password", help="password of every demo user (default: generated, printed)")

    @transaction.atomic
    def handle(self, *args: Any, password: str | None = None, **options: Any) -> None:
        generated = password is None
        password = password or secrets.token_urlsafe(9)
        created_users = []
        for slug, name, tz in DEMO_TENANTS:
            tenant = Tenant.objects.filter(slug=slug).first()
            if tenant is None:
                tenant = services.tenant_create(name=name, slug=slug, time_zone=tz, by=None)
            for local, role in DEMO_ROLES:
                email = f"{local}@{slug}.test"
                user = User.objects.filter(email=email).first()
                if user is None:
                    user = User(username=email, email=email, first_name=local.title(), last_name=name.split()[0])
                    user.set_password(password)
                    user.save()
                    created_users.append(email)
                elif not generated:
                    user.set_password(password)
                    user.save(update_fields=["password"])
                with tenant_scope(tenant):
                    if not Membership.objects.filter(user=user).exists():
                        Membership.objects.create(user=user, role=role)
        self.stdout.write(self.style.SUCCESS("Demo tenants: acme, globex."))
        if created_users and generated:
            self.stdout.write(f"New demo users {', '.join(created_users)} have the password: {password}")
        elif not generated:
            self.stdout.write(f"Demo users' password: {password}")
        else:
            self.stdout.write("Demo users already existed; their passwords were not changed.")
