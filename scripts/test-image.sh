#!/usr/bin/env bash
# Tests the image `make image` writes, with real tools and no Docker:
#   - the archive: skopeo reads it as oci-archive: and as docker-archive:
#     (the Docker manifest.json that docker load and ctr import use), copies
#     it to a docker-archive; umoci unpacks it into a runtime bundle;
#   - the image holds exactly what the Dockerfile's final stage describes
#     (files, user, entrypoint, env, labels, ports), the binaries are static,
#     there is no shell, the tag equals the chart's appVersion, the SBOM
#     lists the crates, and writing the archive twice gives the same bytes;
#   - the unpacked rootfs, with only what a container runtime and the pod
#     add (/proc, /dev nodes, /etc/resolv.conf, mounted files), run with
#     chroot as uid 65532 in a fresh mount, PID and network namespace
#     (unshare): the webhook starts and answers /readyz, and its own
#     `check-webhook` (what helm test runs) reaches it by DNS name over TLS;
#     the agent resolves vault.vault.svc through a DNS server on 127.0.0.1
#     (no /etc/hosts), logs in to OpenBao over TLS with AppRole and renders a
#     secret; as a sidecar it runs a per-secret command without a shell and
#     reports a shell-syntax reload command as impossible;
#   - `exec` from the image in a busybox root (static busybox, no libc), a
#     musl root (alpine-like: the musl loader and a musl app) and a scratch
#     root (a static app alone): the app gets the secret env var. A glibc app
#     failing in the musl root shows the roots really lack glibc;
#   - no secret value in any output.
# Needs root (unshare, chroot). Under CI=true a missing tool or privilege is
# a failure, otherwise the test is skipped. The last line is
# `image: N passed, M failed`.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.tools/bin:$PATH"

if [ "${1:-}" = "--inside" ]; then
  inside=true
  tmp=$2
else
  inside=false
fi

passed=0
failed=0
ok() {
  passed=$((passed + 1))
  echo "ok   $1"
}
not_ok() {
  failed=$((failed + 1))
  echo "FAIL $1"
  if [ -n "${2:-}" ]; then sed 's/^/     /' <<<"$2" | tail -30; fi
}
# Polls `$@` until it succeeds or $1 seconds pass (the machine is busy).
wait_for() {
  local secs=$1
  shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $end ] && return 1
    sleep 0.2
  done
}

# --- inside the namespaces ----------------------------------------------------
if $inside; then
  # shellcheck disable=SC1091
  . "$tmp/vars"
  img=$tmp/img
  ip link set lo up
  for r in "$img" "$tmp/busybox" "$tmp/musl" "$tmp/scratch"; do
    mount -t proc proc "$r/proc"
    for d in null zero random urandom; do
      touch "$r/dev/$d"
      mount --bind "/dev/$d" "$r/dev/$d"
    done
  done
  mount -t tmpfs -o mode=1777 tmpfs "$img/tmp"
  mount -t tmpfs -o mode=0770,uid=65532,gid=65532 tmpfs "$img/vault/secrets"

  python3 "$tmp/dns.py" >"$tmp/dns.log" 2>&1 &
  export BAO_ADDR=http://127.0.0.1:8200 BAO_TOKEN=root HOME=$tmp
  bao server -dev -dev-root-token-id=root -dev-listen-address=127.0.0.1:8200 \
    -config="$tmp/bao-tls.hcl" >"$tmp/bao.log" 2>&1 &
  if ! wait_for 120 bao status; then
    not_ok "OpenBao dev server did not start" "$(tail -20 "$tmp/bao.log")"
    echo "inside: $passed $failed"
    exit 0
  fi
  wait_for 30 grep -q ready "$tmp/dns.log"
  bao kv put -mount=secret app/db username=app password="$SECRET" >/dev/null
  bao policy write app - >/dev/null <<'HCL'
path "secret/data/app/*" { capabilities = ["read"] }
HCL
  bao auth enable approle >/dev/null
  bao write auth/approle/role/app token_policies=app token_ttl=1h >/dev/null
  for r in "$img" "$tmp/busybox" "$tmp/musl" "$tmp/scratch"; do
    mkdir -p "$r/test/approle"
    bao read -field=role_id auth/approle/role/app/role-id >"$r/test/approle/role-id"
    bao write -f -field=secret_id auth/approle/role/app/secret-id >"$r/test/approle/secret-id"
    chown -R 65532:65532 "$r/test/approle"
    chmod 0400 "$r/test/approle/"*
  done

  # `env -i` leaves only the PATH below, where the host's chroot is not.
  chroot=$(command -v chroot)
  # As the pod would: only the variables the pod spec and the image set.
  run_in() {
    local r=$1
    shift
    env -i PATH=/usr/local/bin:/bin "$@"
  }

  # -- the webhook ---------------------------------------------------------
  run_in "$img" "$chroot" --userspec=65532:65532 "$img" /usr/local/bin/vault-injector webhook \
    --tls-cert /test/webhook/tls.crt --tls-key /test/webhook/tls.key \
    --listen 127.0.0.1:8443 --admin-listen 127.0.0.1:9090 --log-format json \
    >"$tmp/webhook.out" 2>"$tmp/webhook.err" &
  if wait_for 120 curl -sf http://127.0.0.1:9090/readyz; then
    ok "webhook from the image (chroot, uid 65532, new mount/PID/net namespaces) answers /readyz"
  else
    not_ok "webhook from the image never became ready" "$(tail -20 "$tmp/webhook.err")"
  fi
  if out=$(run_in "$img" "$chroot" --userspec=65532:65532 "$img" vault-injector check-webhook \
    --url https://webhook.vault-injector.svc:8443/mutate --ca-file /test/webhook/ca.crt \
    --readyz http://webhook.vault-injector.svc:9090/readyz 2>&1); then
    ok "check-webhook (helm test) from the image: DNS name, TLS with the given CA, dry-run review allowed"
  else
    not_ok "check-webhook from the image failed" "$out"
  fi
  if out=$(run_in "$img" "$chroot" --userspec=65532:65532 "$img" vault-injector check-webhook \
    --url https://webhook.vault-injector.svc:8443/mutate 2>&1); then
    not_ok "check-webhook trusted the webhook's self-made CA without --ca-file" "$out"
  elif grep -qi "certificate" <<<"$out"; then
    ok "check-webhook refuses an untrusted certificate"
  else
    not_ok "check-webhook failed without naming the certificate" "$out"
  fi

  # -- the agent, init -------------------------------------------------------
  if out=$(run_in "$img" VAULT_INJECTOR_CONFIG="$INIT_CONFIG" \
    "$chroot" --userspec=65532:65532 "$img" vault-injector-agent agent --mode init \
    --secrets-dir /vault/secrets --state-dir /vault/agent \
    --retry-attempts 5 --retry-initial 500ms --retry-max 5s 2>&1); then
    echo "$out" >"$tmp/agent-init.log"
    if python3 - "$img/vault/secrets/db.json" "$SECRET" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d.get("password") == sys.argv[2] and d.get("username") == "app" else 1)
PY
    then
      ok "agent from the image: vault.vault.svc by DNS (no /etc/hosts), TLS, AppRole login, secret rendered"
    else
      not_ok "agent from the image rendered the wrong content"
    fi
  else
    echo "$out" >"$tmp/agent-init.log"
    not_ok "agent --mode init from the image failed" "$out"
  fi

  # -- the agent as a sidecar: commands without a shell ------------------------
  run_in "$img" VAULT_INJECTOR_CONFIG="$SIDECAR_CONFIG" \
    "$chroot" --userspec=65532:65532 "$img" vault-injector-agent agent --mode sidecar \
    --secrets-dir /vault/secrets --state-dir /vault/agent \
    --retry-attempts 5 --retry-initial 500ms --retry-max 5s \
    >"$tmp/sidecar.out" 2>"$tmp/sidecar.err" &
  sidecar=$!
  current=$SECRET
  if wait_for 120 test -s "$img/vault/secrets/side.json"; then
    current=$SECRET-2
    bao kv put -mount=secret app/db username=app password="$current" >/dev/null
    if wait_for 120 test -x "$img/vault/agent/cmd/vault-injector-agent"; then
      ok "sidecar in the image ran the per-secret command after a change, without a shell"
    else
      not_ok "the per-secret command never ran" "$(tail -20 "$tmp/sidecar.err")"
    fi
    if wait_for 60 grep -q '"event":"reload".*no /bin/sh' "$tmp/sidecar.out"; then
      ok "a shell-syntax reload command is reported as needing /bin/sh (audit line, ok=false)"
    else
      not_ok "no audit line for the shell-syntax reload command" "$(tail -5 "$tmp/sidecar.out")"
    fi
  else
    not_ok "sidecar never rendered" "$(tail -20 "$tmp/sidecar.err")"
  fi
  kill -TERM "$sidecar" 2>/dev/null
  wait "$sidecar" 2>/dev/null

  # -- exec in app roots that have no glibc -------------------------------------
  if out=$(run_in "$img" "$chroot" --userspec=65532:65532 "$img" vault-injector-agent copy-self /vault/bin 2>&1); then
    for r in busybox musl scratch; do
      cp "$img/vault/bin/vault-injector-agent" "$tmp/$r/vault/bin/"
    done
    ok "copy-self from the image"
  else
    not_ok "copy-self from the image failed" "$out"
  fi
  exec_in() {
    local name=$1 r=$2
    shift 2
    if out=$(env -i PATH=/bin VAULT_INJECTOR_CONFIG="$INIT_CONFIG" WANT="$current" \
      "$chroot" --userspec=65532:65532 "$r" /vault/bin/vault-injector-agent exec -- "$@" 2>&1); then
      ok "exec from the image in a $name root: the app got DB_PASSWORD"
    else
      not_ok "exec in a $name root failed" "$out"
    fi
    echo "$out" >>"$tmp/exec.log"
  }
  exec_in "busybox (static busybox, no libc)" "$tmp/busybox" /bin/sh -c '[ "$DB_PASSWORD" = "$WANT" ] && echo "app: DB_PASSWORD delivered"'
  exec_in "musl (alpine-like: musl loader, musl app)" "$tmp/musl" /app
  exec_in "scratch (one static app)" "$tmp/scratch" /app
  if out=$("$chroot" "$tmp/musl" /app-glibc 2>&1); then
    not_ok "a glibc app ran in the musl root: the root is not glibc-free"
  else
    ok "control: a glibc-linked app cannot start in the musl root ($(head -1 <<<"$out" | sed 's/^chroot: //'))"
  fi

  # -- hygiene -----------------------------------------------------------------
  leaked=""
  for f in "$tmp"/webhook.out "$tmp"/webhook.err "$tmp"/agent-init.log "$tmp"/sidecar.out \
    "$tmp"/sidecar.err "$tmp"/exec.log; do
    if [ -f "$f" ] && grep -qF "$SECRET" "$f"; then leaked="$leaked $(basename "$f")"; fi
  done
  if [ -z "$leaked" ]; then ok "no secret value in any output"; else not_ok "secret value in:$leaked"; fi
  echo "inside: $passed $failed"
  exit 0
fi

# --- outside: build, inspect, prepare the roots ---------------------------------
missing=""
for t in skopeo umoci busybox musl-gcc gcc readelf unshare chroot ip python3 bao curl; do
  command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
[ -e /lib/ld-musl-x86_64.so.1 ] || missing="$missing musl-loader"
if [ -n "$missing" ] || [ "$(id -u)" != 0 ]; then
  why=${missing:+missing:$missing}
  [ "$(id -u)" != 0 ] && why="$why (needs root for unshare and chroot)"
  if [ "${CI:-}" = true ]; then
    echo "FAIL image test cannot run: $why (scripts/install-tools.sh installs the tools)"
    echo "image: 0 passed, 1 failed"
    exit 1
  fi
  echo "image: skipped ($why); CI=true makes this a failure"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log="$root/target/image/build.log"
mkdir -p "$root/target/image"
echo "building the image (scripts/build-image.sh, log in $log)"
if ! "$root/scripts/build-image.sh" >"$log" 2>&1; then
  not_ok "scripts/build-image.sh failed" "$(tail -30 "$log")"
  echo "image: $passed passed, $failed failed"
  exit 1
fi
# shellcheck disable=SC1091
. "$root/target/image/image.env"
tag=${IMAGE##*:}
ok "make image: $IMAGE, vault-injector $WEBHOOK_BYTES bytes, vault-injector-agent $AGENT_BYTES bytes, archive $ARCHIVE_BYTES bytes"

# -- the binaries -----------------------------------------------------------------
for bin in "$WEBHOOK_BIN" "$AGENT_BIN"; do
  name=$(basename "$bin")
  if readelf -lW "$bin" | grep -q 'program interpreter' || readelf -dW "$bin" | grep -q NEEDED; then
    not_ok "$name is not statically linked"
  else
    ok "$name is statically linked (no interpreter, no shared libraries)"
  fi
  if v=$("$bin" --version) && [ "$v" = "$name $VERSION ($REVISION)" ]; then
    ok "$name --version: $v"
  else
    not_ok "$name --version is '$v', expected '$name $VERSION ($REVISION)'"
  fi
done
if [ "$AGENT_BYTES" -le 6000000 ]; then ok "vault-injector-agent is <= 6 MB ($AGENT_BYTES bytes)"; else not_ok "vault-injector-agent is $AGENT_BYTES bytes (> 6 MB)"; fi

# -- versions agree ---------------------------------------------------------------
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/charts/vault-injector/Chart.yaml")
docker_version=$(sed -n 's/^ARG VERSION=//p' "$root/Dockerfile")
if [ "$app_version" = "$VERSION" ] && [ "$docker_version" = "$VERSION" ] && [ -n "${IMAGE_TAG:-}$VERSION" ] \
  && { [ -n "${IMAGE_TAG:-}" ] || [ "$tag" = "$app_version" ]; }; then
  ok "image tag, chart appVersion, Dockerfile VERSION and crate version agree ($VERSION)"
else
  not_ok "versions disagree: crates $VERSION, chart appVersion $app_version, Dockerfile $docker_version, image tag $tag"
fi

# -- the archive ------------------------------------------------------------------
if out=$(skopeo inspect "oci-archive:$ARCHIVE:$tag" 2>&1) && cfg=$(skopeo inspect --config "oci-archive:$ARCHIVE:$tag" 2>&1); then
  ok "skopeo reads oci-archive:$tag"
else
  not_ok "skopeo cannot read the OCI archive" "$out $cfg"
fi
# docker load, kind and ctr import read manifest.json; skopeo's docker-archive
# transport reads it the same way, here by the tag it lists.
if out=$(skopeo inspect "docker-archive:$ARCHIVE:$IMAGE" 2>&1) \
  && grep -q "\"org.opencontainers.image.revision\": \"$REVISION\"" <<<"$out"; then
  ok "skopeo reads it as docker-archive:$IMAGE too (the Docker manifest.json)"
else
  not_ok "the archive is not a readable docker-archive tagged $IMAGE" "$out"
fi
if out=$(skopeo copy --quiet "oci-archive:$ARCHIVE:$tag" "docker-archive:$tmp/docker.tar:$IMAGE" 2>&1) \
  && skopeo inspect "docker-archive:$tmp/docker.tar" >/dev/null 2>&1; then
  ok "skopeo copy oci-archive: -> docker-archive:"
else
  not_ok "skopeo copy to docker-archive failed" "$out"
fi
mkdir -p "$tmp/oci"
tar -xf "$ARCHIVE" -C "$tmp/oci"
if out=$(umoci unpack --image "$tmp/oci:$tag" "$tmp/bundle" 2>&1); then
  ok "umoci unpacks the image into a runtime bundle"
else
  not_ok "umoci unpack failed" "$out"
  echo "image: $passed passed, $failed failed"
  exit 1
fi

# -- the same as the Dockerfile -------------------------------------------------------
python3 "$root/scripts/oci-image.py" --dockerfile "$root/Dockerfile" --describe \
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" >"$tmp/describe.json"
echo "$cfg" >"$tmp/config.json"
if out=$(python3 - "$tmp/describe.json" "$tmp/config.json" "$tmp/bundle" "$WEBHOOK_BIN" "$AGENT_BIN" "$root" <<'PY' 2>&1
import hashlib, json, os, sys
want = json.load(open(sys.argv[1]))
cfg = json.load(open(sys.argv[2]))
bundle, webhook, agent, root = sys.argv[3:7]
c = cfg["config"]
problems = []
def same(what, got, exp):
    if got != exp:
        problems.append(f"{what}: image has {got!r}, Dockerfile says {exp!r}")
same("User", c.get("User"), want["user"])
same("Entrypoint", c.get("Entrypoint"), want["entrypoint"])
same("Cmd", c.get("Cmd"), want["cmd"])
same("Env", c.get("Env"), want["env"])
same("Labels", c.get("Labels"), want["labels"])
same("ExposedPorts", sorted(c.get("ExposedPorts", {})), sorted(want["exposed"]))
rootfs = os.path.join(bundle, "rootfs")
files = sorted("/" + os.path.relpath(os.path.join(d, f), rootfs)
               for d, _, fs in os.walk(rootfs) for f in fs)
same("files", files, sorted(f["dst"] for f in want["files"]))
local = {"vault-injector": webhook, "vault-injector-agent": agent}
for f in want["files"]:
    src = local[os.path.basename(f["dst"])]
    expect_src = os.path.join(root, os.path.relpath(f["src"], "/src"))
    same(f"{f['dst']} source", os.path.realpath(src), os.path.realpath(expect_src))
    got = hashlib.sha256(open(rootfs + f["dst"], "rb").read()).hexdigest()
    same(f"{f['dst']} content", got, hashlib.sha256(open(src, "rb").read()).hexdigest())
    if not os.access(rootfs + f["dst"], os.X_OK):
        problems.append(f"{f['dst']} is not executable")
spec = json.load(open(os.path.join(bundle, "config.json")))
same("runtime uid:gid", f"{spec['process']['user']['uid']}:{spec['process']['user']['gid']}", want["user"])
if want["user"].split(":")[0] == "0":
    problems.append("the image runs as root")
for label in ["source", "version", "revision", "licenses"]:
    if not c.get("Labels", {}).get("org.opencontainers.image." + label):
        problems.append(f"label org.opencontainers.image.{label} missing")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
); then
  ok "the archive holds exactly the Dockerfile's final stage (files, user, entrypoint, env, labels, ports)"
else
  not_ok "the archive and the Dockerfile differ" "$out"
fi
if [ ! -e "$tmp/bundle/rootfs/bin/sh" ] && [ ! -e "$tmp/bundle/rootfs/etc" ] && [ ! -e "$tmp/bundle/rootfs/lib" ]; then
  ok "no shell, no /etc, no libc in the image"
else
  not_ok "the image holds more than the binaries" "$(cd "$tmp/bundle/rootfs" && find . | head)"
fi
python3 "$root/scripts/oci-image.py" --dockerfile "$root/Dockerfile" --context "$root" \
  --out "$tmp/again.oci.tar" --tag "$IMAGE" --build-arg "VERSION=$VERSION" \
  --build-arg "REVISION=$REVISION" --epoch "$EPOCH" >/dev/null
if cmp -s "$ARCHIVE" "$tmp/again.oci.tar"; then
  ok "the archive is reproducible (same inputs, same bytes: $(sha256sum "$ARCHIVE" | cut -c1-16))"
else
  not_ok "writing the archive twice gave different bytes"
fi

# -- SBOM ----------------------------------------------------------------------------
if out=$(python3 - "$SBOM" "$VERSION" <<'PY' 2>&1
import json, sys
b = json.load(open(sys.argv[1]))
names = {c["name"]: c for c in b["components"]}
problems = []
if b.get("bomFormat") != "CycloneDX" or b.get("specVersion") != "1.5":
    problems.append("not CycloneDX 1.5")
for n in ["vault-injector", "vault-injector-agent", "tokio", "rustls", "ring", "vaultrs", "hyper"]:
    if n not in names:
        problems.append(f"{n} missing")
for n in ["proptest", "tempfile", "tower-test", "vault-injector-testkit", "serde_derive"]:
    if n in names:
        problems.append(f"{n} (dev-only or a proc macro) listed")
for c in b["components"]:
    if not c.get("purl", "").startswith("pkg:cargo/") or "licenses" not in c:
        problems.append(f"{c['name']}: no purl or license")
    if not c["name"].startswith("vault-injector") and not c.get("hashes"):
        problems.append(f"{c['name']}: no hash")
if b["metadata"]["component"]["version"] != sys.argv[2]:
    problems.append("wrong image version")
print("\n".join(problems) if problems else len(b["components"]))
sys.exit(1 if problems else 0)
PY
); then
  ok "SBOM: CycloneDX 1.5, $out crates with purl, license and hash; no dev-only crates"
else
  not_ok "SBOM" "$out"
fi

# -- the roots ---------------------------------------------------------------------------
img=$tmp/img
cp -a "$tmp/bundle/rootfs" "$img"
# What the container runtime and the pod add: mount points, resolv.conf, the
# volumes (here plain directories and files).
mkdir -p "$img"/{proc,dev,tmp,etc,vault/secrets,vault/agent,vault/bin,test}
printf 'nameserver 127.0.0.1\noptions ndots:5\nsearch default.svc.cluster.local svc.cluster.local\n' >"$img/etc/resolv.conf"
"$WEBHOOK_BIN" certs --out "$img/test/webhook" --host webhook.vault-injector.svc >/dev/null
"$WEBHOOK_BIN" certs --out "$tmp/vault-tls" --host vault.vault.svc >/dev/null
chown -R 65532:65532 "$img/test" "$img/vault"

cat >"$tmp/bao-tls.hcl" <<HCL
listener "tcp" {
  address       = "127.0.0.1:8300"
  tls_cert_file = "$tmp/vault-tls/tls.crt"
  tls_key_file  = "$tmp/vault-tls/tls.key"
}
HCL
# A DNS server for the test's network namespace: every A query -> 127.0.0.1.
cat >"$tmp/dns.py" <<'PY'
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    q, addr = s.recvfrom(512)
    if len(q) < 17:
        continue
    tid = struct.unpack(">H", q[:2])[0]
    i = 12
    while i < len(q) and q[i]:
        i += q[i] + 1
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    print("query", question[:-4], qtype, flush=True)
    if qtype == 1:
        ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton("127.0.0.1")
    else:
        ans = b""
    s.sendto(struct.pack(">HHHHHH", tid, 0x8180, 1, 1 if ans else 0, 0, 0) + question + ans, addr)
PY

for r in busybox musl scratch; do
  mkdir -p "$tmp/$r"/{proc,dev,etc,vault/bin,test}
  cp "$img/etc/resolv.conf" "$tmp/$r/etc/"
done
cat >"$tmp/app.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    const char *v = getenv("DB_PASSWORD"), *w = getenv("WANT");
    if (!v || !w || strcmp(v, w) != 0) { fputs("app: DB_PASSWORD missing or wrong\n", stderr); return 1; }
    puts("app: DB_PASSWORD delivered");
    return 0;
}
C
mkdir -p "$tmp/busybox/bin"
cp "$(command -v busybox)" "$tmp/busybox/bin/busybox"
for a in sh echo env cat test '['; do ln -s busybox "$tmp/busybox/bin/$a"; done
mkdir -p "$tmp/musl/lib"
cp -L /lib/ld-musl-x86_64.so.1 "$tmp/musl/lib/ld-musl-x86_64.so.1"
musl-gcc -O2 -o "$tmp/musl/app" "$tmp/app.c"
gcc -O2 -o "$tmp/musl/app-glibc" "$tmp/app.c"
gcc -O2 -static -o "$tmp/scratch/app" "$tmp/app.c"
if readelf -lW "$tmp/busybox/bin/busybox" | grep -q 'program interpreter'; then
  not_ok "busybox is dynamically linked: install busybox-static (scripts/install-tools.sh)"
else
  ok "busybox root: a static busybox, no loader, no libc"
fi
if readelf -lW "$tmp/musl/app" | grep -q 'ld-musl'; then
  ok "musl root: a dynamically linked musl app and the musl loader, no glibc"
else
  not_ok "the musl app is not linked against the musl loader"
fi
chown -R 65532:65532 "$tmp"/{busybox,musl,scratch}/vault

secret="s3cr3t-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
ca_json=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$tmp/vault-tls/ca.crt")
agent_config() {
  cat <<JSON
{"vault": {"address": "https://vault.vault.svc:8300", "caPem": $ca_json},
 "auth": {"method": "approle", "mount": "approle", "roleIdPath": "/test/approle/role-id", "secretIdPath": "/test/approle/secret-id"},
 "secrets": [$1],
 "env": [{"var": "DB_PASSWORD", "path": "secret/data/app/db", "key": "password"}],
 "refreshIntervalSecs": 1, "logFormat": "json",
 $2
 "pod": {"namespace": "default", "name": "image-test", "serviceAccount": "app"}}
JSON
}
{
  echo "SECRET='$secret'"
  printf 'INIT_CONFIG=%q\n' "$(agent_config '{"name": "db", "path": "secret/data/app/db", "file": "db.json"}' '')"
  printf 'SIDECAR_CONFIG=%q\n' "$(agent_config \
    '{"name": "side", "path": "secret/data/app/db", "file": "side.json", "command": "vault-injector-agent copy-self /vault/agent/cmd"}' \
    '"reload": {"command": {"command": "kill -HUP $(pidof app)"}},')"
} >"$tmp/vars"

echo "running the image's binaries in fresh namespaces (unshare --mount --pid --net, chroot)"
inner=$(unshare --mount --pid --net --fork --kill-child "$root/scripts/test-image.sh" --inside "$tmp" 2>&1)
echo "$inner" | grep -v '^inside: '
counts=$(grep '^inside: ' <<<"$inner" | tail -1)
if [ -z "$counts" ]; then
  not_ok "the namespaced part did not finish" "$inner"
else
  read -r _ p f <<<"$counts"
  passed=$((passed + p))
  failed=$((failed + f))
fi

echo "image: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
