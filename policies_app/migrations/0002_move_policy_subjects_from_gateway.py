"""Servers, agents, keys and the configuration stamp move here from the gateway app: the
state moves, the tables stay (db_table keeps their names), so no row is copied or dropped."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("policies_app", "0001_initial"),
        ("gateway", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='Agent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.SlugField(max_length=64, unique=True)),
                        ('owner', models.CharField(blank=True, help_text='May not approve its calls.', max_length=150)),
                        ('roles', models.JSONField(blank=True, default=list)),
                        ('tool_scope', models.JSONField(blank=True, default=dict)),
                        ('enabled', models.BooleanField(default=True)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ],
                    options={
                        'db_table': 'gateway_agent',
                        'ordering': ['name'],
                    },
                ),
                migrations.CreateModel(
                    name='ConfigStamp',
                    fields=[
                        ('id', models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                        ('generation', models.BigIntegerField(default=0)),
                        ('changed_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ],
                    options={'db_table': 'gateway_configstamp'},
                ),
                migrations.CreateModel(
                    name='Server',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.SlugField(help_text='Agents connect to /mcp/<name>.', max_length=64, unique=True)),
                        ('url', models.URLField(blank=True, help_text='Streamable HTTP endpoint.', max_length=500)),
                        ('command', models.JSONField(blank=True, default=list, help_text='stdio: argv to spawn.')),
                        ('credential_header', models.CharField(blank=True, max_length=100)),
                        ('credential_encrypted', models.TextField(blank=True, editable=False)),
                        ('credential_env', models.CharField(blank=True, max_length=100)),
                        ('domain_pack', models.CharField(blank=True, max_length=64)),
                        ('tool_intents', models.JSONField(blank=True, default=dict)),
                        ('new_tools', models.CharField(choices=[('pin', 'pin on first use'), ('hold', 'hold until approved')], default='pin', max_length=8)),
                        ('timeout_seconds', models.FloatField(default=30.0)),
                        ('connect_timeout_seconds', models.FloatField(default=5.0)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'db_table': 'gateway_server',
                        'ordering': ['name'],
                    },
                ),
                migrations.CreateModel(
                    name='AgentKey',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('prefix', models.CharField(max_length=16, unique=True)),
                        ('secret_hash', models.CharField(max_length=64)),
                        ('label', models.CharField(blank=True, max_length=100)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('last_used_at', models.DateTimeField(blank=True, null=True)),
                        ('revoked_at', models.DateTimeField(blank=True, null=True)),
                        ('expires_at', models.DateTimeField(blank=True, null=True)),
                        ('agent', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='keys', to='policies_app.agent')),
                    ],
                    options={
                        'db_table': 'gateway_agentkey',
                        'ordering': ['-created_at'],
                    },
                ),
            ],
        ),
    ]
