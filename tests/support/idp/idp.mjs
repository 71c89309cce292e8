#!/usr/bin/env node
// The tests' identity provider: the certified `oidc-provider` package (installed in var/idp by
// tests/support/idp/setup.sh), configured as an OAuth 2.1 authorization server and OpenID
// Provider for the gateway (resource server) and the dashboard (OpenID Connect client).
// Driven by tests/support/idp.py; this file documents only the wire.
//
//   node idp.mjs --port PORT [--control-token TOKEN]
//   prints "listening ISSUER" on stdout once it serves.
//
// What it offers (everything a real provider does, nothing minted by hand):
// - discovery at /.well-known/openid-configuration and /.well-known/oauth-authorization-server
// - dynamic client registration (/reg, open), authorization code with PKCE (S256; required
//   for every client unless started with pkce=public), refresh tokens, introspection (RFC 7662)
// - resource indicators (RFC 8707): a token asked for `resource=<uri>` has `aud` <uri>; it is
//   a signed JWT (RS256) unless that resource was made opaque through the control API
// - a `groups` claim: in access tokens (JWT claim or introspection field), in ID tokens and
//   userinfo (scope `groups`)
// - a login page at /interaction/<uid>: a form with fields `login` and `password` and a
//   submit button (id="submit"); consent is given automatically (a first-party test IdP)
// - a JWKS at /jwks that rotates on request (the newest key signs)
//
// Control API (JSON, `Authorization: Bearer <control token>`), for the tests only:
//   POST /_control/users    {"sub", "password", "groups": [..], "claims": {..}}
//   POST /_control/clients  {"client_id", "client_secret"?, "redirect_uris": [..], ...metadata}
//   POST /_control/rotate   {"keep_old": bool}           -> {"kid": new kid, "kids": [...]}
//   POST /_control/settings {"access_token_ttl": s, "opaque_resources": [..], "pkce": "all"|"public"}
//   GET  /_control/state                                  -> kids, clients, users
import crypto from "node:crypto";
import http from "node:http";
import path from "node:path";
import { createRequire } from "node:module";

const IDP_DIR = process.env.IDP_DIR || path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../../var/idp");
const require = createRequire(path.join(IDP_DIR, "package.json"));
const { default: Provider, errors } = await import(require.resolve("oidc-provider"));
// One store for every provider instance: rotating keys or adding a client rebuilds the
// provider (its keystore and static clients are fixed at construction) and keeps every
// registration, session, grant and token.
const { createMemoryAdapter } = await import(
  path.join(path.dirname(require.resolve("oidc-provider")), "adapters", "memory_adapter.js"));
const adapter = createMemoryAdapter();

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};
const PORT = Number(arg("port", "0"));
const CONTROL_TOKEN = arg("control-token", process.env.IDP_CONTROL_TOKEN || "");
const HOST = "127.0.0.1";

// ---- state that outlives a provider rebuild ----
const state = {
  keys: [],                    // private JWKs, newest first; the first one signs
  clients: new Map(),          // static clients, by client_id
  users: new Map(),            // sub -> {password, groups, claims}
  accessTokenTTL: 600,
  opaqueResources: new Set(),
  pkce: "all",
  resourceScope: "mcp",
};
const cookieKeys = [crypto.randomBytes(32).toString("base64url")];

function newKey() {
  const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = privateKey.export({ format: "jwk" });
  return { ...jwk, kid: crypto.randomBytes(8).toString("hex"), alg: "RS256", use: "sig" };
}
state.keys.push(newKey());

let issuer = "";
let provider = null;

function account(sub) {
  const user = state.users.get(sub);
  if (!user) return undefined;
  return {
    accountId: sub,
    async claims() {
      return { sub, groups: user.groups, preferred_username: sub, name: user.claims.name || sub,
        email: user.claims.email || `${sub}@example.test`, ...user.claims };
    },
  };
}

function buildProvider() {
  const configuration = {
    adapter,
    clients: [...state.clients.values()],
    jwks: { keys: state.keys },
    cookies: { keys: cookieKeys },
    findAccount: async (_ctx, sub) => account(sub),
    claims: {
      openid: ["sub"],
      profile: ["name", "preferred_username"],
      email: ["email"],
      groups: ["groups"],
    },
    scopes: ["openid", "offline_access", "profile", "email", "groups", state.resourceScope],
    conformIdTokenClaims: false, // the ID token carries the claims its scopes release (SSO reads groups there)
    pkce: { required: (_ctx, client) => state.pkce === "all" || client.clientAuthMethod === "none" },
    ttl: {
      AccessToken: () => state.accessTokenTTL,
      ClientCredentials: () => state.accessTokenTTL,
      AuthorizationCode: 120,
      Grant: 3600,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
      RefreshToken: 86400,
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    extraTokenClaims: async (_ctx, token) => {
      const user = token.accountId ? state.users.get(token.accountId) : undefined;
      return user ? { groups: user.groups } : undefined;
    },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      clientCredentials: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => {
          if (!/^https?:\/\//.test(resourceIndicator)) throw new errors.InvalidTarget();
          return {
            scope: state.resourceScope,
            audience: resourceIndicator,
            accessTokenTTL: state.accessTokenTTL,
            accessTokenFormat: state.opaqueResources.has(resourceIndicator) ? "opaque" : "jwt",
            jwt: { sign: { alg: "RS256" } },
          };
        },
      },
    },
  };
  const p = new Provider(issuer, configuration);
  p.on("server_error", (_ctx, err) => console.error("idp server_error:", err));
  return p;
}

// ---- the login page and automatic consent --------------------------------------------------
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, clientId, error) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Sign in - test IdP</title></head>
<body><h1>Sign in</h1><p>to continue to <b>${escape(clientId)}</b></p>
${error ? `<p class="error" role="alert">${escape(error)}</p>` : ""}
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
<label>Username <input name="login" id="login" required autofocus></label>
<label>Password <input name="password" id="password" type="password" required></label>
<button type="submit" id="submit">Sign in</button></form></body></html>`;
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

function send(res, status, body, type = "application/json") {
  res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
  res.end(typeof body === "string" ? body : JSON.stringify(body));
}

async function consent(req, res, details) {
  const { prompt, params, session } = details;
  let grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const d = prompt.details;
  if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(" "));
  if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(d.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(" "));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function interaction(req, res, url) {
  const m = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!m) return send(res, 404, { error: "not_found" });
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    return send(res, 400, `<p>This sign-in has expired or is unknown (${escape(err.message)}). Start again.</p>`, "text/html; charset=utf-8");
  }
  if (details.uid !== m[1]) return send(res, 400, { error: "interaction_mismatch" });
  if (details.prompt.name === "consent") return consent(req, res, details);
  if (req.method === "GET" && !m[2]) {
    return send(res, 200, loginPage(details.uid, details.params.client_id), "text/html; charset=utf-8");
  }
  if (req.method === "POST" && m[2]) {
    const form = new URLSearchParams(await readBody(req));
    const sub = form.get("login") || "";
    const user = state.users.get(sub);
    const given = Buffer.from(form.get("password") || "");
    const ok = user && given.length === Buffer.byteLength(user.password)
      && crypto.timingSafeEqual(given, Buffer.from(user.password));
    if (!ok) {
      return send(res, 401, loginPage(details.uid, details.params.client_id, "Wrong username or password."), "text/html; charset=utf-8");
    }
    return provider.interactionFinished(req, res, { login: { accountId: sub } }, { mergeWithLastSubmission: false });
  }
  return send(res, 405, { error: "method_not_allowed" });
}

// ---- control API ---------------------------------------------------------------------------
async function control(req, res, url) {
  const auth = req.headers.authorization || "";
  if (!CONTROL_TOKEN || auth !== `Bearer ${CONTROL_TOKEN}`) return send(res, 401, { error: "control token required" });
  const body = req.method === "POST" ? JSON.parse((await readBody(req)) || "{}") : {};
  switch (`${req.method} ${url.pathname}`) {
    case "POST /_control/users": {
      if (!body.sub || typeof body.password !== "string") return send(res, 400, { error: "sub and password required" });
      state.users.set(body.sub, { password: body.password, groups: body.groups || [], claims: body.claims || {} });
      return send(res, 200, { sub: body.sub });
    }
    case "POST /_control/clients": {
      if (!body.client_id) return send(res, 400, { error: "client_id required" });
      const client = {
        grant_types: ["authorization_code", "refresh_token"], response_types: ["code"],
        token_endpoint_auth_method: body.client_secret ? "client_secret_basic" : "none",
        ...body,
      };
      state.clients.set(client.client_id, client);
      provider = buildProvider();
      return send(res, 200, { client_id: client.client_id });
    }
    case "POST /_control/rotate": {
      const fresh = newKey();
      state.keys = body.keep_old ? [fresh, ...state.keys] : [fresh];
      provider = buildProvider();
      return send(res, 200, { kid: fresh.kid, kids: state.keys.map((k) => k.kid) });
    }
    case "POST /_control/settings": {
      if (body.access_token_ttl !== undefined) state.accessTokenTTL = Number(body.access_token_ttl);
      if (body.opaque_resources !== undefined) state.opaqueResources = new Set(body.opaque_resources);
      if (body.pkce !== undefined) state.pkce = body.pkce;
      provider = buildProvider();
      return send(res, 200, { ok: true });
    }
    case "GET /_control/state":
      return send(res, 200, { issuer, kids: state.keys.map((k) => k.kid), clients: [...state.clients.keys()],
        users: [...state.users.keys()] });
    default:
      return send(res, 404, { error: "unknown control route" });
  }
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    if (url.pathname.startsWith("/_control/")) return await control(req, res, url);
    if (url.pathname.startsWith("/interaction/")) return await interaction(req, res, url);
    return provider.callback()(req, res);
  } catch (err) {
    console.error("idp error:", err);
    if (!res.headersSent) send(res, 500, { error: "server_error", error_description: String(err.message || err) });
  }
});

server.listen(PORT, HOST, () => {
  issuer = `http://${HOST}:${server.address().port}`;
  provider = buildProvider();
  console.log(`listening ${issuer}`);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => server.close(() => process.exit(0)) && setTimeout(() => process.exit(0), 1000).unref());
