from __future__ import annotations

import sys

import pytest
from django.conf import settings
from django.test import Client

from gateway import operations
from policies_app import actions
from tests.support.processes import free_port, running


@pytest.fixture(autouse=True)
def fresh_caches():
    # Each test flushes the database; a snapshot cached by the one before would otherwise
    # keep its servers (and their upstream probes) for up to a poll interval.
    from policies_app.snapshots import snapshots

    snapshots.invalidate()
    operations._upstream_cache.update(at=0.0, generation=None, checks={})
    yield
    snapshots.invalidate()
    operations._upstream_cache.update(at=0.0, generation=None, checks={})


@pytest.fixture
def live_upstream():
    """A real HTTP server standing in for an upstream: readiness only needs an answer."""
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with running(argv, port):
        yield f"http://127.0.0.1:{port}/mcp"


def test_it_is_alive_without_touching_anything():
    # no database marker: /healthz must not need the database
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db(transaction=True)
def test_it_reports_each_dependency_to_an_operator(live_upstream):
    actions.save_server(acting_user="alice", name="customer-ops", url=live_upstream)
    actions.save_server(acting_user="alice", name="gone", url=f"http://127.0.0.1:{free_port()}/mcp")
    actions.save_server(acting_user="alice", name="local-tool", command=["no-such-binary-xyz", "serve"])

    body = Client().get("/readyz").json()

    assert body["checks"]["database"]["ok"] is True
    assert body["upstreams"]["customer-ops"]["ok"] is True
    assert body["upstreams"]["gone"]["ok"] is False
    assert "ConnectError" in body["upstreams"]["gone"]["detail"]
    assert body["upstreams"]["local-tool"] == {"ok": False, "ms": body["upstreams"]["local-tool"]["ms"],
                                               "detail": "FileNotFoundError: command not found: no-such-binary-xyz"}


@pytest.mark.django_db(transaction=True)
def test_it_tells_a_stranger_the_status_alone(live_upstream):
    actions.save_server(acting_user="alice", name="customer-ops", url=live_upstream)
    body = Client(REMOTE_ADDR="198.51.100.7").get("/readyz").json()
    assert set(body) == {"status"}


@pytest.fixture
def key_dir(settings, tmp_path):
    settings.INTENDED_SIGNING_KEY_DIR = tmp_path / "signing-keys"
    return settings.INTENDED_SIGNING_KEY_DIR


@pytest.mark.django_db(transaction=True)
def test_it_is_degraded_not_unready_when_an_upstream_is_down(key_dir):
    actions.save_server(acting_user="alice", name="gone", url=f"http://127.0.0.1:{free_port()}/mcp")
    report = Client().get("/readyz")
    assert report.status_code == 200
    assert report.json()["status"] == "degraded"


@pytest.mark.django_db(transaction=True)
def test_it_is_ready_with_a_signing_key_or_a_place_for_the_first_one(key_dir):
    from audit_app import keys

    before = Client().get("/readyz").json()["checks"]["signing_key"]
    assert before["ok"] is True and "first seal" in before["detail"]
    key = keys.create_key()
    after = Client().get("/readyz").json()
    assert after["status"] == "ready"
    assert after["checks"]["signing_key"]["detail"] == f"signing with {key.verifier.key_id.hex()}"


@pytest.mark.django_db(transaction=True)
def test_it_is_unready_when_the_signing_keys_are_out_of_reach(settings):
    settings.INTENDED_SIGNING_KEY_DIR = "/proc/no-such-dir/signing-keys"
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["signing_key"]["ok"] is False


@pytest.mark.skipif(not settings.REDIS_URL, reason="REDIS_URL is not set")
@pytest.mark.django_db(transaction=True)
def test_it_checks_redis_when_configured():
    assert Client().get("/readyz").json()["checks"]["redis"]["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_it_is_unready_when_redis_is_down(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["ok"] is False
