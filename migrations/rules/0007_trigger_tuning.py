from django.db import migrations

from iothub.migration_operations import RunSQLFile


class Migration(migrations.Migration):
    dependencies = [
        ("rules", "0006_rule_metric_name_anchors"),
    ]

    operations = [
        # For telemetry_evaluate_rules: rules_prefilter() in strict jsonpath mode (its per-reading check, cheaper)
        # and events at fillfactor 80 (dedupe bumps stay HOT updates).
        RunSQLFile("rules/0007_trigger_tuning.sql", reverse_path="rules/0007_trigger_tuning.reverse.sql"),
    ]
