"""Policies: the YAML configuration with line-numbered errors before saving, versions with
diff and rollback, the simulator, velocity rules and reviewers."""

from __future__ import annotations

import difflib
from typing import Any
from urllib.parse import urlencode

import yaml
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from dashboard import backends, roles
from dashboard.forms import AgentRuleForm, ConfigForm, SimulateForm
from dashboard.views.agents import actor


def sections(text: str) -> dict[str, list[Any]]:
    """The parts of a config an admin scans: policies, velocity rules and reviewers."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: data.get(key) or [] for key in ("policies", "velocity_rules", "reviewers")}


def rule_rows(document: dict[str, list[Any]]) -> dict[str, list[tuple[str, Any]]]:
    """Each policy and velocity rule with its stable name, as the decisions will cite it."""
    from policies_app.core.rules import rule_names

    rows: dict[str, list[tuple[str, Any]]] = {}
    for section, kind in (("policies", "policy"), ("velocity_rules", "velocity")):
        rules = [r for r in document.get(section, []) if isinstance(r, dict) and r.get("intent")]
        try:
            rows[section] = list(zip(rule_names(kind, rules), rules, strict=True))
        except (KeyError, TypeError, ValueError):  # a rule the validator will refuse: no name yet
            rows[section] = [("", r) for r in rules]
    return rows


def numbered(text: str, problems: list[backends.ConfigProblem]) -> list[tuple[int, str, bool]]:
    bad = {p.line for p in problems if p.line}
    return [(i, line, i in bad) for i, line in enumerate(text.splitlines(), start=1)]


def policies_page(request: HttpRequest, *, form: ConfigForm, problems: list[backends.ConfigProblem],
                  agent_name: str = "", rule_form: AgentRuleForm | None = None, validated: bool = False,
                  status: int = 200) -> HttpResponse:
    """The editor beside the policy of one agent (?agent=NAME), with the forms for its common rules."""
    shown = form.data.get("config", "") if form.is_bound else form.initial["config"]
    found = sections(shown)
    agent_name = agent_name or request.GET.get("agent", "")
    agent, agent_rules = backends.agent_policy(agent_name) if agent_name else (None, [])
    return render(request, "dashboard/policies.html", {
        "form": form, "problems": problems, "validated": validated, "sections": found, "rules": rule_rows(found),
        "lines": numbered(shown, problems), "agents": backends.agent_names(), "agent_name": agent_name,
        "agent": agent, "agent_rules": agent_rules,
        "rule_form": rule_form or AgentRuleForm(roles=backends.reviewer_roles()),
        "intents": backends.policy_intents() if agent else [],
    }, status=status)


@roles.admin_required
def policy_list(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return policies_page(request, form=ConfigForm(initial={"config": backends.export_config()}), problems=[])
    form = ConfigForm(request.POST)
    if not form.is_valid():  # no description: say so, and show the text's own problems too
        return policies_page(request, form=form, problems=backends.validate_config(form.data.get("config", "")),
                             status=400)
    problems = backends.apply_config(form.cleaned_data["config"], acting_user=actor(request),
                                     description=form.cleaned_data["description"])
    if problems:
        return policies_page(request, form=form, problems=problems, status=400)
    messages.success(request, "Configuration applied. Policy changes are a new version.")
    return redirect(request.get_full_path())


@roles.admin_required
@require_POST
def agent_rule_add(request: HttpRequest, name: str) -> HttpResponse:
    """A common rule for one agent, stored as a new policy version (validated and audited like
    the editor's); then back to that agent's policy (Post/Redirect/Get)."""
    if name not in backends.agent_names():
        raise Http404("No such agent")
    rule_form = AgentRuleForm(request.POST, roles=backends.reviewer_roles())
    here = f"{reverse('dashboard:policies')}?{urlencode({'agent': name})}"
    editor = ConfigForm(initial={"config": backends.export_config()})
    if not rule_form.is_valid():
        return policies_page(request, form=editor, problems=[], agent_name=name, rule_form=rule_form, status=400)
    number, refused = backends.add_agent_rule(acting_user=actor(request), agent=name, why=rule_form.cleaned_data["why"],
                                              **rule_form.rule_spec())
    if refused:
        for problem in refused:
            rule_form.add_error(None, problem)
        return policies_page(request, form=editor, problems=[], agent_name=name, rule_form=rule_form, status=400)
    if number is None:
        messages.info(request, "That rule is already live: nothing changed.")
    else:
        messages.success(request, f"Rule added for {name}: policy version {number} is live.")
    return redirect(here + "#agent-policy")


@roles.admin_required
@require_POST
def policy_validate(request: HttpRequest) -> HttpResponse:
    """The problems of the text in the editor, each at its line, before saving: the list alone
    for htmx, the whole editor without JavaScript ("Check" posts here); nothing is applied."""
    text = request.POST.get("config", "")
    problems = backends.validate_config(text)
    if request.headers.get("HX-Request"):
        return render(request, "dashboard/_problems.html", {"problems": problems, "validated": True})
    form = ConfigForm(initial={"config": text, "description": request.POST.get("description", "")})
    return policies_page(request, form=form, problems=problems, validated=True, status=400 if problems else 200)


def version_rows(old: str, new: str) -> list[str]:
    return list(difflib.unified_diff(old.splitlines(), new.splitlines(), "previous", "this version",
                                     lineterm=""))


@roles.admin_required
def version_list(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/policy_versions.html", {"versions": backends.policy_versions()})


@roles.admin_required
def version_detail(request: HttpRequest, number: int) -> HttpResponse:
    version = backends.policy_version(number)
    previous = backends.policy_version(number - 1) if number > 1 else None
    if version is None:
        raise Http404("No such version")
    if request.method == "POST":
        created = backends.rollback(version, acting_user=actor(request))
        if created is None:
            messages.info(request, f"Version {number} is already what is live: nothing changed.")
        else:
            messages.success(request, f"Rolled back to version {number}: it is live again as version {created}.")
        return redirect("dashboard:policy-versions")
    old = backends.version_text(previous) if previous is not None else ""
    return render(request, "dashboard/policy_version.html", {
        "version": version, "diff": version_rows(old, backends.version_text(version)),
        "text": backends.version_text(version),
    })


@roles.admin_required
def simulator(request: HttpRequest) -> HttpResponse:
    form = SimulateForm(request.POST or None)
    result: dict[str, Any] | None = None
    error = ""
    if request.method == "POST" and form.is_valid():
        try:
            result = backends.simulate(**form.cleaned_data)
        except Exception as exc:  # an unknown tool, a bad argument: say so, decide nothing
            error = str(exc) or type(exc).__name__
    elif form.errors:
        error = " ".join(f"{form[name].label}: {' '.join(errs)}" for name, errs in form.errors.items())
    template = "dashboard/_simulation.html" if request.headers.get("HX-Request") else "dashboard/simulate.html"
    return render(request, template, {"form": form, "result": result, "error": error,
                                      "tools": backends.simulator_tools()},
                  status=400 if form.errors else 200)
