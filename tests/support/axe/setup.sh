#!/usr/bin/env bash
# Install axe-core (pinned), the accessibility engine the browser tests inject into chromium
# (tests/dashboard/test_accessibility.py), into var/axe (or $AXE_DIR). Idempotent: a second
# run with the same version does nothing. Called by tests/peers/setup.sh (so `make peers`,
# `make test` and .ci/run install it).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
AXE_CORE_VERSION=4.14.1
bash "$HERE/../npm-pinned.sh" axe "${AXE_DIR:-$HERE/../../../var/axe}" axe-core "$AXE_CORE_VERSION" \
  '{"name":"intended-test-axe","private":true,"version":"0.0.0"}' node_modules/axe-core/axe.min.js
