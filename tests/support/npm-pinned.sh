#!/usr/bin/env bash
# Install one pinned npm package into a directory of its own, once: the shared step of the
# tests' own npm installs (tests/support/idp/setup.sh, tests/support/axe/setup.sh).
#   npm-pinned.sh LABEL DIR PACKAGE VERSION PACKAGE_JSON [FILE_THAT_MUST_EXIST]
# Idempotent: DIR/.installed names what is there, and a second run with the same version does
# nothing.
set -euo pipefail
label="$1" dir="$2" package="$3" version="$4" package_json="$5" must_exist="${6:-}"
want="$package@$version"

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
if [ "$(cat "$dir/.installed" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "$label: npm is required (apt-get install nodejs npm)" >&2; exit 2; }
cd "$dir"
[ -f package.json ] || printf '%s\n' "$package_json" > package.json
npm install --no-fund --no-audit --save-exact --loglevel=error "$want"
[ -z "$must_exist" ] || test -s "$must_exist"
echo "$want" > .installed
echo "$label: $want installed in $dir"
