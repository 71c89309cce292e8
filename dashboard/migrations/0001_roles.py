"""The fixed roles exist from the start, so that the Django admin can assign them; reviewer
roles are created by `create_user --roles` or the configuration's `reviewers:` section."""

from __future__ import annotations

from django.db import migrations

FIXED_ROLES = ("admin", "auditor")


def create_roles(apps, schema_editor):
    group = apps.get_model("auth", "Group")
    for name in FIXED_ROLES:
        group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
