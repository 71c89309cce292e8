"""DRF's `authtoken` table goes: each clear token it held moves into `dashboard_apitoken` as its
SHA-256, so scripts using it keep working, with a 90-day expiry from the upgrade (DRF tokens
never expired), and the table is dropped (docs/SECURITY.md, "REST API tokens").

`rest_framework.authtoken` is no longer installed, so its table is read with plain SQL when it
exists (an install that predates this migration) and skipped otherwise (a fresh database).
Its migration records and permissions go too, so that re-installing the app would start clean.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.db import migrations
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

DRF_TABLE = "authtoken_token"
LIFETIME_AFTER_UPGRADE = timedelta(days=90)


def move_drf_tokens(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        present = DRF_TABLE in connection.introspection.table_names(cursor)
        rows = []
        if present:
            cursor.execute(f"SELECT {schema_editor.quote_name('key')}, user_id, created FROM {DRF_TABLE}")
            rows = cursor.fetchall()
    api_token = apps.get_model("dashboard", "ApiToken")
    now = timezone.now()
    taken = set(api_token.objects.values_list("prefix", flat=True))
    for key, user_id, created in rows:
        # The prefix shows 8 of the key's 40 hex digits (32 of its 160 random bits), as new
        # tokens show theirs; longer only if two old keys happen to share them.
        prefix = next(key[:n] for n in (8, 12, 16, 40) if key[:n] not in taken)
        taken.add(prefix)
        api_token.objects.create(
            user_id=user_id, prefix=prefix, token_hash=hashlib.sha256(key.encode()).hexdigest(),
            label="DRF token (migrated)", created_at=created or now, created_by="upgrade",
            expires_at=now + LIFETIME_AFTER_UPGRADE,
        )
    if present:
        schema_editor.execute(schema_editor.sql_delete_table % {"table": schema_editor.quote_name(DRF_TABLE)})
    MigrationRecorder(connection).migration_qs.filter(app="authtoken").delete()
    apps.get_model("contenttypes", "ContentType").objects.filter(app_label="authtoken").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0003_api_tokens"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]
    # Irreversible in effect: the clear tokens are not kept anywhere to be put back.
    operations = [migrations.RunPython(move_drf_tokens, migrations.RunPython.noop)]
