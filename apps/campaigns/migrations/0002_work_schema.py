from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0001_initial")]
    operations = [
        migrations.RunSQL("CREATE SCHEMA IF NOT EXISTS campaign_work;", "DROP SCHEMA IF EXISTS campaign_work CASCADE;"),
    ]
