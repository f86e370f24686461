"""The audit trail is append-only, enforced by PostgreSQL: UPDATE, DELETE and TRUNCATE raise,
whatever code issues them. An operator purging a tenant's history sets the transaction-local
`campaigns.allow_audit_purge` to 'on' first (DELETE only). The test database sets
`campaigns.allow_audit_truncate` so that tests can wipe tables between tests (TRUNCATE only)."""

from django.db import migrations

SQL = """
CREATE OR REPLACE FUNCTION tenants_audit_immutable() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('campaigns.allow_audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'TRUNCATE' AND current_setting('campaigns.allow_audit_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit entries are immutable (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER tenants_auditentry_immutable
    BEFORE UPDATE OR DELETE ON tenants_auditentry
    FOR EACH ROW EXECUTE FUNCTION tenants_audit_immutable();
CREATE TRIGGER tenants_auditentry_no_truncate
    BEFORE TRUNCATE ON tenants_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION tenants_audit_immutable();
"""

REVERSE = """
DROP TRIGGER IF EXISTS tenants_auditentry_no_truncate ON tenants_auditentry;
DROP TRIGGER IF EXISTS tenants_auditentry_immutable ON tenants_auditentry;
DROP FUNCTION IF EXISTS tenants_audit_immutable();
"""


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
