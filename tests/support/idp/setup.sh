#!/usr/bin/env bash
# Install the tests' identity provider, the certified `oidc-provider` package (pinned), into
# var/idp (or $IDP_DIR). Idempotent: a second run with the same version does nothing.
# Called by tests/peers/setup.sh (so `make peers`, `make test` and .ci/run install it).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${IDP_DIR:-$HERE/../../../var/idp}"
OIDC_PROVIDER_VERSION=9.13.3
WANT="oidc-provider@$OIDC_PROVIDER_VERSION"

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
if [ "$(cat "$DIR/.installed" 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "idp: npm is required (apt-get install nodejs npm)" >&2; exit 2; }
cd "$DIR"
[ -f package.json ] || printf '{"name":"intended-test-idp","private":true,"version":"0.0.0","type":"module"}\n' > package.json
npm install --no-fund --no-audit --save-exact --loglevel=error "oidc-provider@${OIDC_PROVIDER_VERSION}"
echo "$WANT" > .installed
echo "test identity provider installed in $DIR"
