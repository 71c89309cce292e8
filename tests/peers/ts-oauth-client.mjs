#!/usr/bin/env node
// An MCP client on the official TypeScript SDK that signs in with OAuth, as an IDE or agent
// host does: StreamableHTTPClientTransport with an OAuthClientProvider, pointed at a server
// with no credentials. The SDK discovers the Protected Resource Metadata from the 401,
// the authorization server's metadata, registers itself (RFC 7591), and sends the user to
// the authorization URL with PKCE and the resource indicator.
//
//   node ts-oauth-client.mjs URL --call TOOL [--args JSON] [--forbidden TOOL]
//
// "The browser" is whoever reads stdout: the script prints `REGISTERED <client_id>` and
// `AUTHORIZE <url>`, then reads the URL the browser was sent back to (with ?code=...) from
// stdin, finishes the token exchange and connects again. Then it lists the tools, calls TOOL,
// checks that --forbidden TOOL is refused, and ends with "N passed, N failed".
import { createRequire } from "node:module";
import path from "node:path";
import readline from "node:readline";

const PEERS_DIR = process.env.PEERS_DIR || "/tmp/peers";
const require = createRequire(path.join(PEERS_DIR, "package.json"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { UnauthorizedError } = require("@modelcontextprotocol/sdk/client/auth.js");

const argv = process.argv.slice(2);
const url = argv.find((a) => /^https?:\/\//.test(a));
const opt = (name) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : undefined; };
const callTool = opt("call");
const callArgs = JSON.parse(opt("args") || "{}");
const forbidden = opt("forbidden");
const REDIRECT = "http://127.0.0.1:1/callback"; // never served: the reader of stdout plays the browser

const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));

class ConsoleProvider {
  constructor() { this._client = undefined; this._tokens = undefined; this._verifier = ""; }
  get redirectUrl() { return REDIRECT; }
  get clientMetadata() {
    return { client_name: "intended-tests-ts-oauth-client", redirect_uris: [REDIRECT],
      grant_types: ["authorization_code", "refresh_token"], response_types: ["code"], token_endpoint_auth_method: "none" };
  }
  clientInformation() { return this._client; }
  saveClientInformation(info) { this._client = info; console.log(`REGISTERED ${info.client_id}`); }
  tokens() { return this._tokens; }
  saveTokens(tokens) { this._tokens = tokens; console.log("TOKENS saved"); }
  redirectToAuthorization(authorizationUrl) { console.log(`AUTHORIZE ${authorizationUrl.href}`); }
  saveCodeVerifier(v) { this._verifier = v; }
  codeVerifier() { return this._verifier; }
}

let passed = 0, failed = 0;
function report(ok, name, detail) {
  if (ok) passed++; else failed++;
  console.log(`${ok ? "PASS" : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
}

const provider = new ConsoleProvider();
const connect = async () => {
  const client = new Client({ name: "intended-tests-ts-oauth-client", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider: provider }));
  return client;
};

let client;
try {
  client = await connect();
  report(false, "first connect needs authorization", "connected without signing in");
} catch (e) {
  report(e instanceof UnauthorizedError, "first connect needs authorization", String(e?.message || e));
  const callback = new URL((await nextLine()).trim());
  const code = callback.searchParams.get("code");
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  await transport.finishAuth(code);
  try {
    client = await connect();
    report(true, "connect with the access token");
  } catch (err) {
    report(false, "connect with the access token", String(err?.message || err));
  }
}
if (client) {
  try {
    const { tools } = await client.listTools();
    console.log(`TOOLS ${tools.map((t) => t.name).sort().join(",")}`);
    report(tools.some((t) => t.name === callTool), "tools/list shows the scoped tool");
    if (forbidden) report(!tools.some((t) => t.name === forbidden), "tools/list hides the out-of-scope tool");
    const result = await client.callTool({ name: callTool, arguments: callArgs });
    const text = (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join(" ");
    console.log(`RESULT ${JSON.stringify(text)}`);
    report(!result.isError, "tools/call", text);
    if (forbidden) {
      try {
        await client.callTool({ name: forbidden, arguments: {} });
        report(false, "out-of-scope tools/call refused", "it was answered");
      } catch (err) {
        report(/Unknown tool/.test(String(err?.message)), "out-of-scope tools/call refused", String(err?.message));
      }
    }
  } catch (err) {
    report(false, "session", String(err?.stack || err));
  }
  await client.close();
}
lines.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
