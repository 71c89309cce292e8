#!/usr/bin/env bash
# Install the third-party MCP software the tests run against, pinned, into var/peers
# (or $PEERS_DIR). Idempotent: a second run with the same versions does nothing.
#   npm: @modelcontextprotocol/conformance, server-everything, the TypeScript SDK,
#        and a Node 22 runtime (the conformance suite needs fs.globSync).
# The Python SDK client is the project's own dependency (mcp in pyproject.toml).
# Also the tests' identity provider (var/idp) and axe-core (var/axe), each by its own script.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${PEERS_DIR:-$HERE/../../var/peers}"
CONFORMANCE_VERSION=0.1.16
EVERYTHING_VERSION=2026.8.31
TS_SDK_VERSION=1.32.2
NODE_RUNTIME_VERSION=22.23.3
WANT="conformance@$CONFORMANCE_VERSION everything@$EVERYTHING_VERSION sdk@$TS_SDK_VERSION node@$NODE_RUNTIME_VERSION"

# The tests' identity provider (oidc-provider, in var/idp): its own pinned install.
bash "$HERE/../support/idp/setup.sh"
# axe-core, the accessibility engine the browser tests run inside chromium: its own pinned install.
bash "$HERE/../support/axe/setup.sh"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
if [ "$(cat "$DIR/.installed" 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "peers: npm is required (apt-get install nodejs npm)" >&2; exit 2; }
cd "$DIR"
[ -f package.json ] || printf '{"name":"intended-peers","private":true,"version":"0.0.0"}\n' > package.json
npm install --no-fund --no-audit --save-exact --loglevel=error \
  "@modelcontextprotocol/conformance@${CONFORMANCE_VERSION}" \
  "@modelcontextprotocol/server-everything@${EVERYTHING_VERSION}" \
  "@modelcontextprotocol/sdk@${TS_SDK_VERSION}"
case "$(uname -m)" in
  x86_64|amd64) NODE_ARCH=x64 ;;
  aarch64|arm64) NODE_ARCH=arm64 ;;
  *) echo "peers: unsupported arch $(uname -m)" >&2; exit 2 ;;
esac
mkdir -p node22
[ -f node22/package.json ] || printf '{"name":"node22-runtime","private":true,"version":"0.0.0"}\n' > node22/package.json
( cd node22 && npm install --no-fund --no-audit --save-exact --loglevel=error "node-linux-${NODE_ARCH}@${NODE_RUNTIME_VERSION}" )
node22/node_modules/.bin/node --version >/dev/null
echo "$WANT" > .installed
echo "peers installed in $DIR"
