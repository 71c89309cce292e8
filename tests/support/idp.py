"""The tests' identity provider: a real OAuth 2.1 authorization server and OpenID Provider
(the certified `oidc-provider` npm package, tests/support/idp/idp.mjs, installed in var/idp by
tests/support/idp/setup.sh), started on a free port on 127.0.0.1.

    from tests.support.idp import running_idp

    with running_idp() as idp:                       # or the `idp` pytest fixture below
        idp.issuer                                   # "http://127.0.0.1:<port>" (discovery under it)
        idp.add_user("dana", "pw", groups=["support-leads"], email="dana@example.test")
        idp.add_client("dashboard", secret="s3cret",
                       redirect_uris=["http://127.0.0.1:8000/oidc/callback/"])  # static, confidential
        idp.rotate_keys(keep_old=False)              # new signing key; returns its kid
        idp.settings(access_token_ttl=5, opaque_resources=[...], pkce="public")
        tokens = idp.authorize("dashboard", "s3cret", redirect_uri, "dana", "pw",
                               resource="http://gw/mcp/customer-ops", scope="mcp")
        callback = idp.login(authorization_url, "dana", "pw", redirect_uri)

What it is configured with (see idp.mjs): discovery (RFC 8414 and OpenID), open dynamic
client registration, authorization code with PKCE S256 (required for every client by default;
`settings(pkce="public")` requires it only of public clients), resource indicators (RFC 8707:
`aud` is the requested resource and the access token is an RS256 JWT, or opaque for
`opaque_resources`), introspection (RFC 7662), refresh tokens, a `groups` claim (access
tokens, ID tokens, userinfo with scope `groups`) and a JWKS that rotates on request.

Login: the authorization endpoint redirects to /interaction/<uid>, an HTML form with inputs
`#login` and `#password` and a `#submit` button (a headless browser fills it in); posting the
form signs in, consent is given automatically, and the browser is redirected to the client's
redirect URI with `code` and `state`. `login()` does the same with plain HTTP requests.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest

from tests.support.processes import PEERS_DIR, ROOT, free_port, wait_until_listening

IDP_DIR = Path(os.environ.get("IDP_DIR", ROOT / "var" / "idp"))
SCRIPT = ROOT / "tests" / "support" / "idp" / "idp.mjs"


def node_binary() -> str:
    """oidc-provider supports Node 22 LTS and later: the runtime tests/peers/setup.sh installs,
    else the machine's node (20 works, with a warning)."""
    node22 = PEERS_DIR / "node22" / "node_modules" / ".bin" / "node"
    if node22.exists():
        return str(node22)
    return shutil.which("node") or "node"


def installed() -> bool:
    return (IDP_DIR / "node_modules" / "oidc-provider").is_dir()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class LoginFailed(AssertionError):
    pass


class IdP:
    """A running test identity provider; see the module docstring."""

    def __init__(self, issuer: str, control_token: str, log: Path) -> None:
        self.issuer = issuer
        self.log = log
        self._control = httpx.Client(base_url=issuer, timeout=10,
                                     headers={"authorization": f"Bearer {control_token}"})

    # -- control --------------------------------------------------------------------------
    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._control.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def add_user(self, sub: str, password: str, groups: Sequence[str] = (), **claims: Any) -> None:
        """A person who can sign in; `sub` is also the login name. Extra claims (name, email...)
        go to ID tokens and userinfo; `groups` to access tokens too."""
        self._post("/_control/users", {"sub": sub, "password": password, "groups": list(groups), "claims": claims})

    def add_client(self, client_id: str, secret: str | None = None, redirect_uris: Sequence[str] = (),
                   **metadata: Any) -> None:
        """A statically registered client: confidential (client_secret_basic) with a secret,
        public without. metadata: any client metadata, e.g.
        grant_types=["authorization_code", "refresh_token", "client_credentials"], scope="openid groups",
        post_logout_redirect_uris=[...]."""
        body: dict[str, Any] = {"client_id": client_id, "redirect_uris": list(redirect_uris), **metadata}
        if secret is not None:
            body["client_secret"] = secret
        self._post("/_control/clients", body)

    def rotate_keys(self, keep_old: bool = False) -> str:
        """A new signing key; the old one stays published (keep_old) or goes. Returns the new kid."""
        return str(self._post("/_control/rotate", {"keep_old": keep_old})["kid"])

    def settings(self, *, access_token_ttl: int | None = None, opaque_resources: Sequence[str] | None = None,
                 pkce: str | None = None) -> None:
        body: dict[str, Any] = {}
        if access_token_ttl is not None:
            body["access_token_ttl"] = access_token_ttl
        if opaque_resources is not None:
            body["opaque_resources"] = list(opaque_resources)
        if pkce is not None:
            body["pkce"] = pkce
        self._post("/_control/settings", body)

    def state(self) -> dict[str, Any]:
        return self._control.get("/_control/state").json()

    def metadata(self) -> dict[str, Any]:
        return httpx.get(self.issuer + "/.well-known/oauth-authorization-server", timeout=10).json()

    # -- the flows, as a browser and a client would run them ---------------------------------
    def login(self, authorization_url: str, username: str, password: str, redirect_uri: str,
              client: httpx.Client | None = None) -> str:
        """Follow an authorization URL as a browser would, sign in with the form, and return the
        URL the browser is finally sent to on redirect_uri (with `code` and `state`, or `error`)."""
        own = client is None
        browser = client or httpx.Client(timeout=10)
        try:
            url = authorization_url
            response = browser.get(url)
            for _ in range(20):
                if response.is_redirect:
                    url = urljoin(url, response.headers["location"])
                    if url.startswith(redirect_uri):
                        return url
                    response = browser.get(url)
                    continue
                form = re.search(r'<form method="post" action="([^"]+)"', response.text)
                if response.status_code == 401 or form is None:
                    page = re.sub(r"(?s)<style.*?</style>|<[^>]+>", " ", response.text)
                    raise LoginFailed(f"login at {url} failed: {response.status_code} {' '.join(page.split())[:500]}")
                url = urljoin(url, form.group(1))
                response = browser.post(url, data={"login": username, "password": password})
            raise LoginFailed("too many redirects")
        finally:
            if own:
                browser.close()

    def authorize(self, client_id: str, secret: str | None, redirect_uri: str, username: str, password: str,
                  *, resource: str | None = None, scope: str = "openid") -> dict[str, Any]:
        """Run authorization code + PKCE for a user and return the token response (access_token,
        token_type, expires_in, id_token when scope has openid, refresh_token with
        offline_access)."""
        meta = self.metadata()
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                  "scope": scope, "state": state, "code_challenge": challenge, "code_challenge_method": "S256"}
        if resource:
            params["resource"] = resource
        if "offline_access" in scope.split():
            params["prompt"] = "consent"
        callback = self.login(meta["authorization_endpoint"] + "?" + urlencode(params), username, password, redirect_uri)
        query = parse_qs(urlsplit(callback).query)
        if "code" not in query:
            raise LoginFailed(f"no code in {callback}")
        assert query["state"] == [state]
        data = {"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": redirect_uri,
                "code_verifier": verifier}
        if resource:
            data["resource"] = resource
        auth = (client_id, secret) if secret is not None else None
        if auth is None:
            data["client_id"] = client_id
        response = httpx.post(meta["token_endpoint"], data=data, auth=auth, timeout=10)
        response.raise_for_status()
        return response.json()

    def register(self, redirect_uris: Sequence[str], **metadata: Any) -> dict[str, Any]:
        """Dynamic client registration (RFC 7591), as an MCP client does it; a public client
        unless metadata says otherwise. Returns the registration response (client_id...)."""
        body = {"redirect_uris": list(redirect_uris), "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"], **metadata}
        response = httpx.post(self.metadata()["registration_endpoint"], json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self._control.close()


@contextmanager
def running_idp(port: int | None = None) -> Iterator[IdP]:
    """Start the IdP on a free port (or `port`) and stop it on leaving."""
    if not installed():
        raise RuntimeError(f"oidc-provider is not installed in {IDP_DIR}: run tests/support/idp/setup.sh")
    port = port or free_port()
    token = secrets.token_urlsafe(24)
    logs = ROOT / "var" / "test-logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"idp-{port}.log"
    env = dict(os.environ, IDP_DIR=str(IDP_DIR), NODE_ENV="test")
    with open(log, "wb") as out:
        proc = subprocess.Popen([node_binary(), str(SCRIPT), "--port", str(port), "--control-token", token],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until_listening(port, proc)
            idp = IdP(f"http://127.0.0.1:{port}", token, log)
            try:
                yield idp
            finally:
                idp.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def idp() -> Iterator[IdP]:
    """A test IdP for the module's tests (skipped where oidc-provider is not installed and the
    run is not CI; CI installs it with tests/peers/setup.sh)."""
    if not installed() and not os.environ.get("CI"):
        pytest.skip("oidc-provider is not installed: run tests/support/idp/setup.sh")
    with running_idp() as provider:
        yield provider
