"""Decisions are append-only, enforced by PostgreSQL with the same trigger function as the audit
trail (apps/tenants/migrations/0002_audit_immutable.py): UPDATE, DELETE and TRUNCATE raise,
whatever code issues them (only a test database may TRUNCATE between tests)."""

from django.db import migrations

SQL = """
CREATE TRIGGER approvals_decision_immutable
    BEFORE UPDATE OR DELETE ON approvals_decision
    FOR EACH ROW EXECUTE FUNCTION tenants_audit_immutable();
CREATE TRIGGER approvals_decision_no_truncate
    BEFORE TRUNCATE ON approvals_decision
    FOR EACH STATEMENT EXECUTE FUNCTION tenants_audit_immutable();
"""

REVERSE = """
DROP TRIGGER IF EXISTS approvals_decision_no_truncate ON approvals_decision;
DROP TRIGGER IF EXISTS approvals_decision_immutable ON approvals_decision;
"""


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial"), ("tenants", "0002_audit_immutable")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
