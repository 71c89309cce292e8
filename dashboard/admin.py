"""People in the Django admin: read-only. Users, their roles (groups) and their API tokens change
through `dashboard.actions` (the dashboard, `create_user`, `api_token`), which write an audit
entry; the admin's own forms would not."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.http import HttpRequest


class ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyUserAdmin(ReadOnly, UserAdmin):  # type: ignore[misc]
    pass


class ReadOnlyGroupAdmin(ReadOnly, GroupAdmin):  # type: ignore[misc]
    pass


for model, model_admin in ((User, ReadOnlyUserAdmin), (Group, ReadOnlyGroupAdmin)):
    admin.site.unregister(model)
    admin.site.register(model, model_admin)
