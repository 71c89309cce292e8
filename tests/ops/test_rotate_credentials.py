from __future__ import annotations

import json
import subprocess
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from audit_app.models import AuditEntry
from policies_app import actions, credentials
from policies_app.models import Server

SECRET = "sk-live-7f3a9c1e55d24b0b9e8d"
OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


@pytest.fixture
def keys(settings):
    def use(*keys: str) -> None:
        settings.INTENDED_CREDENTIAL_KEYS = list(keys)
        credentials._fernet.cache_clear()

    yield use
    credentials._fernet.cache_clear()


def database_dump() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return "\n".join(connection.connection.iterdump())
    result = subprocess.run(
        ["pg_dump", "--no-owner", "-h", s.get("HOST") or "127.0.0.1", "-p", str(s.get("PORT") or 5432),
         "-U", s.get("USER") or "postgres", s["NAME"]],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return result.stdout


def ops_server(name: str = "customer-ops") -> Server:
    return actions.save_server(acting_user="alice", name=name, url="http://127.0.0.1:9000/mcp",
                               credential_header="Authorization", credential=f"Bearer {SECRET}")


@pytest.mark.django_db(transaction=True)
def test_it_keeps_no_credential_in_plain_text_in_a_database_dump(keys):
    keys(NEW_KEY)
    ops_server()
    connection.ensure_connection()
    dump = database_dump()
    assert "customer-ops" in dump  # the dump did include the server
    assert SECRET not in dump
    assert Server.objects.get().credential() == f"Bearer {SECRET}"


@pytest.mark.django_db
def test_it_reencrypts_every_credential_under_the_newest_key(keys):
    keys(OLD_KEY)
    ops_server("customer-ops")
    ops_server("billing")
    actions.save_server(acting_user="alice", name="no-credential", url="http://127.0.0.1:9001/mcp")
    before = dict(Server.objects.values_list("name", "credential_encrypted"))

    keys(NEW_KEY, OLD_KEY)
    out = StringIO()
    call_command("rotate_credentials", "--actor", "bob", stdout=out)
    assert "2 credential(s) re-encrypted" in out.getvalue()

    keys(NEW_KEY)  # the old key is gone: every credential still decrypts
    for server in Server.objects.exclude(name="no-credential"):
        assert server.credential_encrypted != before[server.name]
        assert server.credential() == f"Bearer {SECRET}"
    assert Server.objects.get(name="no-credential").credential_encrypted == ""

    entry = json.loads(bytes(AuditEntry.objects.filter(kind="admin").order_by("-seq").first().canonical))
    assert "credentials.rotated" in json.dumps(entry)
    assert "bob" in json.dumps(entry) and SECRET not in json.dumps(entry)


@pytest.mark.django_db
def test_it_changes_nothing_when_a_credential_cannot_be_decrypted(keys):
    keys(OLD_KEY)
    ops_server("customer-ops")
    before = Server.objects.get().credential_encrypted
    keys(NEW_KEY)  # the old key was dropped too early
    with pytest.raises(CommandError, match="customer-ops"):
        call_command("rotate_credentials", stdout=StringIO())
    assert Server.objects.get().credential_encrypted == before


@pytest.mark.django_db(transaction=True)
def test_it_keeps_credentials_readable_when_the_secret_key_rotates(settings):
    """Without INTENDED_CREDENTIAL_KEYS the keys derive from SECRET_KEY: rotating it the Django
    way (the old one moved to SECRET_KEY_FALLBACKS) must not lose a stored credential."""
    settings.INTENDED_CREDENTIAL_KEYS = []
    settings.SECRET_KEY = "old-secret-key-" + "x" * 40
    settings.SECRET_KEY_FALLBACKS = []
    credentials._fernet.cache_clear()
    try:
        ops_server()
        settings.SECRET_KEY = "new-secret-key-" + "y" * 40
        settings.SECRET_KEY_FALLBACKS = ["old-secret-key-" + "x" * 40]
        credentials._fernet.cache_clear()
        assert Server.objects.get(name="customer-ops").credential() == f"Bearer {SECRET}"

        call_command("rotate_credentials", stdout=StringIO())
        settings.SECRET_KEY_FALLBACKS = []
        credentials._fernet.cache_clear()
        assert Server.objects.get(name="customer-ops").credential() == f"Bearer {SECRET}"
    finally:
        credentials._fernet.cache_clear()
