from django.db import migrations

from iothub.migration_operations import RunSQLFile


class Migration(migrations.Migration):
    dependencies = [
        ("rules", "0001_initial"),
    ]

    operations = [
        RunSQLFile("rules/0002_evaluation_functions.sql", reverse_path="rules/0002_evaluation_functions.reverse.sql"),
    ]
