#!/usr/bin/env bash
# `make image`: the project's image without Docker or any daemon.
#   1. both binaries, statically linked (.cargo/static.toml): vault-injector
#      (release profile) and vault-injector-agent (agent profile, small);
#      checked to have no program interpreter, the agent to stay <= 6 MB;
#   2. target/image/vault-injector.oci.tar: the final stage of the Dockerfile,
#      written by scripts/oci-image.py (OCI layout + Docker manifest.json);
#   3. target/image/vault-injector.cdx.json: CycloneDX SBOM of the Rust
#      crates in the binaries (scripts/sbom.py);
#   4. target/image/image.env: what was built (tag, digests, sizes), read by
#      scripts/test-image.sh.
# Incremental: cargo rebuilds only what changed; the archive is rewritten.
# Environment: IMAGE_REPOSITORY (default ghcr.io/vault-injector/vault-injector),
# IMAGE_TAG (default: the workspace version), VAULT_INJECTOR_REVISION
# (default: git, "-dirty" with uncommitted changes, "unknown" without git),
# SOURCE_DATE_EPOCH (default: the last commit's time).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
CARGO=${CARGO:-cargo}
triple=x86_64-unknown-linux-gnu
out="$root/target/image"
# The agent is copied into every injected pod's memory by copy-self.
AGENT_MAX_BYTES=$((6 * 1000 * 1000))

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
repository=${IMAGE_REPOSITORY:-ghcr.io/vault-injector/vault-injector}
tag=${IMAGE_TAG:-$version}
if [ -z "${VAULT_INJECTOR_REVISION:-}" ]; then
  if VAULT_INJECTOR_REVISION=$(git rev-parse --short=12 HEAD 2>/dev/null); then
    git diff --quiet HEAD 2>/dev/null || VAULT_INJECTOR_REVISION+=-dirty
  else
    VAULT_INJECTOR_REVISION=unknown
  fi
fi
export VAULT_INJECTOR_REVISION
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

log() { echo "build-image: $*" >&2; }

log "static binaries ($version, revision $VAULT_INJECTOR_REVISION)"
$CARGO build --locked --config .cargo/static.toml --target "$triple" \
  --release -p vault-injector --bin vault-injector
$CARGO build --locked --config .cargo/static.toml --target "$triple" \
  --profile agent -p vault-injector-agent
webhook_bin="$root/target/$triple/release/vault-injector"
agent_bin="$root/target/$triple/agent/vault-injector-agent"

for bin in "$webhook_bin" "$agent_bin"; do
  if readelf -lW "$bin" | grep -q 'Requesting program interpreter'; then
    log "$bin is dynamically linked (has a program interpreter)"; exit 1
  fi
  if readelf -dW "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
    log "$bin needs shared libraries: $(readelf -dW "$bin" | grep NEEDED)"; exit 1
  fi
done
agent_bytes=$(stat -c %s "$agent_bin")
webhook_bytes=$(stat -c %s "$webhook_bin")
if [ "$agent_bytes" -gt "$AGENT_MAX_BYTES" ]; then
  log "vault-injector-agent is $agent_bytes bytes, over the $AGENT_MAX_BYTES limit"; exit 1
fi

mkdir -p "$out"
log "writing $out/vault-injector.oci.tar ($repository:$tag)"
digests=$(python3 scripts/oci-image.py --dockerfile Dockerfile --context "$root" \
  --out "$out/vault-injector.oci.tar" --tag "$repository:$tag" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$VAULT_INJECTOR_REVISION" --epoch "$epoch")

log "writing $out/vault-injector.cdx.json"
$CARGO metadata --locked --format-version 1 --filter-platform "$triple" >"$out/metadata.json"
python3 scripts/sbom.py --metadata "$out/metadata.json" --lock Cargo.lock \
  --root vault-injector --root vault-injector-agent --image vault-injector --version "$tag" \
  --epoch "$epoch" >"$out/vault-injector.cdx.json"
rm -f "$out/metadata.json"

archive_bytes=$(stat -c %s "$out/vault-injector.oci.tar")
cat >"$out/image.env" <<ENV
IMAGE=$repository:$tag
VERSION=$version
REVISION=$VAULT_INJECTOR_REVISION
ARCHIVE=$out/vault-injector.oci.tar
SBOM=$out/vault-injector.cdx.json
WEBHOOK_BIN=$webhook_bin
AGENT_BIN=$agent_bin
WEBHOOK_BYTES=$webhook_bytes
AGENT_BYTES=$agent_bytes
ARCHIVE_BYTES=$archive_bytes
EPOCH=$epoch
DIGESTS='$digests'
ENV
log "vault-injector $webhook_bytes bytes, vault-injector-agent $agent_bytes bytes, archive $archive_bytes bytes (gzip layer)"
echo "$out/vault-injector.oci.tar"
