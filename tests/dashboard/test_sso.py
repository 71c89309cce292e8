"""Dashboard single sign-on with OpenID Connect against a real provider (the certified
`oidc-provider` package, tests/support/idp.py): the dashboard in-process behind Django's test
client, every request to the provider (discovery, token, JWKS, userinfo) a real one."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from audit_app.models import AuditEntry
from dashboard import actions, oidc
from tests.dashboard.conftest import PASSWORD
from tests.support.idp import IdP, idp  # noqa: F401  (the module's provider fixture)

CLIENT_ID = "intended-dashboard"
SECRET = "dashboard-secret-for-tests"
BASE = "http://testserver"
CALLBACK = BASE + "/oidc/callback/"


@pytest.fixture
def sso(settings, db, idp: IdP) -> IdP:  # noqa: F811
    idp.add_client(CLIENT_ID, secret=SECRET, redirect_uris=[CALLBACK], post_logout_redirect_uris=[BASE + "/login/"])
    settings.INTENDED_OIDC_ENABLED = True
    settings.INTENDED_OIDC_ISSUER = idp.issuer
    settings.INTENDED_OIDC_CLIENT_ID = CLIENT_ID
    settings.INTENDED_OIDC_CLIENT_SECRET = SECRET
    settings.INTENDED_OIDC_PROVIDER_NAME = "Test IdP"
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "dashboard.oidc.SignInBackend"]
    oidc._discovered.clear()
    Group.objects.get_or_create(name="support-lead")
    return idp


def sign_in(provider: IdP, login: str, password: str = "pw", *, next_page: str = "", client: Client | None = None):
    """The browser's round trip: to the provider, its login form, and back to the callback."""
    client = client or Client()
    begin = client.get("/oidc/authenticate/" + (f"?next={next_page}" if next_page else ""))
    assert begin.status_code == 302, begin.content
    callback = provider.login(begin["Location"], login, password, CALLBACK)
    parts = urlsplit(callback)
    return client, client.get(f"{parts.path}?{parts.query}")


def groups_of(username: str) -> list[str]:
    return sorted(User.objects.get(username=username).groups.values_list("name", flat=True))


def admin_entries(action: str) -> list[dict[str, Any]]:
    entries = [json.loads(bytes(e.canonical)) for e in AuditEntry.objects.order_by("seq")]
    return [e for e in entries if e.get("kind") == "admin" and e.get("action") == action]


def test_it_offers_single_sign_on_on_the_login_page_only_when_configured(settings, db):
    settings.INTENDED_OIDC_ENABLED = False
    assert b"Sign in with" not in Client().get("/login/").content
    assert Client().get("/oidc/authenticate/").status_code == 404
    settings.INTENDED_OIDC_ENABLED, settings.INTENDED_OIDC_PROVIDER_NAME = True, "Okta"
    page = Client().get("/login/?next=/approvals/").content.decode()
    assert 'href="/oidc/authenticate/?next=/approvals/">Sign in with Okta</a>' in page
    assert 'name="password"' in page  # break-glass accounts still sign in with a password


def test_it_sends_the_browser_to_the_provider_with_pkce_state_and_nonce(sso):
    response = Client().get("/oidc/authenticate/")
    location = urlsplit(response["Location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert f"{location.scheme}://{location.netloc}{location.path}" == oidc.provider().authorization_endpoint
    assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == CALLBACK
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32


def test_it_signs_a_reviewer_in_with_the_role_from_the_claim_and_lands_on_the_approvals_queue(sso):
    sso.add_user("dana", "pw", groups=["support-lead", "Domain Users"], email="dana@example.test")
    client, response = sign_in(sso, "dana")
    assert response.status_code == 302 and response["Location"] == "/approvals/"
    assert client.get("/approvals/").status_code == 200
    dana = User.objects.get(username="dana")
    assert groups_of("dana") == ["support-lead"]
    assert dana.email == "dana@example.test" and not dana.has_usable_password()
    # a directory group that is no role here is neither granted nor created
    assert not Group.objects.filter(name="Domain Users").exists()
    created = admin_entries("user.created")[-1]
    assert created["target"] == "dana" and created["actor"] == "oidc"
    assert created["details"]["roles"] == ["support-lead"] and created["details"]["subject"] == "dana"


def test_it_goes_where_the_sign_in_was_headed(sso):
    sso.add_user("erin", "pw", groups=["auditor"])
    _, response = sign_in(sso, "erin", next_page="/audit/")
    assert response["Location"] == "/audit/"


def test_it_sets_the_roles_from_the_claim_on_every_sign_in(sso):
    sso.add_user("frank", "pw", groups=["support-lead", "admin"])
    client, _ = sign_in(sso, "frank")
    assert groups_of("frank") == ["admin", "support-lead"]
    assert User.objects.get(username="frank").is_superuser
    assert client.get("/agents/").status_code == 200

    sso.add_user("frank", "pw", groups=["auditor"])  # the directory changed
    client, _ = sign_in(sso, "frank")
    frank = User.objects.get(username="frank")
    assert groups_of("frank") == ["auditor"] and not frank.is_superuser and not frank.is_staff
    assert client.get("/agents/").status_code == 403
    synced = admin_entries("user.roles_synced")[-1]
    assert synced["target"] == "frank"
    assert synced["details"]["before"] == ["admin", "support-lead"] and synced["details"]["after"] == ["auditor"]
    assert User.objects.filter(username="frank").count() == 1  # the same account, found by sub


def test_a_user_whose_claim_carries_no_role_is_signed_in_but_sees_the_forbidden_page(sso):
    sso.add_user("gus", "pw", groups=["Everyone"])
    client, response = sign_in(sso, "gus", next_page="/approvals/")
    assert response.status_code == 403
    assert b"You do not have access" in response.content
    assert b"Test IdP gave you no role in Intended: its <code>groups</code> claim names none" in response.content
    assert client.get("/").status_code == 200  # signed in...
    assert client.get("/audit/").status_code == 403  # ...with no role
    assert groups_of("gus") == []


def test_it_links_an_account_prepared_without_a_password_and_refuses_a_password_account(sso):
    actions.create_user(acting_user="test", username="hana", roles=["support-lead"])  # no password
    actions.create_user(acting_user="test", username="root", roles=["admin"], password=PASSWORD)
    sso.add_user("hana", "pw", groups=["support-lead"])
    sso.add_user("root", "pw", groups=["admin"])

    _, response = sign_in(sso, "hana")
    assert response["Location"] == "/approvals/"
    assert admin_entries("user.linked")[-1]["target"] == "hana"

    client, response = sign_in(sso, "root")
    assert response["Location"] == "/login/"
    page = client.get("/login/").content.decode()
    assert "Sign-in with Test IdP did not complete: the account &#x27;root&#x27; signs in with a password here" in page
    assert client.get("/agents/").status_code == 302  # not signed in


def test_it_refuses_a_disabled_account(sso):
    sso.add_user("ivan", "pw", groups=["support-lead"])
    sign_in(sso, "ivan")
    User.objects.filter(username="ivan").update(is_active=False)
    client, response = sign_in(sso, "ivan")
    assert response["Location"] == "/login/"
    assert b"this account is disabled" in client.get("/login/").content


def test_a_disabled_account_loses_its_open_session(sso):
    sso.add_user("jill", "pw", groups=["support-lead"])
    client, _ = sign_in(sso, "jill")
    User.objects.filter(username="jill").update(is_active=False)
    assert client.get("/approvals/").status_code == 302


def test_it_refuses_a_replayed_answer(sso):
    sso.add_user("kim", "pw", groups=["support-lead"])
    client = Client()
    begin = client.get("/oidc/authenticate/")
    callback = urlsplit(sso.login(begin["Location"], "kim", "pw", CALLBACK))
    assert client.get(f"{callback.path}?{callback.query}")["Location"] == "/approvals/"
    client.post("/logout/")
    again = client.get(f"{callback.path}?{callback.query}")
    assert again["Location"] == "/login/"
    assert b"already used" in client.get("/login/").content
    assert client.get("/approvals/").status_code == 302


def test_it_refuses_an_answer_to_a_sign_in_another_browser_started(sso):
    sso.add_user("lea", "pw", groups=["support-lead"])
    victim, attacker = Client(), Client()
    begin = attacker.get("/oidc/authenticate/")
    callback = urlsplit(sso.login(begin["Location"], "lea", "pw", CALLBACK))
    assert victim.get(f"{callback.path}?{callback.query}")["Location"] == "/login/"
    assert victim.get("/approvals/").status_code == 302


def test_it_tells_why_when_the_provider_refuses(sso):
    client = Client()
    begin = client.get("/oidc/authenticate/")
    state = parse_qs(urlsplit(begin["Location"]).query)["state"][0]
    response = client.get(f"/oidc/callback/?error=access_denied&error_description=<b>x</b>&state={state}")
    assert response["Location"] == "/login/"
    page = client.get("/login/").content.decode()
    assert "the identity provider answered access_denied" in page and "<b>x</b>" not in page


def test_it_signs_in_after_the_provider_rotates_its_keys(sso):
    sso.add_user("max", "pw", groups=["support-lead"])
    sign_in(sso, "max")
    sso.rotate_keys(keep_old=False)
    _, response = sign_in(sso, "max")
    assert response["Location"] == "/approvals/"


def test_it_says_so_when_the_provider_cannot_be_reached(sso, settings):
    settings.INTENDED_OIDC_ISSUER = "http://127.0.0.1:9"  # discard port: nothing listens
    oidc._discovered.clear()
    client = Client()
    assert client.get("/oidc/authenticate/")["Location"] == "/login/"
    assert b"the identity provider could not be reached" in client.get("/login/").content


def test_signing_out_ends_the_session_and_the_providers(sso):
    sso.add_user("nia", "pw", groups=["support-lead"])
    client, _ = sign_in(sso, "nia")
    response = client.post("/logout/")
    location = urlsplit(response["Location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert f"{location.scheme}://{location.netloc}{location.path}" == oidc.provider().end_session_endpoint
    assert query["post_logout_redirect_uri"] == BASE + "/login/" and query["client_id"] == CLIENT_ID
    assert query["id_token_hint"].count(".") == 2
    assert client.get("/approvals/").status_code == 302


def test_the_sign_out_form_may_redirect_to_the_provider_only(sso):
    policy = Client().get("/login/")["Content-Security-Policy"]
    assert f"form-action 'self' {sso.issuer};" in policy


def test_a_password_session_signs_out_locally(sso, admin_client):
    assert admin_client.post("/logout/")["Location"] == "/login/"
