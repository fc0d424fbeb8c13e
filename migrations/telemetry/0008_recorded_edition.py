from django.db import migrations

from iothub.migration_operations import RunSQLFile


class Migration(migrations.Migration):
    dependencies = [
        ("telemetry", "0007_evaluate_rules_from_state"),
    ]

    operations = [
        # The edition the aggregates were built for (0002, 0005), recorded: iothub/edition.py reads it.
        RunSQLFile("telemetry/0008_recorded_edition.sql", reverse_path="telemetry/0008_recorded_edition.reverse.sql"),
    ]
