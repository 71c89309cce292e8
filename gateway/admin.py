from __future__ import annotations

from django.contrib import admin

from gateway.models import Agent, AgentKey, Server


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "domain_pack", "new_tools", "timeout_seconds"]
    search_fields = ["name", "url"]


class AgentKeyInline(admin.TabularInline):
    model = AgentKey
    extra = 0
    fields = ["prefix", "label", "created_at", "last_used_at", "revoked_at", "expires_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "enabled", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["name", "owner"]
    inlines = [AgentKeyInline]
