#!/usr/bin/env bash
# Install axe-core (pinned), the accessibility engine the browser tests inject into chromium
# (tests/dashboard/test_accessibility.py), into var/axe (or $AXE_DIR). Idempotent: a second
# run with the same version does nothing. Called by tests/peers/setup.sh (so `make peers`,
# `make test` and .ci/run install it).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${AXE_DIR:-$HERE/../../../var/axe}"
AXE_CORE_VERSION=4.14.1
WANT="axe-core@$AXE_CORE_VERSION"

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
if [ "$(cat "$DIR/.installed" 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "axe: npm is required (apt-get install nodejs npm)" >&2; exit 2; }
cd "$DIR"
[ -f package.json ] || printf '{"name":"intended-test-axe","private":true,"version":"0.0.0"}\n' > package.json
npm install --no-fund --no-audit --save-exact --loglevel=error "axe-core@${AXE_CORE_VERSION}"
test -s node_modules/axe-core/axe.min.js
echo "$WANT" > .installed
echo "axe-core installed in $DIR"
