from django.db import migrations

from apps.schemas.types import FUNCTIONS_SQL


class Migration(migrations.Migration):
    dependencies = [("schemas", "0001_initial")]
    operations = [
        migrations.RunSQL(
            FUNCTIONS_SQL,
            "DROP FUNCTION IF EXISTS schemas_to_date(text); DROP FUNCTION IF EXISTS schemas_to_timestamptz(text);",
        )
    ]
