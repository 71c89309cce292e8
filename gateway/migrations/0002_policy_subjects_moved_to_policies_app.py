"""The gateway app's models moved to policies_app (its migration 0002): state only, the
tables stay where they are."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("gateway", "0001_initial"),
        ("policies_app", "0002_move_policy_subjects_from_gateway"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name="AgentKey"),
                migrations.DeleteModel(name="Agent"),
                migrations.DeleteModel(name="Server"),
                migrations.DeleteModel(name="ConfigStamp"),
            ],
        ),
    ]
