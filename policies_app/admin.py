"""The Django admin for servers, agents and their keys.

Nothing here writes a row itself. Every save and delete goes through `policies_app.actions`,
the same actions the dashboard, the API and `apply` use: each writes its audit entry and bumps
the configuration stamp inside the admin's transaction, so every gateway process picks the change
up within a second. (The admin wraps each change in its own transaction, so the `write_*` /
`remove_*` forms of the actions are used.)

What has no action is read-only here:
- keys are issued in the dashboard or with `manage.py issue_key` (the secret is shown once);
  a key's label and expiry are set when it is issued. The "revoke" box of a key's row is
  `actions.revoke_key`, and a revoked key stays revoked;
- a server is registered in the dashboard, where its URL is checked (server-side request
  forgery), or in a configuration file. Its URL, command and credential are not edited here.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models, transaction
from django.http import HttpRequest

from policies_app import actions
from policies_app.models import Agent, AgentKey, Server


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


def _fields_to_write(model: type[models.Model], form: forms.ModelForm, *, change: bool) -> list[str]:
    """The model fields this form sets: those changed on an edit, every one on an add."""
    names = {f.name for f in model._meta.concrete_fields} - {"id", "name"}
    return [n for n in (form.changed_data if change else form.fields) if n in names]


def _adopt(obj: models.Model, saved: models.Model) -> None:
    """Make the admin's unsaved object the row the action wrote (the admin logs and redirects
    with it, and builds the inline formsets on it)."""
    obj.pk = saved.pk
    obj._state.adding = False
    obj._state.db = saved._state.db


# --- shapes of the JSON fields (what the snapshot and the decision core read) ----------------


def _string_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise forms.ValidationError(f"Must be a list of {what}.")
    return value


def _scope(value: Any, *, names: str, everything: bool = True) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise forms.ValidationError(f'Must map server names to a list of {names}' +
                                    (' or "*".' if everything else "."))
    for server, allowed in value.items():
        if everything and allowed == "*":
            continue
        try:
            _string_list(allowed, names)
        except forms.ValidationError:
            raise forms.ValidationError(
                f'Server {server!r}: must be a list of {names}' + (' or "*".' if everything else ".")
            ) from None
    return value


def _intents(value: Any, subjects: str) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()
    ):
        raise forms.ValidationError(f"Must map {subjects} to intents (strings).")
    return value


# --- servers -----------------------------------------------------------------------------------


SERVER_EDITABLE = ["credential_header", "domain_pack", "tool_intents", "resource_intents", "prompt_intents",
                   "new_tools", "timeout_seconds", "connect_timeout_seconds"]


class ServerAdminForm(forms.ModelForm):
    class Meta:
        model = Server
        fields = SERVER_EDITABLE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "domain_pack" in self.fields:
            from policies_app.core.packs import available

            packs = available()
            current = self.instance.domain_pack if self.instance else ""
            if current and current not in packs:
                packs.append(current)
            self.fields["domain_pack"] = forms.ChoiceField(
                choices=[("", "None")] + [(p, p) for p in packs], required=False,
                help_text="Default intents, risk model and redaction for its tools.",
            )

    def clean_tool_intents(self) -> dict[str, str]:
        return _intents(self.cleaned_data.get("tool_intents"), "tool names")

    def clean_resource_intents(self) -> dict[str, str]:
        return _intents(self.cleaned_data.get("resource_intents"), "resource URI globs")

    def clean_prompt_intents(self) -> dict[str, str]:
        return _intents(self.cleaned_data.get("prompt_intents"), "prompt names")

    def clean_timeout_seconds(self) -> float:
        return _positive(self.cleaned_data.get("timeout_seconds"))

    def clean_connect_timeout_seconds(self) -> float:
        return _positive(self.cleaned_data.get("connect_timeout_seconds"))


def _positive(value: Any) -> float:
    if value is None or not 0 < value <= 3600:
        raise forms.ValidationError("Must be more than 0 and at most 3600 seconds.")
    return value


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    form = ServerAdminForm
    list_display = ["name", "url", "domain_pack", "new_tools", "timeout_seconds"]
    search_fields = ["name", "url"]
    fields = ["name", "url", "command", "credential_header", "credential_env", "credential_stored",
              "domain_pack", "tool_intents", "resource_intents", "prompt_intents", "new_tools",
              "timeout_seconds", "connect_timeout_seconds", "created_at", "updated_at"]
    readonly_fields = ["name", "url", "command", "credential_env", "credential_stored", "created_at",
                       "updated_at"]

    @admin.display(boolean=True, description="credential stored")
    def credential_stored(self, obj: Server) -> bool:
        return bool(obj.credential_encrypted)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # registered in the dashboard (URL checked) or in a configuration file

    def save_model(self, request: HttpRequest, obj: Server, form: forms.ModelForm, change: bool) -> None:
        fields = {name: getattr(obj, name) for name in _fields_to_write(Server, form, change=change)}
        if change and not fields:
            return
        _adopt(obj, actions.write_server(acting_user=_actor(request), name=obj.name, **fields))

    def delete_model(self, request: HttpRequest, obj: Server) -> None:
        actions.remove_server(acting_user=_actor(request), name=obj.name)

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet[Server]) -> None:
        with transaction.atomic():
            for name in list(queryset.values_list("name", flat=True)):
                actions.remove_server(acting_user=_actor(request), name=name)


# --- agents and their keys -------------------------------------------------------------------


class AgentKeyForm(forms.ModelForm):
    revoke = forms.BooleanField(
        required=False, help_text="Refused at the agent's next call, on every gateway replica.",
    )

    class Meta:
        model = AgentKey
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.revoked_at is not None:
            self.fields["revoke"].initial = True
            self.fields["revoke"].disabled = True  # a revoked key stays revoked


class AgentKeyInline(admin.TabularInline):
    model = AgentKey
    form = AgentKeyForm
    extra = 0
    can_delete = False
    verbose_name_plural = "keys (issue new ones in the dashboard or with manage.py issue_key)"
    fields = ["prefix", "label", "created_at", "last_used_at", "expires_at", "revoked_at", "revoked_by", "revoke"]
    readonly_fields = ["prefix", "label", "created_at", "last_used_at", "expires_at", "revoked_at", "revoked_by"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # actions.issue_key: the secret is shown once, which this form cannot do


class AgentAdminForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = ["name", "owner", "roles", "tool_scope", "resource_scope", "prompt_scope", "oauth_client", "enabled"]

    def clean_roles(self) -> list[str]:
        return _string_list(self.cleaned_data.get("roles") or [], "role names")

    def clean_tool_scope(self) -> dict[str, Any]:
        return _scope(self.cleaned_data.get("tool_scope"), names="tool names")

    def clean_resource_scope(self) -> dict[str, Any]:
        return _scope(self.cleaned_data.get("resource_scope"), names="resource URI globs", everything=False)

    def clean_prompt_scope(self) -> dict[str, Any]:
        return _scope(self.cleaned_data.get("prompt_scope"), names="prompt names")


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentAdminForm
    list_display = ["name", "owner", "enabled", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["name", "owner"]
    inlines = [AgentKeyInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Agent | None = None) -> list[str]:
        # The actions know an agent by its name: renaming would create another agent.
        return ["name", "created_at"] if obj is not None else ["created_at"]

    def save_model(self, request: HttpRequest, obj: Agent, form: forms.ModelForm, change: bool) -> None:
        fields = {name: getattr(obj, name) for name in _fields_to_write(Agent, form, change=change)}
        if change and not fields:
            return  # only keys changed (save_formset)
        _adopt(obj, actions.write_agent(acting_user=_actor(request), name=obj.name, **fields))

    def save_formset(self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool) -> None:
        if formset.model is not AgentKey:
            raise TypeError(f"no action saves {formset.model.__name__} from the agent admin")
        revoked: list[tuple[AgentKey, list[str]]] = []
        for key_form in formset.initial_forms:
            if not key_form.cleaned_data.get("revoke") or "revoke" not in key_form.changed_data:
                continue
            key = AgentKey.objects.select_for_update().select_related("agent").filter(
                pk=key_form.instance.pk, agent=form.instance, revoked_at__isnull=True
            ).first()
            if key is not None:
                actions.write_key_revocation(acting_user=_actor(request), key=key)
                revoked.append((key, ["revoke"]))
        # what the admin's history message reads (formset.save() would have set these)
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], revoked, []

    def delete_model(self, request: HttpRequest, obj: Agent) -> None:
        actions.remove_agent(acting_user=_actor(request), name=obj.name)

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet[Agent]) -> None:
        with transaction.atomic():
            for name in list(queryset.values_list("name", flat=True)):
                actions.remove_agent(acting_user=_actor(request), name=name)
