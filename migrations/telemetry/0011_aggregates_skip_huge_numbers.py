from django.db import migrations

from iothub.migration_operations import RunLiveSQL


class Migration(migrations.Migration):
    """Apache edition: the 1-minute view and the rollup refresh count only numbers within ingest's bound (±1e288),
    so a bigger one written by SQL can't overflow a sum and abort the refresh for every device. (The community
    edition's continuous aggregates are left as they are: docs/operations.md, "Huge values".)"""

    dependencies = [
        ("telemetry", "0010_watermark_for_every_reader"),
    ]

    operations = [
        RunLiveSQL("views/telemetry_1m.apache.sql", "25d41bcb8edfe238787202bbebc22262823e7be82a93a1079a92d5b0a132be7c"),
        RunLiveSQL(
            "functions/telemetry_rollup.refresh.apache.sql",
            "3eef9d863f50667debfe5f5ee5aefebd7d8dac4d9bade7434dc8d9a966083612",
        ),
    ]
