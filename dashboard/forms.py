"""The dashboard's forms: labelled fields, validation messages an admin can act on."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.validators import validate_slug

from audit_app.queries import APPROVAL_STATUSES, KINDS
from gateway.addresses import UnsafeUpstream, check_upstream_url
from policies_app.core.context import GOVERNED_OPERATIONS
from policies_app.models import Agent, Server


def comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def line_list(value: str) -> list[str]:
    """The distinct non-empty lines of a text field, sorted (resource globs, prompt names)."""
    return sorted({line.strip() for line in value.splitlines() if line.strip()})


class AgentForm(forms.Form):
    name = forms.CharField(max_length=64, validators=[validate_slug],
                           help_text="Letters, digits, - and _. It is how policies name the agent.")
    owner = forms.CharField(max_length=150, required=False,
                            help_text="The person responsible; they may not approve its calls.")
    roles = forms.CharField(required=False, help_text="Comma-separated, e.g. support, tier-1.")
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, existing: Agent | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.existing = existing
        if existing is not None:
            self.fields["name"].disabled = True

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if self.existing is None and Agent.objects.filter(name=name).exists():
            raise forms.ValidationError("An agent with this name already exists.")
        return name

    def agent_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {"owner": data["owner"], "roles": comma_list(data["roles"]), "enabled": data["enabled"]}


class KeyForm(forms.Form):
    label = forms.CharField(max_length=100, required=False,
                            help_text="Where the key will be used, e.g. production bot.")


class ToolReviewForm(forms.Form):
    """Approve (or keep) a tool, or reject it; a rejection must say why."""

    APPROVE, REJECT = "approve", "reject"

    decision = forms.ChoiceField(choices=[(APPROVE, "Approve"), (REJECT, "Reject")])
    comment = forms.CharField(required=False, max_length=2000,
                              widget=forms.Textarea(attrs={"rows": 3, "aria-describedby": "id_comment_help"}),
                              help_text="Why: kept with the decision in the audit trail, for the other admins.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        data["comment"] = (data.get("comment") or "").strip()
        if data.get("decision") == self.REJECT and not data["comment"]:
            self.add_error("comment", "Say why you reject this tool: the comment is required to reject.")
        return data


def domain_packs() -> list[str]:
    try:
        from policies_app.core.packs import available
    except ImportError:
        return []
    return list(available())


class ServerForm(forms.Form):
    name = forms.SlugField(max_length=64, help_text="Agents connect to /mcp/<name>.")
    url = forms.URLField(label="URL", max_length=500, assume_scheme="https",
                         help_text="The Streamable HTTP endpoint, e.g. https://tools.example.com/mcp.")
    credential_header = forms.CharField(max_length=100, required=False, initial="Authorization",
                                        help_text="The header the upstream expects its credential in.")
    credential = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                 help_text="Stored encrypted; never shown again.")
    domain_pack = forms.ChoiceField(required=False, help_text="Default intents, risk model and redaction for its tools.")
    new_tools = forms.ChoiceField(choices=[("pin", "Pin on first use"), ("hold", "Hold until approved")],
                                  initial="pin", label="New tools")
    timeout_seconds = forms.FloatField(initial=30.0, min_value=0.1, max_value=3600, label="Timeout (seconds)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain_pack"].choices = [("", "None")] + [(p, p) for p in domain_packs()]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if Server.objects.filter(name=name).exists():
            raise forms.ValidationError("A server with this name already exists.")
        return name

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            check_upstream_url(url)
        except UnsafeUpstream as exc:
            raise forms.ValidationError(f"This upstream is not allowed: {exc}.") from None
        return url

    def server_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {"url": data["url"], "credential_header": data["credential_header"],
                "domain_pack": data["domain_pack"], "new_tools": data["new_tools"],
                "timeout_seconds": data["timeout_seconds"]}


class CredentialForm(forms.Form):
    credential_header = forms.CharField(max_length=100, initial="Authorization")
    credential = forms.CharField(label="New credential", widget=forms.PasswordInput(render_value=False),
                                 help_text="Replaces the stored one at once for every gateway replica.")


DESCRIPTION_HELP = "Kept with the new policy version and in the audit trail, e.g. Refunds over 500 need a lead (ticket OPS-12)."


class ConfigForm(forms.Form):
    config = forms.CharField(label="Configuration (YAML)", widget=forms.Textarea(attrs={
        "rows": 28, "spellcheck": "false", "autocomplete": "off", "class": "code", "wrap": "off"}))
    # Required: a version that says only "apply" tells the next admin nothing.
    description = forms.CharField(label="What changed and why", max_length=2000, help_text=DESCRIPTION_HELP,
                                  widget=forms.TextInput(attrs={"autocomplete": "off"}))


class AgentRuleForm(forms.Form):
    """A common rule for one agent: allow, deny or escalate an intent, optionally only up to a
    limit on an argument or pack attribute (max_<attribute>)."""

    DECISIONS = [("allow", "Allow"), ("deny", "Deny"), ("escalate", "Escalate to a reviewer")]

    intent = forms.CharField(max_length=200, help_text="An intent or glob, e.g. financial.refund.process or comms.*",
                             widget=forms.TextInput(attrs={"list": "intent-choices", "autocomplete": "off"}))
    decision = forms.ChoiceField(choices=DECISIONS, initial="escalate")
    reviewers = forms.ChoiceField(label="Reviewers", required=False,
                                  help_text="Who decides an escalated call (any one member of the role).")
    timeout = forms.IntegerField(label="Timeout (seconds)", initial=300, min_value=10, max_value=7 * 24 * 3600,
                                 required=False, help_text="An escalated call not decided by then is denied.")
    limit_attribute = forms.SlugField(label="Only up to: attribute", required=False, max_length=64,
                                      help_text="An argument or pack attribute, e.g. amount or recipients.")
    limit = forms.FloatField(label="Maximum", required=False, min_value=0,
                             help_text="Inclusive; a list counts by its length; a missing value fails the rule.")
    reason = forms.CharField(max_length=300, required=False,
                             help_text="What the agent and the reviewer read, e.g. Refunds need a support lead.")
    why = forms.CharField(label="Why", max_length=1000, required=False,
                          help_text="Kept with the new policy version, after a line saying what the rule does.")

    def __init__(self, *args: Any, roles: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reviewers"].choices = [("", "Choose a role"), *((f"role:{r}", r) for r in roles)]

    def clean_intent(self) -> str:
        from policies_app.config import INTENT_GLOB

        intent = self.cleaned_data["intent"].strip()
        if not INTENT_GLOB.fullmatch(intent):
            raise forms.ValidationError("Write an intent such as financial.refund.process, or a glob such as comms.*.")
        return intent

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("decision") == "escalate":
            if not data.get("reviewers"):
                self.add_error("reviewers", "An escalation needs a reviewer role.")
            if data.get("timeout") is None:
                self.add_error("timeout", "An escalation needs a timeout.")
        if bool(data.get("limit_attribute")) != (data.get("limit") is not None):
            self.add_error("limit" if data.get("limit_attribute") else "limit_attribute",
                           "Give both the attribute and its maximum, or neither.")
        return data

    def rule_spec(self) -> dict[str, Any]:
        """The keywords of policies_app.agent_policy.common_rule (without the agent)."""
        data = self.cleaned_data
        escalates = data["decision"] == "escalate"
        return {"intent": data["intent"], "decision": data["decision"],
                "reviewers": [data["reviewers"]] if escalates else [],
                "timeout_seconds": data["timeout"] or 300,
                "limit": (data["limit_attribute"], data["limit"]) if data.get("limit_attribute") else None,
                "reason": data["reason"].strip()}


class SimulateForm(forms.Form):
    OPERATIONS = GOVERNED_OPERATIONS

    agent = forms.ChoiceField()
    server = forms.ChoiceField()
    operation = forms.ChoiceField(label="Operation", choices=list(zip(OPERATIONS, OPERATIONS, strict=True)),
                                  initial="tools/call", required=False, help_text="The MCP request to decide.")
    tool = forms.CharField(label="Tool, URI or prompt", max_length=2000,
                           help_text="Pick a tool from the servers' catalogs, or type a resource URI or prompt name.",
                           widget=forms.TextInput(attrs={"list": "tool-choices", "autocomplete": "off"}))
    arguments = forms.CharField(widget=forms.Textarea(attrs={"rows": 6, "class": "code"}),
                                initial="{}", help_text="A JSON object, as the agent would send it.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = [(a, a) for a in Agent.objects.values_list("name", flat=True)]
        self.fields["server"].choices = [(s, s) for s in Server.objects.values_list("name", flat=True)]

    def clean_operation(self) -> str:
        return self.cleaned_data.get("operation") or "tools/call"

    def clean_arguments(self) -> dict[str, Any]:
        try:
            value = json.loads(self.cleaned_data["arguments"] or "{}")
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("The arguments must be a JSON object.")
        return value


DECISION_CHOICES = [("", "Any decision"), ("allow", "allow"), ("deny", "deny"), ("escalate", "escalate")]


AUDIT_TIME_HELP = "A date (the whole day) or a time, ISO 8601; UTC unless a zone is given."


class AuditSearchForm(forms.Form):
    # Text, not datetime-local: a date alone must stay a date (the whole day), and the zone is
    # the auditor's to state. The audit app parses both (one parser for the API, the command
    # and this form).
    start = forms.CharField(label="From", required=False, help_text=AUDIT_TIME_HELP,
                            widget=forms.TextInput(attrs={"placeholder": "2026-11-22 or 2026-11-22T09:00Z"}))
    end = forms.CharField(label="To", required=False, help_text=AUDIT_TIME_HELP,
                          widget=forms.TextInput(attrs={"placeholder": "2026-11-22 or 2026-11-22T17:30+01:00"}))
    agent = forms.CharField(required=False)
    intent = forms.CharField(required=False, help_text="A glob, e.g. financial.refund.*")
    decision = forms.ChoiceField(choices=DECISION_CHOICES, required=False,
                                 help_text="The call's outcome: deny includes reviewers' denials and expiries")
    server = forms.CharField(required=False)
    tool = forms.CharField(required=False)
    kind = forms.ChoiceField(required=False, choices=[("", "Any kind"), *((k, k) for k in KINDS)])
    approval_status = forms.ChoiceField(label="Approval status", required=False,
                                        choices=[("", "Any status"), *((s, s) for s in APPROVAL_STATUSES)])
    operation = forms.ChoiceField(required=False, choices=[("", "any"), *((op, op) for op in GOVERNED_OPERATIONS)])
    subject = forms.CharField(required=False, help_text="A glob over the tool, URI or prompt, e.g. customers://*")

    def clean_start(self) -> str:
        return self._audit_time("start", "From")

    def clean_end(self) -> str:
        return self._audit_time("end", "To")

    def _audit_time(self, name: str, label: str) -> str:
        from dashboard.backends import audit_time_problem

        value = self.cleaned_data.get(name, "").strip()
        problem = audit_time_problem(value, label)
        if problem:
            raise forms.ValidationError(problem)
        return value

    def filters(self) -> dict[str, Any]:
        data = self.cleaned_data
        found: dict[str, Any] = {}
        if data.get("start"):
            found["from"] = data["start"]
        if data.get("end"):
            found["to"] = data["end"]
        for name in ("agent", "intent", "decision", "server", "tool", "kind", "approval_status", "operation",
                     "subject"):
            if data.get(name):
                found[name] = data[name]
        return found

    def query_string(self, *, without: tuple[str, ...] = ()) -> str:
        """The search in this form's own names (start and end, not the API's from and to), for
        the export, paging and quick-range links, which this form reads back."""
        from urllib.parse import urlencode

        return urlencode({name: value for name, value in self.cleaned_data.items()
                          if value and name not in without})


class ApiTokenForm(forms.Form):
    """A new REST API token for the signed-in user: where it is used, and how long it lives."""

    LIFETIMES = [("7d", "7 days"), ("30d", "30 days"), ("90d", "90 days"), ("180d", "180 days"),
                 ("365d", "365 days")]
    label = forms.CharField(max_length=100, required=False,
                            help_text="Where the token will be used, e.g. nightly export.")
    expires = forms.ChoiceField(choices=LIFETIMES, initial="90d", label="Expires after",
                                help_text="Tokens always expire; issue a new one before this one runs out.")

    def clean_expires(self) -> Any:
        from dashboard.tokens import parse_lifetime

        return parse_lifetime(self.cleaned_data["expires"])
