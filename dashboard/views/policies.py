"""Policies: the YAML configuration with line-numbered errors before saving, versions with
diff and rollback, the simulator, velocity rules and reviewers."""

from __future__ import annotations

import difflib
from typing import Any

import yaml
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from dashboard import backends, roles
from dashboard.forms import ConfigForm, SimulateForm
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


@roles.admin_required
def policy_list(request: HttpRequest) -> HttpResponse:
    text = backends.export_config()
    problems: list[backends.ConfigProblem] = []
    form = ConfigForm(request.POST or None, initial={"config": text})
    status = 200
    if request.method == "POST" and form.is_valid():
        problems = backends.apply_config(form.cleaned_data["config"], acting_user=actor(request))
        if not problems:
            messages.success(request, "Configuration applied. Policy changes are a new version.")
            return redirect("dashboard:policies")
        status = 400
    shown = form.data.get("config", text) if form.is_bound else text
    return render(request, "dashboard/policies.html", {
        "form": form, "problems": problems,
        "sections": sections(shown), "lines": numbered(shown, problems),
    }, status=status)


def numbered(text: str, problems: list[backends.ConfigProblem]) -> list[tuple[int, str, bool]]:
    bad = {p.line for p in problems if p.line}
    return [(i, line, i in bad) for i, line in enumerate(text.splitlines(), start=1)]


@roles.admin_required
@require_POST
def policy_validate(request: HttpRequest) -> HttpResponse:
    """htmx: the problems of the text in the editor, each at its line, before saving."""
    text = request.POST.get("config", "")
    return render(request, "dashboard/_problems.html", {"problems": backends.validate_config(text),
                                                         "validated": True})


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
        error = " ".join(f"{form.fields[name].label or name}: {' '.join(errs)}"
                         for name, errs in form.errors.items())
    template = "dashboard/_simulation.html" if request.headers.get("HX-Request") else "dashboard/simulate.html"
    return render(request, template, {"form": form, "result": result, "error": error},
                  status=400 if form.errors else 200)
