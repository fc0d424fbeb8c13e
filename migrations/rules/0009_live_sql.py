from django.db import migrations

from iothub.migration_operations import RunLiveSQL


class Migration(migrations.Migration):
    """The rules' functions and the trigger on rules as live files (sql/functions/, sql/triggers/): the same
    definitions as sql/history/rules/0002, 0007 and 0008, from now on changed in one file per object."""

    dependencies = [
        ("rules", "0008_evaluation_state"),
    ]

    operations = [
        RunLiveSQL("functions/rule_matches.sql", "2b125130c46722446ade2bf3dee78905d57fbec59d1fc9d40a3ead6b84a910f6"),
        RunLiveSQL("functions/rule_render_message.sql", "253f03c6de69b0a7362351aaffbad6ab0b5d762505a7f0cbb2e79d7ba10ade36"),
        RunLiveSQL("functions/rules_prefilter.sql", "0ab5f733abe4c5fc61d268fdea05e2a45b4121a89c6ffcd930b53bdda69f9974"),
        RunLiveSQL("functions/rules_auto_resolving.sql", "19d5869ad41d1a266d78a0a535e594a3219992c9c4822ba27f09c7c09673354c"),
        RunLiveSQL("functions/rule_evaluation_state_refresh.sql", "331bd9748a4f56dc0149980edf7ea6db7470221124d6019dbdf23d7b447e9986"),
        RunLiveSQL("triggers/rules_refresh_evaluation_state.sql", "82343ecc633f3a72c83c8312a2d12ea2f77915757791324c72c7864772088bbb"),
    ]
