#!/usr/bin/env bash
# Install the benchmark's own tools and the peer gateways, one venv each:
#
#   var/bench-peers/bench/venv          load generator, upstreams, plot, profilers
#   var/bench-peers/contextforge/venv   IBM ContextForge (PyPI mcp-contextforge-gateway)
#   var/bench-peers/mcp-proxy/venv      sparfenyuk mcp-proxy (PyPI mcp-proxy)
#
# Every package is pinned; none of them enters the project's own dependencies. Idempotent: a venv
# whose stamp matches its pins is left alone. A peer that fails to install is reported and
# skipped (the runner then measures without it).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${BENCH_PEERS_DIR:-$ROOT/var/bench-peers}"
PY="${PYTHON:-python3}"

BENCH_PKGS=("mcp==2.3.0" "httpx==0.28.1" "uvicorn[standard]==0.54.0" "matplotlib==3.11.2" "py-spy==0.4.3" "pyinstrument==5.1.3")
CF_PKGS=("mcp-contextforge-gateway==1.0.7.post20260921")
MCPPROXY_PKGS=("mcp-proxy==0.13.0")

install_venv() {  # install_venv NAME PKG...
  local name="$1"; shift
  local venv="$DIR/$name/venv" stamp
  stamp="$(printf '%s\n' "$@" | sha256sum | cut -c1-12)"
  if [ -f "$venv/.bench-$stamp" ]; then
    echo "== $name: up to date ($venv)"
    return 0
  fi
  mkdir -p "$DIR/$name"
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv" || return 1
  echo "== $name: installing $*"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  if "$venv/bin/python" -m pip install -q "$@"; then
    rm -f "$venv"/.bench-*
    touch "$venv/.bench-$stamp"
  else
    echo "== $name: install FAILED; the runner will skip it" >&2
    return 1
  fi
}

mkdir -p "$DIR"
install_venv bench "${BENCH_PKGS[@]}" || { echo "bench venv failed" >&2; exit 1; }
install_venv contextforge "${CF_PKGS[@]}" || true
install_venv mcp-proxy "${MCPPROXY_PKGS[@]}" || true
echo "bench setup done: $DIR"
