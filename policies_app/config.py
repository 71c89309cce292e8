"""The configuration file: parse YAML keeping line numbers, validate everything, normalize.

`load(text, known)` returns a `Desired` state or raises `ConfigError` listing every problem,
each naming its line ("line 12: policies[1].decision must be allow, deny or escalate"). This
module does no writes; `policies_app.actions` turns a `Desired` into a plan and applies it.

A section that is absent from the file is left as it is; a section that is present declares
that part of the state exactly (what it does not list is removed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import yaml

from intended.globs import overlap as globs_overlap
from policies_app.core import packs
from policies_app.core.rules import compile_expression, parse_duration

Path = tuple[str | int, ...]

SECTIONS = ("servers", "agents", "reviewers", "policies", "velocity_rules")
SERVER_KEYS = {"name", "url", "command", "credential", "domain_pack", "tools", "resources", "prompts", "new_tools",
               "timeout", "connect_timeout"}
AGENT_KEYS = {"name", "owner", "roles", "tools", "resources", "prompts", "oauth_client", "enabled"}
REVIEWER_KEYS = {"role", "users"}
POLICY_KEYS = {"name", "intent", "agents", "users", "decision", "reason", "conditions", "when", "escalation"}
VELOCITY_KEYS = {"name", "agent", "intent", "window", "max_calls", "exceeded_action", "reason", "escalation"}
ESCALATION_KEYS = {"type", "reviewers", "required", "timeout"}
CREDENTIAL_KEYS = {"header", "value_env"}
DECISIONS = ("allow", "deny", "escalate")
SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")
USERNAME = re.compile(r"^[\w.@+-]+$")
# An OAuth subject or client id as issuers write them (auth0|5f..., a GUID, a URL): printable,
# no spaces. `group:<name>` in a policy's users names a group from the token's groups claim.
OAUTH_NAME = re.compile(r"^[!-~]{1,255}$")
INTENT = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
INTENT_GLOB = re.compile(r"^[A-Za-z0-9_*-]+(\.[A-Za-z0-9_*-]+)*$")  # intended.globs: only * is special
HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_ROLES = ("admin",)
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 5.0


class ConfigError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class Known:
    """What exists already, for references into sections the file leaves out."""

    servers: set[str] = field(default_factory=set)
    agents: dict[str, set[str]] = field(default_factory=dict)  # name -> roles
    roles: set[str] = field(default_factory=set)  # Django groups
    users: set[str] = field(default_factory=set)
    policies: dict[str, Any] = field(default_factory=lambda: {"policies": [], "velocity_rules": []})


@dataclass
class Desired:
    """The normalized state a file declares; None for a section it leaves out."""

    servers: dict[str, dict[str, Any]] | None = None
    agents: dict[str, dict[str, Any]] | None = None
    reviewers: dict[str, list[str]] | None = None
    policies: dict[str, list[dict[str, Any]]] | None = None
    secrets: dict[str, str] = field(default_factory=dict)  # server -> credential read from env


# --- YAML with line numbers ----------------------------------------------------------------


def parse_yaml(text: str) -> tuple[Any, dict[Path, int]]:
    """Plain data plus the line of every path; duplicate keys are errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as exc:  # a character YAML forbids: it carries a position, not a mark
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        raise ConfigError([f"line {line}: not valid YAML: the character U+{code:04X} is not allowed"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError([f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    lines: dict[Path, int] = {}
    errors: list[str] = []
    constructor = yaml.SafeLoader("")

    def convert(n: yaml.Node, path: Path) -> Any:
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in n.value:
                key = constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    errors.append(f"line {key_node.start_mark.line + 1}: {render(path) or 'the file'} has a key that is not a string ({key!r})")
                    continue
                if key in out:
                    errors.append(f"line {key_node.start_mark.line + 1}: {render(path + (key,))} is given twice")
                    continue
                lines[path + (key,)] = key_node.start_mark.line + 1  # errors point at the key
                out[key] = convert(value_node, path + (key,))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [convert(item, path + (i,)) for i, item in enumerate(n.value)]
        return constructor.construct_object(n, deep=True)

    try:
        data = convert(node, ()) if node is not None else None
    except yaml.YAMLError as exc:  # a tag the safe loader cannot construct (!!python/object:...)
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError([f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    if errors:
        raise ConfigError(errors)
    return data, lines


def render(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# --- validation ----------------------------------------------------------------------------


class Validator:
    def __init__(self, lines: dict[Path, int], known: Known) -> None:
        self.lines = lines
        self.known = known
        self.errors: list[tuple[int, str]] = []

    def line(self, path: Path) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 0)

    def error(self, path: Path, message: str, *, at: Path | None = None) -> None:
        """Record `<path> <message>` at the line of `at` (default: of `path` itself)."""
        line = self.line(path if at is None else at)
        prefix = f"line {line}: " if line else ""
        self.errors.append((line, f"{prefix}{render(path) or 'the file'} {message}"))

    # small typed readers: None when invalid (after recording the error)

    def mapping(self, value: Any, path: Path, allowed: set[str]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, "must be a mapping")
            return None
        for key in value:
            if key not in allowed:
                self.error(path + (key,), f"is not a known key (expected one of: {', '.join(sorted(allowed))})")
        return value

    def text(self, value: Any, path: Path, *, pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.error(path, "must be a non-empty string")
            return None
        if pattern is not None and not pattern.match(value):
            self.error(path, f"must be {what or 'well formed'}, got {value!r}")
            return None
        return value

    def strings(self, value: Any, path: Path, *, pattern: re.Pattern[str] | None = None, what: str = "") -> list[str] | None:
        if not isinstance(value, list):
            self.error(path, "must be a list")
            return None
        out = [self.text(item, path + (i,), pattern=pattern, what=what) for i, item in enumerate(value)]
        return None if any(v is None for v in out) else [v for v in out if v is not None]

    def seconds(self, value: Any, path: Path) -> int | None:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(path, f"must be a duration such as 60s, 5m, 1h or 1d ({exc})")
            return None

    def timeout(self, value: Any, path: Path, default: float) -> float | None:
        if value is None:
            return default
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        if isinstance(value, str) and value.endswith("s"):
            try:
                number = float(value[:-1])
                if number > 0:
                    return number
            except ValueError:
                pass
        seconds = self.seconds(value, path)
        return float(seconds) if seconds is not None else None

    def positive_int(self, value: Any, path: Path, *, minimum: int = 1) -> int | None:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.error(path, f"must be an integer of at least {minimum}")
            return None
        return value

    def result(self) -> list[str]:
        return [message for _, message in sorted(self.errors, key=lambda e: e[0])]


def load(text: str, known: Known, *, environ: Mapping[str, str] | None = None) -> Desired:
    data, lines = parse_yaml(text)
    return validate_data(data, lines, known, environ=os.environ if environ is None else environ)


def validate_data(data: Any, lines: dict[Path, int], known: Known, *, environ: Mapping[str, str]) -> Desired:
    v = Validator(lines, known)
    desired = Desired()
    if data is None:
        raise ConfigError(["the file is empty: nothing to apply"])
    if v.mapping(data, (), set(SECTIONS)) is None:
        raise ConfigError(v.result())
    if "servers" in data:
        desired.servers = _servers(v, data["servers"], environ, desired.secrets)
    if "agents" in data:
        desired.agents = _agents(v, data["agents"], desired)
    if "reviewers" in data:
        desired.reviewers = _reviewers(v, data["reviewers"])
    if "policies" in data or "velocity_rules" in data:
        desired.policies = {
            "policies": _policies(v, data["policies"], desired) if "policies" in data else list(known.policies.get("policies") or []),
            "velocity_rules": (
                _velocity_rules(v, data["velocity_rules"], desired)
                if "velocity_rules" in data else list(known.policies.get("velocity_rules") or [])
            ),
        }
        _unique_names(v, desired.policies)
    errors = v.result()
    if errors:
        raise ConfigError(errors)
    return desired


def _list(v: Validator, value: Any, path: Path) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        v.error(path, "must be a list")
        return []
    return value


def _unique(v: Validator, seen: set[str], name: str | None, path: Path, what: str) -> bool:
    if name is None:
        return False
    if name in seen:
        v.error(path, f"names {what} {name!r} a second time")
        return False
    seen.add(name)
    return True


def _named_specs(v: Validator, raw: Any, section: str, keys: set[str],
                 what: str) -> Iterator[tuple[Path, dict[str, Any], str]]:
    """Each valid mapping in the list `section` with a well-formed name not seen before in it:
    its path, its spec and its name (servers and agents are identified by their names)."""
    seen: set[str] = set()
    for i, item in enumerate(_list(v, raw, (section,))):
        path: Path = (section, i)
        spec = v.mapping(item, path, keys)
        if spec is None:
            continue
        name = v.text(spec.get("name"), path + ("name",), pattern=SLUG, what="a slug (letters, digits, - and _)")
        if name is not None and _unique(v, seen, name, path + ("name",), what):
            yield path, spec, name


def _servers(v: Validator, raw: Any, environ: Mapping[str, str], secrets: dict[str, str]) -> dict[str, dict[str, Any]]:
    servers: dict[str, dict[str, Any]] = {}
    for path, spec, name in _named_specs(v, raw, "servers", SERVER_KEYS, "the server"):
        url = spec.get("url")
        command = spec.get("command")
        if (url is None) == (command is None):
            v.error(path, "must have exactly one of url (HTTP) or command (stdio)")
        if url is not None and v.text(url, path + ("url",)) is not None:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                v.error(path + ("url",), f"must be an http:// or https:// URL, got {url!r}")
        if command is not None:
            command = v.strings(command, path + ("command",))
            if command == []:
                v.error(path + ("command",), "must name a program to run")
        header, env_name = "", ""
        credential = spec.get("credential")
        if credential is not None and v.mapping(credential, path + ("credential",), CREDENTIAL_KEYS) is not None:
            header = v.text(credential.get("header"), path + ("credential", "header"), pattern=HEADER, what="an HTTP header name") or ""
            if "value_env" in credential:
                env_name = v.text(credential["value_env"], path + ("credential", "value_env"), pattern=ENV_NAME, what="an environment variable name") or ""
                if env_name and env_name not in environ:
                    v.error(path + ("credential", "value_env"), f"names the environment variable {env_name}, which is not set")
                elif env_name:
                    secrets[name] = environ[env_name]
        pack = spec.get("domain_pack") or ""
        if pack and v.text(pack, path + ("domain_pack",), what="the name of a domain pack") is None:
            pack = ""
        if pack:
            try:
                packs.load(pack)
            except KeyError as exc:
                v.error(path + ("domain_pack",), str(exc.args[0]))
        intents = _intent_map(v, spec.get("tools"), path + ("tools",), "tool names")
        resource_intents = _intent_map(v, spec.get("resources"), path + ("resources",), "resource URI globs")
        _disjoint_globs(v, resource_intents, path + ("resources",))
        prompt_intents = _intent_map(v, spec.get("prompts"), path + ("prompts",), "prompt names")
        new_tools = spec.get("new_tools", "pin")
        if new_tools not in ("pin", "hold"):
            v.error(path + ("new_tools",), f"must be pin or hold, got {new_tools!r}")
        servers[name] = {
            "url": url if isinstance(url, str) else "",
            "command": list(command) if isinstance(command, list) else [],
            "credential_header": header,
            "credential_env": env_name,
            "domain_pack": pack if isinstance(pack, str) else "",
            "tool_intents": dict(sorted(intents.items())),
            "resource_intents": dict(sorted(resource_intents.items())),
            "prompt_intents": dict(sorted(prompt_intents.items())),
            "new_tools": new_tools,
            "timeout_seconds": v.timeout(spec.get("timeout"), path + ("timeout",), DEFAULT_TIMEOUT),
            "connect_timeout_seconds": v.timeout(spec.get("connect_timeout"), path + ("connect_timeout",), DEFAULT_CONNECT_TIMEOUT),
        }
    return servers


def _agents(v: Validator, raw: Any, desired: Desired) -> dict[str, dict[str, Any]]:
    servers = set(desired.servers) if desired.servers is not None else v.known.servers
    agents: dict[str, dict[str, Any]] = {}
    clients: dict[str, str] = {}  # oauth_client -> agent
    for path, spec, name in _named_specs(v, raw, "agents", AGENT_KEYS, "the agent"):
        owner = spec.get("owner", "")
        if owner and v.text(owner, path + ("owner",), pattern=USERNAME, what="a user name") is None:
            owner = ""
        roles = v.strings(spec.get("roles", []), path + ("roles",), pattern=SLUG, what="a role name") or []
        tool_scope = _scope_map(v, spec.get("tools"), path + ("tools",), servers, "tools", star=True)
        resource_scope = _scope_map(v, spec.get("resources"), path + ("resources",), servers, "resource URI globs", star=False)
        prompt_scope = _scope_map(v, spec.get("prompts"), path + ("prompts",), servers, "prompts", star=True)
        enabled = spec.get("enabled", True)
        if not isinstance(enabled, bool):
            v.error(path + ("enabled",), "must be true or false")
            enabled = True
        oauth_client = ""
        if "oauth_client" in spec:
            oauth_client = v.text(spec["oauth_client"], path + ("oauth_client",), pattern=OAUTH_NAME,
                                  what="an OAuth client id") or ""
            if oauth_client and oauth_client in clients:
                v.error(path + ("oauth_client",), f"is also the OAuth client of the agent {clients[oauth_client]!r}: "
                        "a client acts as one agent")
            if oauth_client:
                clients.setdefault(oauth_client, name)
        agents[name] = {"owner": owner or "", "roles": sorted(set(roles)), "tool_scope": tool_scope,
                        "resource_scope": resource_scope, "prompt_scope": prompt_scope,
                        "oauth_client": oauth_client, "enabled": enabled}
    return agents


def _intent_map(v: Validator, raw: Any, path: Path, what: str) -> dict[str, str]:
    """A server's `tools:`, `resources:` or `prompts:` map (subject -> intent), in the file's order."""
    raw = raw or {}
    intents: dict[str, str] = {}
    if not isinstance(raw, dict):
        v.error(path, f"must map {what} to intents")
        return intents
    for subject, intent in raw.items():
        if not subject.strip():
            v.error(path, f"has an empty key: it must map {what} to intents", at=path + (subject,))
        elif v.text(intent, path + (subject,), pattern=INTENT, what="a dotted intent such as financial.refund.process") is not None:
            intents[subject] = intent
    return intents


def _disjoint_globs(v: Validator, intents: Mapping[str, str], path: Path) -> None:
    """Two globs of a server's `resources:` that some URI matches both must give it the same
    intent: the map is stored as a JSON object, whose key order PostgreSQL does not keep, so
    no glob may depend on coming first."""
    globs = list(intents)
    for i, glob in enumerate(globs):
        for other in globs[:i]:
            if intents[glob] != intents[other] and globs_overlap(glob, other):
                v.error(path + (glob,), f"overlaps {other!r} (line {v.line(path + (other,))}), which has the intent "
                        f"{intents[other]}: a URI that both match would have two intents; make the globs "
                        "disjoint or give them the same intent")





def _scope_map(v: Validator, raw: Any, path: Path, servers: set[str], what: str, *, star: bool) -> dict[str, Any]:
    """An agent's `tools:`, `resources:` or `prompts:` scope: {server: sorted names or globs},
    or "*" (every one) where `star` allows it. An omitted map or server admits nothing."""
    raw = raw or {}
    if not isinstance(raw, dict):
        v.error(path, f"must map server names to a list of {what}" + (' or "*"' if star else ""))
        return {}
    scope: dict[str, Any] = {}
    for server, allowed in raw.items():
        spath = path + (server,)
        if server not in servers:
            v.error(spath, f"names the server {server!r}, which is not defined")
        if star and (allowed == "*" or allowed == ["*"]):
            scope[server] = "*"
        elif not star and isinstance(allowed, str):
            v.error(spath, f'must be a list of {what} (["*"] admits every one), got {allowed!r}')
        else:
            names = v.strings(allowed, spath)
            if names is not None:
                scope[server] = sorted(set(names))
    return dict(sorted(scope.items()))


def _reviewers(v: Validator, raw: Any) -> dict[str, list[str]]:
    roles: dict[str, list[str]] = {}
    seen: set[str] = set()
    for i, item in enumerate(_list(v, raw, ("reviewers",))):
        path: Path = ("reviewers", i)
        spec = v.mapping(item, path, REVIEWER_KEYS)
        if spec is None:
            continue
        role = v.text(spec.get("role"), path + ("role",), pattern=SLUG, what="a role name")
        if role in RESERVED_ROLES:
            v.error(path + ("role",), f"cannot set the {role} role here: use create_user --roles {role}")
            continue
        if not _unique(v, seen, role, path + ("role",), "the role"):
            continue
        assert role is not None
        users = v.strings(spec.get("users", []), path + ("users",), pattern=USERNAME, what="a user name")
        roles[role] = sorted(set(users or []))
    return roles


def _agent_universe(v: Validator, desired: Desired) -> tuple[set[str], set[str]]:
    agents = desired.agents if desired.agents is not None else {n: {"roles": r} for n, r in v.known.agents.items()}
    names = set(agents)
    roles = {role for a in agents.values() for role in a["roles"]}
    return names, roles


def _agent_ref(v: Validator, ref: str, path: Path, desired: Desired) -> None:
    names, roles = _agent_universe(v, desired)
    if ref.startswith("role:"):
        if ref[5:] not in roles:
            v.error(path, f"names {ref}, but no agent has the role {ref[5:]!r}")
    elif ref not in names:
        v.error(path, f"names the agent {ref!r}, which is not defined")


def _reviewer_ref(v: Validator, ref: str, path: Path, desired: Desired) -> None:
    """Exactly what the approvals honour (approvals_app.actions.reviewer_groups and
    reviewer_users): `role:<role>` or `user:<user name>`; a bare name would be accepted here
    and then match nobody."""
    kind, _, name = ref.partition(":")
    if not ((kind == "role" and SLUG.fullmatch(name)) or (kind == "user" and USERNAME.fullmatch(name))):
        hint = f" (user:{ref}?)" if USERNAME.fullmatch(ref) else ""
        v.error(path, f"names {ref!r}: a reviewer is role:<name> or user:<name>{hint}")
        return
    roles = set(v.known.roles) | set(RESERVED_ROLES) | set(desired.reviewers or {})
    users = set(v.known.users) | {u for us in (desired.reviewers or {}).values() for u in us}
    if kind == "role" and name not in roles:
        v.error(path, f"names {ref}, a role that is neither in reviewers nor exists")
    elif kind == "user" and name not in users:
        v.error(path, f"names the user {name!r}, who does not exist")


def _intent(v: Validator, value: Any, path: Path) -> str | None:
    return v.text(value, path, pattern=INTENT_GLOB, what="an intent or glob such as financial.refund.*")


def _escalation(v: Validator, raw: Any, path: Path, desired: Desired) -> dict[str, Any] | None:
    spec = v.mapping(raw, path, ESCALATION_KEYS)
    if spec is None:
        return None
    kind = spec.get("type", "single")
    if kind not in ("single", "quorum"):
        v.error(path + ("type",), f"must be single or quorum, got {kind!r}")
    reviewers = v.strings(spec.get("reviewers", ["role:admin"]), path + ("reviewers",)) or []
    if not reviewers:
        v.error(path + ("reviewers",), "must name at least one reviewer (role:<name> or user:<name>)")
    for j, ref in enumerate(reviewers):
        _reviewer_ref(v, ref, path + ("reviewers", j), desired)
    out: dict[str, Any] = {"type": kind, "reviewers": reviewers}
    if kind == "quorum":
        required = v.positive_int(spec.get("required"), path + ("required",), minimum=2)
        if required is not None:
            out["required"] = required
    elif "required" in spec:
        v.error(path + ("required",), "only applies to type: quorum")
    seconds = v.seconds(spec.get("timeout", "300s"), path + ("timeout",))
    if seconds is not None:
        out["timeout"] = f"{seconds}s"
    return out


def _rule_specs(v: Validator, raw: Any, section: str,
                keys: set[str]) -> Iterator[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """Each valid mapping in the rule list `section`: its path, its spec, and the rule being
    built from it, which already carries the rule's name when it has one."""
    for i, item in enumerate(_list(v, raw, (section,))):
        path: Path = (section, i)
        spec = v.mapping(item, path, keys)
        if spec is None:
            continue
        rule: dict[str, Any] = {}
        if "name" in spec:
            rule["name"] = v.text(spec["name"], path + ("name",), pattern=SLUG, what="a slug")
        yield path, spec, rule


def _policies(v: Validator, raw: Any, desired: Desired) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path, spec, rule in _rule_specs(v, raw, "policies", POLICY_KEYS):
        rule["intent"] = _intent(v, spec.get("intent"), path + ("intent",))
        if "agents" in spec:
            agents = spec["agents"]
            if isinstance(agents, str):
                agents = [agents]
            names = v.strings(agents, path + ("agents",))
            if names == []:
                v.error(path + ("agents",), "must not be empty (leave it out to mean every agent)")
            for j, ref in enumerate(names or []):
                _agent_ref(v, ref, path + ("agents", j), desired)
            rule["agents"] = names
        if "users" in spec:
            users = v.strings(spec["users"], path + ("users",), pattern=OAUTH_NAME,
                              what="a user (the token's sub) or group:<name>")
            if users == []:
                v.error(path + ("users",), "must not be empty (leave it out to mean any user, or none)")
            rule["users"] = users
        decision = spec.get("decision")
        if decision not in DECISIONS:
            v.error(path + ("decision",), "must be allow, deny or escalate" + (f", got {decision!r}" if decision is not None else ""))
        rule["decision"] = decision
        if "reason" in spec:
            rule["reason"] = v.text(spec["reason"], path + ("reason",))
        if "conditions" in spec:
            rule["conditions"] = _conditions(v, spec["conditions"], path + ("conditions",))
        if "when" in spec:
            source = v.text(spec["when"], path + ("when",))
            if source is not None:
                try:
                    compile_expression(source)
                except ValueError as exc:
                    v.error(path + ("when",), str(exc))
            rule["when"] = source
        if "escalation" in spec:
            if decision != "escalate":
                v.error(path + ("escalation",), "only applies to decision: escalate")
            rule["escalation"] = _escalation(v, spec["escalation"], path + ("escalation",), desired)
        out.append(rule)
    return out


def _conditions(v: Validator, raw: Any, path: Path) -> dict[str, Any]:
    if not isinstance(raw, dict):
        v.error(path, "must map max_<name> or min_<name> to a number")
        return {}
    out: dict[str, Any] = {}
    for key, bound in raw.items():
        if not (key.startswith("max_") or key.startswith("min_")) or len(key) < 5:
            v.error(path + (key,), "must be max_<name> or min_<name>")
        elif isinstance(bound, bool) or not isinstance(bound, int | float):
            v.error(path + (key,), f"must be a number, got {bound!r}")
        else:
            out[key] = bound
    return out


def _velocity_rules(v: Validator, raw: Any, desired: Desired) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path, spec, rule in _rule_specs(v, raw, "velocity_rules", VELOCITY_KEYS):
        if "agent" in spec:
            agent = v.text(spec["agent"], path + ("agent",))
            if agent is not None:
                _agent_ref(v, agent, path + ("agent",), desired)
            rule["agent"] = agent
        rule["intent"] = _intent(v, spec.get("intent"), path + ("intent",))
        seconds = v.seconds(spec.get("window"), path + ("window",))
        rule["window"] = f"{seconds}s" if seconds else None
        rule["max_calls"] = v.positive_int(spec.get("max_calls"), path + ("max_calls",))
        action = spec.get("exceeded_action", "deny")
        if action not in ("deny", "escalate"):
            v.error(path + ("exceeded_action",), f"must be deny or escalate, got {action!r}")
        rule["exceeded_action"] = action
        if "reason" in spec:
            rule["reason"] = v.text(spec["reason"], path + ("reason",))
        if "escalation" in spec:
            if action != "escalate":
                v.error(path + ("escalation",), "only applies to exceeded_action: escalate")
            rule["escalation"] = _escalation(v, spec["escalation"], path + ("escalation",), desired)
        out.append(rule)
    return out


def _unique_names(v: Validator, document: Mapping[str, list[dict[str, Any]]]) -> None:
    """Given names are unique across both sections (a derived name has `:` and `#`, which a
    slug cannot, so it never clashes with one)."""
    seen: set[str] = set()
    for section in ("policies", "velocity_rules"):
        for i, rule in enumerate(document[section]):
            _unique(v, seen, rule.get("name"), (section, i, "name"), "the rule")


def validate_policy_document(document: Any, known: Known) -> dict[str, list[dict[str, Any]]]:
    """The same checks for a document that arrives as JSON (API, dashboard): no line numbers."""
    if not isinstance(document, dict):
        raise ConfigError(["the document must be an object with policies and velocity_rules"])
    data = {k: document.get(k) or [] for k in ("policies", "velocity_rules")}
    extra = set(document) - {"policies", "velocity_rules"}
    if extra:
        raise ConfigError([f"{key} is not a known key (expected policies, velocity_rules)" for key in sorted(extra)])
    desired = validate_data(data, {}, known, environ={})
    assert desired.policies is not None
    return desired.policies


def validate(text: str, *, environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Problems of a whole config text against the live state ({line, message}); empty = valid."""
    from policies_app.actions import known_state

    try:
        load(text, known_state(), environ=environ)
    except ConfigError as exc:
        return [_problem(e) for e in exc.errors]
    return []


def _problem(error: str) -> dict[str, Any]:
    match = re.match(r"^line (\d+): (.*)$", error, re.DOTALL)
    return {"line": int(match.group(1)), "message": match.group(2)} if match else {"line": None, "message": error}
