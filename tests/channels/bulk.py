"""Many profiles at once for the send tests. The per-record services are not what these tests
are about: small sets go through bulk_create, large ones through one INSERT … SELECT over
generate_series (20,000 profiles in well under a second)."""

from __future__ import annotations

import json

from django.db import connection

from apps.profiles.selectors import profile_schema
from apps.schemas.models import Record
from apps.tenants.scoping import tenant_scope

SQL_FROM = 5000  # from this many profiles on, one SQL statement writes them


def bulk_profiles(tenant, n: int, prefix: str = "r", **extra) -> list[str]:
    """`n` consenting profiles `<prefix>000000`… with an e-mail, a phone and a push token each
    (plus `extra` attributes); returns their keys in order."""
    schema = profile_schema(tenant=tenant)
    keys = [f"{prefix}{i:06d}" for i in range(n)]
    if n >= SQL_FROM:
        # The same attributes as below, built in SQL: `k` is the key, `i` its number.
        with connection.cursor() as cursor:
            cursor.execute("""
                INSERT INTO schemas_record (tenant_id, schema_id, key, attributes, created_at, updated_at)
                SELECT %s, %s, k, jsonb_build_object(
                           'id', k, 'email', k || '@example.test', 'phone', '+3360' || lpad(i::text, 7, '0'),
                           'first_name', 'N' || i, 'email_opt_in', true, 'sms_opt_in', true,
                           'push_tokens', jsonb_build_array('tok-' || k)) || %s::jsonb, now(), now()
                FROM generate_series(0, %s - 1) AS i, LATERAL (SELECT %s || lpad(i::text, 6, '0') AS k) x
            """, [tenant.pk, schema.pk, json.dumps(extra), n, prefix])
            assert cursor.rowcount == n
        return keys
    with tenant_scope(tenant):
        Record.objects.bulk_create([
            Record(tenant=tenant, schema=schema, key=key, attributes={
                "id": key, "email": f"{key}@example.test", "phone": f"+3360{i:07d}", "first_name": f"N{i}",
                "email_opt_in": True, "sms_opt_in": True, "push_tokens": [f"tok-{key}"], **extra})
            for i, key in enumerate(keys)
        ], batch_size=2000)
    return keys
