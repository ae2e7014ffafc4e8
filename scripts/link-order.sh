#!/usr/bin/env bash
# Regenerates link/symbol-order.txt: every function of our binary that the
# agent (and its probe) runs, then those the webhook runs, as recorded by
# valgrind's callgrind (the agent against a real OpenBao, the webhook
# answering AdmissionReviews over TLS). build.rs hands the list to the
# linker (--symbol-ordering-file), which places the functions in that order
# at the front of .text. The agent then maps about 1.5 MB of contiguous code
# instead of touching pages all over a 9 MB text segment (8.5 -> 5.2 MB
# resident), and the webhook's code sits together right after it
# (docs/benchmarks.md).
#
#   scripts/link-order.sh    (needs valgrind; run after large changes to the
#                             agent or the admission path, then rebuild and
#                             re-run make bench-agent and make bench-webhook)
#
# A stale list is harmless: names that no longer exist are ignored, and new
# functions are placed after the listed ones, as without a list. The names
# carry hashes that depend on the crate graph and its features (not on the
# checkout's path), so the list is made from, and matches, the binary that
# `cargo build --release [--bin vault-injector]` builds; a build that also
# builds examples or tests unifies dev-dependency features, gets other names
# and so no ordering (bench-webhook.sh builds its ceiling example separately).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.tools/bin:$PATH"
command -v valgrind >/dev/null || { echo "link-order: valgrind not found (apt-get install valgrind)" >&2; exit 2; }
command -v bao >/dev/null || { echo "link-order: bao not found; run scripts/install-tools.sh" >&2; exit 2; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "link-order: building the release binary" >&2
cargo build --release --quiet --bin vault-injector
bin=$root/target/release/vault-injector

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export BAO_ADDR="http://127.0.0.1:$port" BAO_TOKEN=root HOME="$work"
bao server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$port" >"$work/bao.log" 2>&1 &
for _ in $(seq 100); do bao status >/dev/null 2>&1 && break; sleep 0.1; done
bao status >/dev/null

bao kv put -mount=secret layout/app username=app password="$(openssl rand -hex 16)" \
  url=postgres://db:5432/app cert="-----BEGIN CERTIFICATE-----" >/dev/null
bao policy write layout - >/dev/null <<'HCL'
path "secret/data/layout/*" { capabilities = ["read"] }
path "secret/metadata/layout/*" { capabilities = ["read"] }
HCL
bao auth enable approle >/dev/null
bao write auth/approle/role/layout token_policies=layout token_ttl=1h >/dev/null
bao read -field=role_id auth/approle/role/layout/role-id >"$work/role-id"
bao write -f -field=secret_id auth/approle/role/layout/secret-id >"$work/secret-id"

# Every output format, so every renderer is on the list; a 1 s refresh so
# the steady-state loop is too.
python3 - "$work" "$BAO_ADDR" >"$work/config.json" <<'PY'
import json, sys
work, addr = sys.argv[1], sys.argv[2]
secrets = [
    {"name": "json", "path": "secret/data/layout/app", "file": "app.json", "format": "json"},
    {"name": "yaml", "path": "secret/data/layout/app", "file": "app.yaml", "format": "yaml"},
    {"name": "env", "path": "secret/data/layout/app", "file": "app.env", "format": "env"},
    {"name": "raw", "path": "secret/data/layout/app", "file": "password", "format": "raw", "key": "password"},
    {"name": "tpl", "path": "secret/data/layout/app", "file": "dsn", "format": "template",
     "template": "{{ data.username }}:{{ data.password }}@{{ data.url }}\n"},
]
print(json.dumps({
    "vault": {"address": addr},
    "auth": {"method": "approle", "mount": "approle",
             "roleIdPath": f"{work}/role-id", "secretIdPath": f"{work}/secret-id"},
    "secrets": secrets,
    "refreshIntervalSecs": 1,
    "logFormat": "json",
}))
PY
export VAULT_INJECTOR_CONFIG
VAULT_INJECTOR_CONFIG=$(cat "$work/config.json")

vg=(valgrind --tool=callgrind --compress-strings=no --compress-pos=no --demangle=no)
callgrind() { # name args... (in the foreground)
  local name=$1
  shift
  "${vg[@]}" --callgrind-out-file="$work/$name.cg" "$bin" "$@" >"$work/$name.log" 2>&1
}

echo "link-order: running the agent under callgrind" >&2
# In the background, started directly so that $! is valgrind itself (which
# passes SIGTERM on and writes its profile when the program exits).
"${vg[@]}" --callgrind-out-file="$work/sidecar.cg" "$bin" agent --mode sidecar \
  --secrets-dir "$work/out" --state-dir "$work/state" >"$work/sidecar.log" 2>&1 &
sidecar=$!
for _ in $(seq 600); do [ -s "$work/out/dsn" ] && break; sleep 0.2; done
[ -s "$work/out/dsn" ] || { echo "link-order: the agent did not render; see its log:" >&2; cat "$work/sidecar.log" >&2; exit 1; }
callgrind probe probe --state-dir "$work/state" || true
sleep 6 # a few refresh rounds
kill -TERM "$sidecar"
wait "$sidecar" || true
callgrind init agent --mode init --secrets-dir "$work/out-init" --state-dir "$work/state-init"

echo "link-order: running the webhook under callgrind" >&2
"$bin" certs --out "$work/certs" --host localhost,127.0.0.1 2>/dev/null
wport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${vg[@]}" --callgrind-out-file="$work/webhook.cg" "$bin" webhook --listen "127.0.0.1:$wport" \
  --admin-listen 127.0.0.1:0 --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" \
  >"$work/webhook.log" 2>&1 &
webhook=$!
for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$wport") 2>/dev/null && break; sleep 0.2; done
post() { curl -sS -o /dev/null --cacert "$work/certs/ca.crt" -H 'Content-Type: application/json' \
  --data-binary "@$1" "https://localhost:$wport/mutate"; }
for _ in $(seq 20); do
  for f in tests/data/review-*.json; do post "$f"; done
done
post /dev/null || true
kill -TERM "$webhook"
wait "$webhook" || true

for f in sidecar probe init webhook; do
  [ -s "$work/$f.cg" ] || { echo "link-order: no profile from the $f run; its log:" >&2; cat "$work/$f.log" >&2; exit 1; }
done
mkdir -p link
nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u >"$work/defined"
# fn= and cfn= lines name every function that ran (or was called); the
# agent's first.
ran() { sed -n 's/^c\{0,1\}fn=\(([0-9]*) \)\{0,1\}//p' "$@"; }
{ ran "$work"/sidecar.cg "$work"/probe.cg "$work"/init.cg; ran "$work"/webhook.cg; } |
  awk '!seen[$0]++' >"$work/ran"
awk 'NR == FNR {def[$0] = 1; next} def[$0]' "$work/defined" "$work/ran" >link/symbol-order.txt
echo "link-order: $(wc -l <link/symbol-order.txt) functions written to link/symbol-order.txt" >&2
