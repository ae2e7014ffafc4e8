#!/usr/bin/env bash
# The whole flow on one machine, loopback only:
#   1. OpenBao dev server on a free port, a secret seeded;
#   2. JWT auth configured with a key this script generates, and a token
#      minted the way Kubernetes shapes projected service-account tokens;
#   3. the webhook started over TLS (certs from `vault-injector certs`),
#      examples/pod.yaml POSTed to it with curl as an AdmissionReview, the
#      patch and the admission audit line shown; the same rewrite done
#      offline by `vault-injector mutate`, whose injected container carries
#      the agent config in its VAULT_INJECTOR_CONFIG env var;
#   4. `vault-injector-agent agent --mode init` run with that config against OpenBao;
#   5. the rendered file and the agent's audit lines printed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.tools/bin:$PATH"
work="$root/.demo"
rm -rf "$work"
mkdir -p "$work"
cd "$work"

for t in bao python3 openssl curl; do
  command -v "$t" >/dev/null || { echo "demo: $t not found (run scripts/install-tools.sh)" >&2; exit 1; }
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building vault-injector and vault-injector-agent"
(cd "$root" && cargo build --quiet --bin vault-injector --bin vault-injector-agent)
vi="$root/target/debug/vault-injector"
via="$root/target/debug/vault-injector-agent"

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

say "vault-injector certs + webhook (HTTPS on loopback)"
"$vi" certs --out certs --host localhost,127.0.0.1 >/dev/null
cat >webhook.yaml <<YAML
vault:
  address: $BAO_ADDR
auth:
  method: jwt
  path: auth/jwt
injector:
  logFormat: plain
YAML
wport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
aport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$vi" webhook --tls-cert certs/tls.crt --tls-key certs/tls.key --config webhook.yaml \
  --listen "127.0.0.1:$wport" --admin-listen "127.0.0.1:$aport" >webhook-audit.jsonl 2>webhook.log &
webhook_pid=$!
trap 'kill "$bao_pid" "$webhook_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$aport/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$aport/readyz" >/dev/null || { cat webhook.log; echo "demo: webhook not ready" >&2; exit 1; }
echo "webhook ready on https://localhost:$wport/mutate"

say "POST examples/pod.yaml as an AdmissionReview (curl over TLS)"
"$root/.tools/venv/bin/python" - "$root/examples/pod.yaml" >review.json <<'PY'
import json, sys, yaml
pod = yaml.safe_load(open(sys.argv[1]))
print(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "demo-0001", "kind": {"group": "", "version": "v1", "kind": "Pod"},
    "resource": {"group": "", "version": "v1", "resource": "pods"},
    "namespace": "default", "operation": "CREATE", "dryRun": False,
    "userInfo": {"username": "demo-user"}, "object": pod}}))
PY
curl -sS --cacert certs/ca.crt -H 'Content-Type: application/json' --data @review.json \
  "https://localhost:$wport/mutate" >response.json
python3 - <<'PY'
import base64, json
r = json.load(open("response.json"))["response"]
print("allowed:", r["allowed"], "| patchType:", r.get("patchType"))
for op in json.loads(base64.b64decode(r["patch"])):
    v = op["value"]
    what = v.get("name", "") if isinstance(v, dict) else ""
    print(f'  {op["op"]:4} {op["path"]} {what}')
PY

say "admission audit line (stdout of the webhook)"
for _ in $(seq 50); do [ -s webhook-audit.jsonl ] && break; sleep 0.1; done
cat webhook-audit.jsonl

say "the same rewrite offline: vault-injector mutate -f examples/pod.yaml"
"$vi" mutate -f "$root/examples/pod.yaml" --config webhook.yaml -o json >mutated.json
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
echo "agent config (no secret values in it):"
python3 -m json.tool agent-config.json

say "vault-injector-agent agent --mode init"
mkdir -p secrets state
set +e
VAULT_INJECTOR_CONFIG="$(cat agent-config.json)" "$via" agent --mode init \
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
"$via" probe --state-dir state && echo "probe: ready"
