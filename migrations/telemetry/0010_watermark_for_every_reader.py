from django.db import migrations

from iothub.migration_operations import RunLiveSQL


class Migration(migrations.Migration):
    """Apache edition: telemetry_rollup.watermark() runs with its owner's rights, so a reader with no rights on the
    telemetry_rollup schema (the read-only role) can query telemetry_1m/1h/1d."""

    dependencies = [
        ("telemetry", "0009_live_sql"),
    ]

    operations = [
        RunLiveSQL("functions/telemetry_rollup.watermark.apache.sql", "562621a85279ed96572b09eb57b753712004c734c0f996daa25af6f1a0a4c305"),
    ]
