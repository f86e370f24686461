"""`schemas_record` keeps one B-tree on its ids instead of two: the primary key becomes
(tenant_id, id), which was already unique, and the index on `id` alone goes. Every record write
maintained both (a bulk import's write phase is mostly index maintenance); every read of a record by
id names its tenant (the scoped manager, the services' SQL), so (tenant_id, id) serves them all, and
it is the key a distributed table (docs/scaling.md) needs. The new key's index is built
CONCURRENTLY (reads and writes go on meanwhile), then becomes the primary key in one short
ALTER TABLE that drops the old ones (`PRIMARY KEY USING INDEX`: no scan, no rebuild)."""

from django.db import migrations

BUILD = """
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS schemas_record_tenant_id_id_pk ON schemas_record (tenant_id, id);
"""

FORWARD = """
ALTER TABLE schemas_record
    DROP CONSTRAINT schemas_record_pkey,
    DROP CONSTRAINT schemas_record_tenant_id_key,
    ADD CONSTRAINT schemas_record_pkey PRIMARY KEY USING INDEX schemas_record_tenant_id_id_pk;
"""

BACKWARD = """
ALTER TABLE schemas_record
    DROP CONSTRAINT schemas_record_pkey,
    ADD CONSTRAINT schemas_record_pkey PRIMARY KEY (id),
    ADD CONSTRAINT schemas_record_tenant_id_key UNIQUE (tenant_id, id);
"""


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('schemas', '0004_record_without_foreign_keys'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(BUILD, migrations.RunSQL.noop),
                                 migrations.RunSQL(FORWARD, BACKWARD)],
            state_operations=[migrations.RemoveConstraint(model_name='record', name='schemas_record_tenant_id_key')],
        ),
    ]
