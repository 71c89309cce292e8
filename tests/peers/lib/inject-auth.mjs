// Preload for `node --import`: adds `Authorization: Bearer $INTENDED_AGENT_KEY` to every HTTP
// request a third-party tool makes, for tools that have no option for headers (the conformance
// runner). Covers the global fetch (the TypeScript SDK's transports) and undici's request()
// (the runner's raw HTTP scenarios). A request that already carries Authorization keeps it.
// Our own glue: it does not change what the tool sends otherwise.
import { createRequire } from "node:module";
import path from "node:path";

const key = process.env.INTENDED_AGENT_KEY;
const bearer = `Bearer ${key}`;

function hasAuthorization(headers) {
  if (!headers) return false;
  if (headers instanceof Headers) return headers.has("authorization");
  if (Array.isArray(headers)) {
    return headers.some((h, i) => (Array.isArray(h) ? h[0] : i % 2 === 0 && h).toString().toLowerCase() === "authorization");
  }
  return Object.keys(headers).some((k) => k.toLowerCase() === "authorization");
}

function withAuthorization(headers) {
  if (hasAuthorization(headers)) return headers;
  if (!headers) return { authorization: bearer };
  if (headers instanceof Headers) {
    const copy = new Headers(headers);
    copy.set("authorization", bearer);
    return copy;
  }
  if (Array.isArray(headers)) {
    return Array.isArray(headers[0]) || headers.length === 0
      ? [...headers, ["authorization", bearer]]
      : [...headers, "authorization", bearer];
  }
  return { ...headers, authorization: bearer };
}

if (key) {
  const originalFetch = globalThis.fetch;
  globalThis.fetch = (input, init = {}) => {
    const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
    if (!headers.has("authorization")) headers.set("authorization", bearer);
    return originalFetch(input, { ...init, headers });
  };
  try {
    // The tool's own undici, patched before the tool imports it (CommonJS exports are read then).
    const requireFromTool = createRequire(path.resolve(process.argv[1] ?? "."));
    const undici = requireFromTool("undici");
    const originalRequest = undici.request;
    undici.request = (url, options = {}) => originalRequest(url, { ...options, headers: withAuthorization(options.headers) });
  } catch {
    // no undici next to the tool: fetch alone is wrapped
  }
}
