"""`schemas_record` keeps one B-tree on its ids instead of two: the primary key becomes
(tenant_id, id), which was already unique, and the index on `id` alone goes. Every record write
maintained both (a bulk import's write phase is mostly index maintenance); every read of a record by
id names its tenant (the scoped manager, the services' SQL), so (tenant_id, id) serves them all, and
it is the key a distributed table (docs/scaling.md) needs. The new key is built once, in the same
ALTER TABLE that drops the old ones (existing rows are kept as they are)."""

from django.db import migrations

FORWARD = """
ALTER TABLE schemas_record
    DROP CONSTRAINT schemas_record_pkey,
    DROP CONSTRAINT schemas_record_tenant_id_key,
    ADD CONSTRAINT schemas_record_pkey PRIMARY KEY (tenant_id, id);
"""

BACKWARD = """
ALTER TABLE schemas_record
    DROP CONSTRAINT schemas_record_pkey,
    ADD CONSTRAINT schemas_record_pkey PRIMARY KEY (id),
    ADD CONSTRAINT schemas_record_tenant_id_key UNIQUE (tenant_id, id);
"""


class Migration(migrations.Migration):

    dependencies = [
        ('schemas', '0004_record_without_foreign_keys'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
            state_operations=[migrations.RemoveConstraint(model_name='record', name='schemas_record_tenant_id_key')],
        ),
    ]
