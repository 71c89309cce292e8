"""Upgrading an install that used DRF's `authtoken`: its clear tokens move into the hashed table
and keep working (with an expiry now), and DRF's table, migration records and permissions go."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client
from django.utils import timezone

from dashboard.models import ApiToken
from dashboard.tokens import hash_token
from tests.dashboard.conftest import persona

pytestmark = pytest.mark.django_db(transaction=True)

OLD_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"  # DRF's shape: 40 hex digits


def migrate_to(targets: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def leaves() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def make_drf_table_with(user: User) -> None:
    """The table `rest_framework.authtoken` 0001-0004 leaves behind, and its bookkeeping."""
    created = "timestamp with time zone" if connection.vendor == "postgresql" else "datetime"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE authtoken_token ("key" varchar(40) PRIMARY KEY, created {created} NOT NULL, '
                       f'user_id integer NOT NULL UNIQUE REFERENCES auth_user (id))')
        cursor.execute("INSERT INTO authtoken_token (\"key\", created, user_id) VALUES (%s, %s, %s)",
                       [OLD_KEY, timezone.now() - timedelta(days=400), user.pk])
    MigrationRecorder(connection).record_applied("authtoken", "0001_initial")
    ContentType.objects.get_or_create(app_label="authtoken", model="token")


def test_it_moves_drf_tokens_into_the_hashed_table_and_drops_drfs() -> None:
    ann = persona("ann", ["auditor"])
    migrate_to([("dashboard", "0003_api_tokens")])
    make_drf_table_with(ann)
    migrate_to(leaves())

    row = ApiToken.objects.get(user=ann)
    assert row.token_hash == hash_token(OLD_KEY) and row.prefix == OLD_KEY[:8]
    assert row.label == "DRF token (migrated)" and row.created_by == "upgrade"
    assert timedelta(days=89) < row.expires_at - timezone.now() <= timedelta(days=90)
    assert "authtoken_token" not in connection.introspection.table_names()
    assert not MigrationRecorder(connection).migration_qs.filter(app="authtoken").exists()
    assert not ContentType.objects.filter(app_label="authtoken").exists()
    response = Client(HTTP_AUTHORIZATION=f"Token {OLD_KEY}").get("/api/audit/events/")
    assert response.status_code == 200, response.content


def test_it_migrates_a_database_that_never_had_drf_tokens() -> None:
    migrate_to([("dashboard", "0003_api_tokens")])
    migrate_to(leaves())
    assert not ApiToken.objects.exists()
