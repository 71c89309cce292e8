from __future__ import annotations

from django.db import migrations, models


def create_head(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("audit_app", "ChainHead").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("audit_app", "0001_initial")]

    operations = [
        migrations.DeleteModel(name="AuditEntry"),
        migrations.CreateModel(
            name="AuditEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("seq", models.BigIntegerField(unique=True)),
                ("time", models.DateTimeField(db_index=True)),
                ("kind", models.CharField(max_length=16)),
                ("call_id", models.CharField(blank=True, db_index=True, max_length=32)),
                ("agent", models.CharField(blank=True, max_length=64)),
                ("server", models.CharField(blank=True, max_length=64)),
                ("tool", models.CharField(blank=True, max_length=200)),
                ("intent", models.CharField(blank=True, max_length=200)),
                ("decision", models.CharField(blank=True, max_length=16)),
                ("canonical", models.BinaryField()),
                ("leaf_hash", models.CharField(max_length=64)),
            ],
            options={
                "ordering": ["seq"],
                "indexes": [
                    models.Index(fields=["agent", "time"], name="audit_app_a_agent_47f4fd_idx"),
                    models.Index(fields=["intent", "time"], name="audit_app_a_intent_f53d0b_idx"),
                    models.Index(fields=["server", "tool", "time"], name="audit_app_a_server_5fac9f_idx"),
                    models.Index(fields=["decision", "time"], name="audit_app_a_decisio_b5bb6a_idx"),
                ],
            },
        ),
        migrations.CreateModel(
            name="ChainHead",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("size", models.BigIntegerField(default=0)),
                ("last_leaf_hash", models.CharField(blank=True, max_length=64)),
            ],
        ),
        migrations.CreateModel(
            name="Checkpoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("size", models.BigIntegerField(unique=True)),
                ("root_hash", models.CharField(max_length=64)),
                ("note", models.TextField()),
                ("signed_at", models.DateTimeField()),
                ("frontier", models.JSONField(default=list)),
                ("last_leaf_hash", models.CharField(blank=True, max_length=64)),
            ],
            options={"ordering": ["size"]},
        ),
        migrations.CreateModel(
            name="ChainAlert",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("raised_at", models.DateTimeField(auto_now_add=True)),
                ("message", models.TextField()),
                ("first_bad_seq", models.BigIntegerField(null=True)),
                ("resolved_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={"ordering": ["-raised_at"]},
        ),
        migrations.RunPython(create_head, migrations.RunPython.noop),
    ]
