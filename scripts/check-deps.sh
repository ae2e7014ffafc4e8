#!/usr/bin/env bash
# The crate boundaries the compiler cannot see, checked on the dependency
# trees (`make test` runs it):
#   - vault-injector-core is pure: no async runtime, HTTP, Kubernetes
#     client, Vault client or TLS stack in its normal dependencies;
#   - vault-injector-agent (what runs in every pod) links no Kubernetes
#     types, HTTP server, metrics or certificate tooling (hyper comes in
#     as the Vault client's HTTP client only: no "server" feature).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}

check() {
  local package=$1 forbidden=$2 found
  found=$("$cargo" tree -p "$package" -e normal --prefix none --format '{p}' \
    | awk '{print $1}' | sort -u | grep -Ex "$forbidden" || true)
  if [ -n "$found" ]; then
    echo "check-deps: $package must not depend on:" $found >&2
    "$cargo" tree -p "$package" -e normal -i "$(echo "$found" | head -n1)" >&2 || true
    exit 1
  fi
  echo "check-deps: $package: none of $forbidden"
}

check vault-injector-core 'tokio|hyper|hyper-util|kube|kube-client|vaultrs|reqwest|rustls|tokio-rustls'
check vault-injector-agent 'kube|kube-core|kube-client|k8s-openapi|prometheus-client|rcgen|x509-parser|json-patch'
for http in hyper hyper-util; do
  if "$cargo" tree -p vault-injector-agent -e features -i "$http" --prefix none \
    | grep -q "$http feature \"server"; then
    echo "check-deps: vault-injector-agent must not build $http's server" >&2
    exit 1
  fi
done
echo "check-deps: vault-injector-agent: hyper and hyper-util without their servers"
