"""A policy version's comment becomes its description (what changed and why), with room for a
sentence or two: a rename, so every stored comment ("apply", "rollback to v3") is kept."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('policies_app', '0004_agent_oauth_client'),
    ]

    operations = [
        migrations.RenameField(model_name='policyversion', old_name='comment', new_name='description'),
        migrations.AlterField(model_name='policyversion', name='description', field=models.TextField(blank=True)),
    ]
