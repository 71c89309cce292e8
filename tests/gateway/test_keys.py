"""Keys and agents that stop being valid: the running gateway notices within its
configuration poll, and refuses them with 401 before anything reaches the upstream."""

from __future__ import annotations

from datetime import timedelta

from tests.gateway.conftest import World
from tests.gateway.test_door import error_of, eventually, ping, post, untouched


def test_it_refuses_revoked_and_expired_keys_and_disabled_agents(world: World) -> None:
    from policies_app import actions
    from policies_app.models import Agent, AgentKey

    key, rotated = actions.issue_key(acting_user="tests", agent=Agent.objects.get(name="alice"))
    eventually(lambda: post(world, ping(), rotated).status_code not in (401, 403))  # reached the upstream
    eventually(lambda: AgentKey.objects.get(pk=key.pk).last_used_at is not None)  # written in the background
    actions.revoke_key(acting_user="tests", key=key)
    # a change reaches the gateway with its next configuration poll: count from then on
    eventually(lambda: post(world, ping(), rotated).status_code == 401)
    before = world.upstream.count()
    response = post(world, ping(), rotated)
    assert response.headers["www-authenticate"].startswith("Bearer")
    untouched(world, before)
    refuses_an_expired_key_and_a_disabled_agent(world)


def refuses_an_expired_key_and_a_disabled_agent(world: World) -> None:
    from django.db import transaction
    from django.utils import timezone

    from policies_app import actions
    from policies_app.models import AgentKey, ConfigStamp

    with transaction.atomic():
        prefix = world.keys["mallory"].split("_")[1]
        AgentKey.objects.filter(prefix=prefix).update(expires_at=timezone.now() - timedelta(minutes=1))
        ConfigStamp.bump()
    actions.save_agent(acting_user="tests", name="alice", enabled=False)
    eventually(lambda: post(world, ping(), world.keys["alice"]).status_code == 401)
    before = world.upstream.count()
    assert "expired" in error_of(post(world, ping(), world.keys["mallory"]))["message"]
    assert "disabled" in error_of(post(world, ping(), world.keys["alice"]))["message"]
    untouched(world, before)
