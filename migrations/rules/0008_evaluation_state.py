from django.db import migrations

from iothub.migration_operations import RunSQLFile


class Migration(migrations.Migration):
    dependencies = [
        ("rules", "0007_trigger_tuning"),
    ]

    operations = [
        # rule_evaluation_state: rules_prefilter() and "an enabled rule auto-resolves", kept current by a trigger on
        # rules, so telemetry_evaluate_rules reads one row per INSERT instead of computing them.
        RunSQLFile("rules/0008_evaluation_state.sql", reverse_path="rules/0008_evaluation_state.reverse.sql"),
    ]
