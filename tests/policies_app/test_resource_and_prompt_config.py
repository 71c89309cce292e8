"""Resources and prompts as code: a server's `resources:` and `prompts:` intent maps and an
agent's `resources:` and `prompts:` scopes are validated, planned, applied and exported like
`tools:`; an omitted map admits nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from intended import globs
from policies_app import actions, config
from policies_app.config import ConfigError, Known
from policies_app.models import Agent, Server

ROOT = Path(__file__).resolve().parents[2]
ENV = {"CUSTOMER_OPS_TOKEN": "s3cret"}

CONFIG = """\
servers:
  - name: customer-ops
    url: http://127.0.0.1:9000/mcp
    domain_pack: saas-ops
    tools:
      process_refund: financial.refund.process
    resources:
      "orders://*": data.order.read
      "customers://*": data.customer.read
    prompts:
      refund_letter: comms.email.draft
      apology: comms.email.draft
agents:
  - name: support-agent
    tools: {customer-ops: [get_customer]}
    resources: {customer-ops: ["customers://*", "customers://*"]}
    prompts: {customer-ops: [refund_letter, apology]}
  - name: prompt-agent
    prompts: {customer-ops: "*"}
  - name: lookup-agent
    tools: {customer-ops: [get_customer]}
"""


def apply(text: str, **kwargs):
    return actions.apply_config(text, acting_user="tester", environ=ENV, **kwargs)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.load(text, Known(), environ=ENV)
    return caught.value.errors


@pytest.mark.django_db
def test_it_applies_resources_and_prompts_and_plans_each_intent():
    plan = apply(CONFIG)
    text = str(plan)
    for line in ("+ resource_intent customer-ops/orders://* (data.order.read)",
                 "+ resource_intent customer-ops/customers://* (data.customer.read)",
                 "+ prompt_intent customer-ops/refund_letter (comms.email.draft)"):
        assert line in text
    server = Server.objects.get(name="customer-ops")
    assert server.resource_intents == {"customers://*": "data.customer.read", "orders://*": "data.order.read"}
    assert server.prompt_intents == {"apology": "comms.email.draft", "refund_letter": "comms.email.draft"}
    scopes = {a.name: (a.resource_scope, a.prompt_scope) for a in Agent.objects.all()}
    assert scopes == {
        "support-agent": ({"customer-ops": ["customers://*"]}, {"customer-ops": ["apology", "refund_letter"]}),
        "prompt-agent": ({}, {"customer-ops": "*"}),
        "lookup-agent": ({}, {}),  # omitted: no resource and no prompt
    }
    assert str(apply(CONFIG)) == "no changes"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "old, new, expected",
    [
        ('"customers://*": data.customer.read', '"customers://*": data.customer.lookup',
         "~ resource_intent customer-ops/customers://* (data.customer.read -> data.customer.lookup)"),
        ("      apology: comms.email.draft\n", "",
         "- prompt_intent customer-ops/apology (comms.email.draft)"),
        ('      "orders://*": data.order.read\n', '',
         "- resource_intent customer-ops/orders://* (data.order.read)"),
        ('      "orders://*": data.order.read\n', '      "orders://*": data.order.read\n      "notes://*": data.notes.read\n',
         "+ resource_intent customer-ops/notes://* (data.notes.read)"),
        ('resources: {customer-ops: ["customers://*", "customers://*"]}', 'resources: {customer-ops: ["customers://c-*"]}',
         "~ agent support-agent (resource_scope)"),
        ('prompts: {customer-ops: "*"}', "prompts: {customer-ops: [refund_letter]}",
         "~ agent prompt-agent (prompt_scope)"),
        ("    prompts: {customer-ops: [refund_letter, apology]}\n", "",
         "~ agent support-agent (prompt_scope)"),
    ],
)
def test_it_plans_and_applies_each_change(old, new, expected):
    apply(CONFIG)
    assert old in CONFIG
    changed = CONFIG.replace(old, new)
    plan = apply(changed)
    assert expected in str(plan).splitlines(), str(plan)
    assert plan.applied
    assert str(apply(changed)) == "no changes"


@pytest.mark.django_db
def test_it_ignores_the_order_of_resource_globs():
    apply(CONFIG)
    swapped = CONFIG.replace('      "orders://*": data.order.read\n      "customers://*": data.customer.read\n',
                             '      "customers://*": data.customer.read\n      "orders://*": data.order.read\n')
    assert swapped != CONFIG
    assert str(apply(swapped)) == "no changes"


@pytest.mark.django_db
def test_it_exports_resources_and_prompts_and_reapplies_the_export_as_no_change():
    apply(CONFIG)
    exported = actions.export_config()
    data = yaml.safe_load(exported)
    [server] = data["servers"]
    assert server["resources"] == {"customers://*": "data.customer.read", "orders://*": "data.order.read"}
    assert server["prompts"] == {"apology": "comms.email.draft", "refund_letter": "comms.email.draft"}
    agents = {a["name"]: a for a in data["agents"]}
    assert agents["support-agent"]["resources"] == {"customer-ops": ["customers://*"]}
    assert agents["support-agent"]["prompts"] == {"customer-ops": ["apology", "refund_letter"]}
    assert agents["prompt-agent"]["prompts"] == {"customer-ops": "*"}
    # empty maps are left out
    assert "resources" not in agents["lookup-agent"] and "prompts" not in agents["lookup-agent"]
    assert "resources" not in agents["prompt-agent"]
    assert str(apply(exported)) == "no changes"


@pytest.mark.django_db
def test_it_leaves_servers_without_resources_or_prompts_out_of_the_export():
    apply("servers:\n  - name: plain\n    url: http://127.0.0.1:9000/mcp\n")
    [server] = yaml.safe_load(actions.export_config())["servers"]
    assert "resources" not in server and "prompts" not in server


@pytest.mark.django_db
def test_it_applies_the_demo_configuration_with_resource_and_prompt_scopes():
    text = (ROOT / "gateway" / "demo" / "customer-ops.yaml").read_text()
    apply(text.replace("${DEMO_UPSTREAM_URL}", "http://127.0.0.1:9000/mcp"))
    scopes = {a.name: (a.resource_scope, a.prompt_scope) for a in Agent.objects.all()}
    assert scopes == {
        "support-agent": ({"customer-ops": ["customers://*"]}, {"customer-ops": ["refund_letter"]}),
        "lookup-agent": ({"customer-ops": ["customers://*"]}, {}),
        "analytics-agent": ({}, {}),
    }



@pytest.mark.django_db
@pytest.mark.parametrize(
    "agent, operation, subject, decision, intent",
    [
        ("support-agent", "resources/read", "customers://cus_1001", "allow", "data.customer.read"),
        ("lookup-agent", "resources/read", "customers://cus_1001", "allow", "data.customer.read"),
        ("analytics-agent", "resources/read", "customers://cus_1001", "deny", "data.customer.read"),  # no resources
        ("support-agent", "prompts/get", "refund_letter", "allow", "comms.email.draft"),
        ("lookup-agent", "prompts/get", "refund_letter", "deny", "comms.email.draft"),  # no prompts
        ("support-agent", "prompts/get", "refund_review", "deny", "mcp.customer-ops.prompt.get"),  # not in its scope
    ],
)
def test_it_decides_the_demo_resources_and_prompts(agent, operation, subject, decision, intent):
    from policies_app.simulation import simulate

    text = (ROOT / "gateway" / "demo" / "customer-ops.yaml").read_text()
    apply(text.replace("${DEMO_UPSTREAM_URL}", "http://127.0.0.1:9000/mcp"))
    result = simulate(agent, "customer-ops", subject, {"customer_id": "cus_1001", "amount": "20.00"}, operation=operation)
    assert (result["decision"], result["intent"]) == (decision, intent), result["reason"]


SERVER = "servers:\n  - name: s1\n    url: http://h/mcp\n"
AGENT = SERVER + "agents:\n  - name: a1\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        (SERVER + "    resources: [customers://*]\n",
         "line 4: servers[0].resources must map resource URI globs to intents"),
        (SERVER + "    resources: {'customers://*': Not An Intent}\n",
         "line 4: servers[0].resources.customers://* must be a dotted intent such as financial.refund.process, got 'Not An Intent'"),
        (SERVER + "    resources:\n      'customers://*': data.customer.read\n      'orders://*': [data.order.read]\n",
         "line 6: servers[0].resources.orders://* must be a non-empty string"),
        (SERVER + "    resources:\n      'customers://*': data.customer.read\n      '': data.customer.read\n",
         "line 6: servers[0].resources has an empty key: it must map resource URI globs to intents"),
        (SERVER + "    resources:\n      'customers://*': data.customer.read\n      'customers://vip-*': data.customer.vip.read\n",
         "line 6: servers[0].resources.customers://vip-* overlaps 'customers://*' (line 5), which has the intent "
         "data.customer.read: a URI that both match would have two intents"),
        (SERVER + "    resources:\n      'c://*-archive': data.archive.read\n      'c://2024-*': data.customer.read\n",
         "line 6: servers[0].resources.c://2024-* overlaps 'c://*-archive' (line 5)"),
        (SERVER + "    prompts: refund_letter\n",
         "line 4: servers[0].prompts must map prompt names to intents"),
        (SERVER + "    prompts:\n      refund_letter: comms..draft\n",
         "line 5: servers[0].prompts.refund_letter must be a dotted intent"),
        (SERVER + "    resource: {'customers://*': data.customer.read}\n",
         "line 4: servers[0].resource is not a known key"),
        (AGENT + "    resources: {s1: 'customers://*'}\n",
         "line 6: agents[0].resources.s1 must be a list of resource URI globs ([\"*\"] admits every one), got 'customers://*'"),
        (AGENT + "    resources: {s1: '*'}\n",
         "line 6: agents[0].resources.s1 must be a list of resource URI globs"),
        (AGENT + "    resources:\n      s1:\n        - customers://*\n        - 7\n",
         "line 9: agents[0].resources.s1[1] must be a non-empty string"),
        (AGENT + "    resources: {ghost: ['customers://*']}\n",
         "line 6: agents[0].resources.ghost names the server 'ghost', which is not defined"),
        (AGENT + "    resources: [customers://*]\n",
         "line 6: agents[0].resources must map server names to a list of resource URI globs"),
        (AGENT + "    prompts: [refund_letter]\n",
         'line 6: agents[0].prompts must map server names to a list of prompts or "*"'),
        (AGENT + "    prompts: {s1: refund_letter}\n",
         "line 6: agents[0].prompts.s1 must be a list"),
        (AGENT + "    prompts: {ghost: '*'}\n",
         "line 6: agents[0].prompts.ghost names the server 'ghost', which is not defined"),
        (AGENT + "    prompts:\n      s1: ['']\n",
         "line 7: agents[0].prompts.s1[0] must be a non-empty string"),
    ],
)
def test_it_names_the_line_of_each_resource_or_prompt_error(text, expected):
    errors = errors_of(text)
    assert any(e.startswith(expected) for e in errors), errors


@pytest.mark.parametrize(
    "resources",
    [
        {"customers://*": "data.customer.read", "customers://vip-*": "data.customer.read"},  # the same intent
        {"customers://*": "data.customer.read", "orders://*": "data.order.read"},
        {"c://a*": "x.a", "c://b*": "x.b", "c://a*z": "x.a"},  # c://a*z is inside c://a*, with its intent
    ],
)
def test_it_accepts_resource_globs_that_cannot_give_a_uri_two_intents(resources):
    body = "".join(f"      '{glob}': {intent}\n" for glob, intent in resources.items())
    desired = config.load(SERVER + "    resources:\n" + body, Known(), environ=ENV)
    assert desired.servers is not None
    assert desired.servers["s1"]["resource_intents"] == dict(sorted(resources.items()))


@pytest.mark.parametrize(
    "a, b, overlap",
    [("customers://*", "customers://vip-*", True), ("customers://*", "orders://*", False),
     ("a*b", "b*a", False), ("*x", "x*", True), ("*", "", True), ("abc", "abc", True), ("abc", "abd", False),
     ("aaaa*", "*baaa", True)],
)
def test_it_knows_when_two_globs_can_match_one_uri(a, b, overlap):
    assert globs.overlap(a, b) is overlap
    assert globs.overlap(b, a) is overlap


@pytest.mark.parametrize(
    "prompts, expected",
    [("'*'", "*"), ("['*']", "*"), ("[b, a, b]", ["a", "b"]), ("[]", [])],
)
def test_it_normalizes_a_prompt_scope(prompts, expected):
    desired = config.load(AGENT + f"    prompts: {{s1: {prompts}}}\n", Known(), environ=ENV)
    assert desired.agents is not None
    assert desired.agents["a1"]["prompt_scope"] == {"s1": expected}
    assert desired.agents["a1"]["resource_scope"] == {}


def test_it_checks_servers_in_scopes_against_the_live_state_when_the_file_leaves_servers_out():
    desired = config.load("agents:\n  - name: a1\n    resources: {live: ['x://*']}\n    prompts: {live: '*'}\n",
                          Known(servers={"live"}), environ=ENV)
    assert desired.agents is not None
    assert desired.agents["a1"]["resource_scope"] == {"live": ["x://*"]}
    assert errors_of("agents:\n  - name: a1\n    resources: {live: ['x://*']}\n")
