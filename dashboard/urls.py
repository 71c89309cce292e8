from __future__ import annotations

from django.urls import path

from dashboard.views import account, agents, audit, overview, policies, servers, sso, tokens

app_name = "dashboard"

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("login/", account.login, name="login"),
    path("logout/", account.logout, name="logout"),
    path("time-zone/", account.time_zone, name="time-zone"),
    path("oidc/authenticate/", sso.Begin.as_view(), name="oidc-authenticate"),
    path("oidc/callback/", sso.Finish.as_view(), name="oidc-callback"),
    path("tokens/", tokens.token_list, name="tokens"),
    path("tokens/<str:prefix>/revoke/", tokens.token_revoke, name="token-revoke"),
    path("agents/", agents.agent_list, name="agents"),
    path("agents/<slug:name>/", agents.agent_detail, name="agent"),
    path("agents/<slug:name>/toggle/", agents.agent_toggle, name="agent-toggle"),
    path("agents/<slug:name>/scope/", agents.agent_scope, name="agent-scope"),
    path("agents/<slug:name>/keys/", agents.key_issue, name="key-issue"),
    path("agents/<slug:name>/keys/<str:prefix>/revoke/", agents.key_revoke, name="key-revoke"),
    path("servers/", servers.server_list, name="servers"),
    path("servers/<slug:name>/", servers.server_detail, name="server"),
    path("servers/<slug:name>/test/", servers.server_test, name="server-test"),
    path("servers/<slug:name>/credential/", servers.server_credential, name="server-credential"),
    path("servers/<slug:name>/tools/<str:tool>/", servers.tool_review, name="tool-review"),
    path("policies/", policies.policy_list, name="policies"),
    path("policies/validate/", policies.policy_validate, name="policy-validate"),
    path("policies/agents/<slug:name>/rules/", policies.agent_rule_add, name="policy-agent-rule"),
    path("policies/versions/", policies.version_list, name="policy-versions"),
    path("policies/versions/<int:number>/", policies.version_detail, name="policy-version"),
    path("policies/simulate/", policies.simulator, name="simulate"),
    path("audit/", audit.audit_search, name="audit"),
    path("audit/entries/<int:seq>/", audit.audit_entry, name="audit-entry"),
    path("audit/export/", audit.audit_export, name="audit-export"),
    path("audit/checkpoints/", audit.checkpoint_list, name="checkpoints"),
]
