from django.db import migrations

from iothub.migration_operations import RunLiveSQL


class Migration(migrations.Migration):
    """Apache edition: a writer under REPEATABLE READ or SERIALIZABLE logs every reading it inserts, since its
    snapshot may predate the threshold the lock-free refresh's fence assumes it saw."""

    dependencies = [
        ("telemetry", "0013_invalidations_per_day"),
    ]

    operations = [
        RunLiveSQL(
            "triggers/telemetry_rollup_invalidate.apache.sql",
            "e85e6df1c7aa6e068c589fbc51059657bb300701480eca68010fb9b2ea649a3f",
        ),
    ]
