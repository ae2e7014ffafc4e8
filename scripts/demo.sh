#!/usr/bin/env bash
# The whole flow on one machine, loopback only:
#   1. OpenBao dev server on a free port, a secret seeded;
#   2. JWT auth configured with a key this script generates, and a token
#      minted the way Kubernetes shapes projected service-account tokens;
#   3. examples/pod.yaml rewritten by `vault-injector mutate` (what the
#      webhook would do); the agent config is taken from the injected
#      container's VAULT_INJECTOR_CONFIG env var;
#   4. `vault-injector agent --mode init` run with that config against OpenBao;
#   5. the rendered file and the agent's audit lines printed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.tools/bin:$PATH"
work="$root/.demo"
rm -rf "$work"
mkdir -p "$work"
cd "$work"

for t in bao python3 openssl; do
  command -v "$t" >/dev/null || { echo "demo: $t not found (run scripts/install-tools.sh)" >&2; exit 1; }
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building vault-injector"
(cd "$root" && cargo build --quiet --bin vault-injector)
vi="$root/target/debug/vault-injector"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export BAO_ADDR="http://127.0.0.1:$port" BAO_TOKEN=root HOME="$work"
say "starting OpenBao dev server on $BAO_ADDR"
bao server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$port" >bao.log 2>&1 &
bao_pid=$!
trap 'kill "$bao_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do bao status >/dev/null 2>&1 && break; sleep 0.1; done
bao status >/dev/null

say "seeding secret/demo/db"
bao kv put -mount=secret demo/db username=demo password="demo-$(openssl rand -hex 8)" >/dev/null
bao policy write demo - >/dev/null <<'HCL'
path "secret/data/demo/*" { capabilities = ["read"] }
HCL

say "configuring JWT auth with a freshly generated RSA key"
openssl genrsa -out sa-signer.key 2048 2>/dev/null
openssl rsa -in sa-signer.key -pubout -out sa-signer.pub 2>/dev/null
issuer=https://kubernetes.default.svc.cluster.local
bao auth enable jwt >/dev/null
bao write auth/jwt/config jwt_validation_pubkeys=@sa-signer.pub bound_issuer="$issuer" >/dev/null
bao write auth/jwt/role/demo role_type=jwt user_claim=sub bound_audiences=vault \
  bound_subject=system:serviceaccount:default:demo token_policies=demo token_ttl=1h >/dev/null

# RS256 token with the claims of a projected service-account token.
python3 - "$issuer" >sa-token <<'PY'
import base64, json, subprocess, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
header = {"alg": "RS256", "typ": "JWT", "kid": "demo"}
claims = {
    "iss": sys.argv[1], "sub": "system:serviceaccount:default:demo",
    "aud": ["vault"], "iat": now, "nbf": now, "exp": now + 600,
    "kubernetes.io": {"namespace": "default",
                      "pod": {"name": "demo", "uid": "00000000-0000-4000-8000-000000000001"},
                      "serviceaccount": {"name": "demo", "uid": "00000000-0000-4000-8000-000000000002"}},
}
signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", "sa-signer.key"],
                     input=signing_input.encode(), capture_output=True, check=True).stdout
print(signing_input + "." + b64(sig))
PY
echo "minted sa-token ($(wc -c <sa-token) bytes)"

say "vault-injector mutate -f examples/pod.yaml"
if "$vi" mutate -f "$root/examples/pod.yaml" -o json >mutated.json 2>mutate.err; then
  python3 - >agent-config.json <<'PY'
import json
pod = json.load(open("mutated.json"))
if "items" in pod: pod = pod["items"][0]
spec = pod["spec"]
for c in spec.get("initContainers", []) + spec.get("containers", []):
    for e in c.get("env", []) or []:
        if e.get("name") == "VAULT_INJECTOR_CONFIG":
            print(e["value"]); raise SystemExit(0)
raise SystemExit("no container with VAULT_INJECTOR_CONFIG in the mutated pod")
PY
  python3 -c 'import json; p=json.load(open("mutated.json")); p=p.get("items",[p])[0]; print("containers:", [c["name"] for c in p["spec"].get("initContainers",[])+p["spec"]["containers"]])'
else
  # Until `mutate` is available in this build: the config the webhook
  # would write for examples/pod.yaml.
  echo "mutate unavailable ($(head -1 mutate.err)); using the equivalent agent config"
  cat >agent-config.json <<'JSON'
{"vault":{"address":"https://vault.vault.svc:8200"},
 "auth":{"method":"jwt","mount":"jwt","role":"demo"},
 "secrets":[{"name":"db","path":"secret/data/demo/db","file":"db","format":"env","mode":256}],
 "logFormat":"plain",
 "pod":{"namespace":"default","name":"demo","serviceAccount":"demo"}}
JSON
fi
echo "agent config (no secret values in it):"
python3 -m json.tool agent-config.json

say "vault-injector agent --mode init"
mkdir -p secrets state
set +e
VAULT_INJECTOR_CONFIG="$(cat agent-config.json)" "$vi" agent --mode init \
  --vault-addr "$BAO_ADDR" --secrets-dir secrets --state-dir state --token-file sa-token \
  >audit.jsonl 2>agent.log
rc=$?
set -e
cat agent.log
[ "$rc" = 0 ] || { echo "demo: agent failed with exit code $rc" >&2; exit "$rc"; }

say "rendered files"
for f in $(cd secrets && find . -type f | sort); do
  printf -- '--- /vault/secrets/%s (mode %s)\n' "${f#./}" "$(stat -c %a "secrets/$f")"
  cat "secrets/$f"
done

say "audit lines (stdout of the agent)"
cat audit.jsonl

say "probe"
"$vi" probe --state-dir state && echo "probe: ready"
