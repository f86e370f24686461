"""Many profiles at once for the send tests (bulk_create: the per-record services are not what
these tests are about)."""

from __future__ import annotations

from apps.profiles.selectors import profile_schema
from apps.schemas.models import Record
from apps.tenants.scoping import tenant_scope


def bulk_profiles(tenant, n: int, prefix: str = "r", **extra) -> list[str]:
    schema = profile_schema(tenant=tenant)
    keys = [f"{prefix}{i:06d}" for i in range(n)]
    with tenant_scope(tenant):
        Record.objects.bulk_create([
            Record(tenant=tenant, schema=schema, key=key, attributes={
                "id": key, "email": f"{key}@example.test", "phone": f"+3360{i:07d}", "first_name": f"N{i}",
                "email_opt_in": True, "sms_opt_in": True, "push_tokens": [f"tok-{key}"], **extra})
            for i, key in enumerate(keys)
        ], batch_size=2000)
    return keys
