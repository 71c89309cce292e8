#!/usr/bin/env bash
# Install the tests' identity provider, the certified `oidc-provider` package (pinned), into
# var/idp (or $IDP_DIR). Idempotent: a second run with the same version does nothing.
# Called by tests/peers/setup.sh (so `make peers`, `make test` and .ci/run install it).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OIDC_PROVIDER_VERSION=9.13.3
bash "$HERE/../npm-pinned.sh" idp "${IDP_DIR:-$HERE/../../../var/idp}" oidc-provider "$OIDC_PROVIDER_VERSION" \
  '{"name":"intended-test-idp","private":true,"version":"0.0.0","type":"module"}'
