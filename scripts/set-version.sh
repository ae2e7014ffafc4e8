#!/usr/bin/env bash
# The one place that sets the release version, for everything that carries
# it: the crates (Cargo.toml [workspace.package] and Cargo.lock), the chart
# (Chart.yaml version and appVersion, which is the image tag `make image`
# gives and the chart pulls), the Dockerfile's VERSION, and the CHANGELOG
# (the "Unreleased" section becomes "X.Y.Z - date", a new empty one opens).
#   scripts/set-version.sh 0.2.0
#   scripts/set-version.sh --check     # exit 1 unless every place agrees
# --root DIR works on another checkout (the test uses a copy).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--root" ]; then
  root=$(cd "$2" && pwd)
  shift 2
fi
want=${1:?usage: set-version.sh [--root DIR] X.Y.Z | --check}

cargo_version() { sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml"; }
# Every place and the version it holds, one per line.
versions() {
  echo "Cargo.toml $(cargo_version)"
  python3 - "$root/Cargo.lock" <<'PY'
import re, sys
lock = open(sys.argv[1]).read()
for m in re.finditer(r'\[\[package\]\]\nname = "(vault-injector[a-z-]*)"\nversion = "([^"]*)"\n(?!source)', lock):
    print(f"Cargo.lock:{m.group(1)} {m.group(2)}")
PY
  echo "Chart.yaml:version $(sed -n 's/^version: *//p' "$root/charts/vault-injector/Chart.yaml")"
  echo "Chart.yaml:appVersion $(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/charts/vault-injector/Chart.yaml")"
  echo "Dockerfile:VERSION $(sed -n 's/^ARG VERSION=//p' "$root/Dockerfile")"
}

if [ "$want" = "--check" ]; then
  v=$(cargo_version)
  bad=$(versions | awk -v v="$v" '$2 != v')
  if [ -n "$bad" ] || [ "$(versions | wc -l)" -lt 8 ]; then
    echo "set-version: versions disagree with Cargo.toml's $v:" >&2
    versions >&2
    exit 1
  fi
  echo "$v"
  exit 0
fi

if ! [[ $want =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "set-version: $want is not a semantic version (X.Y.Z or X.Y.Z-pre)" >&2
  exit 2
fi
old=$(cargo_version)
sed -i '/^\[workspace.package\]/,/^\[/s/^version = ".*"/version = "'"$want"'"/' "$root/Cargo.toml"
python3 - "$root/Cargo.lock" "$want" <<'PY'
import re, sys
path, want = sys.argv[1:3]
lock = open(path).read()
lock = re.sub(r'(\[\[package\]\]\nname = "vault-injector[a-z-]*"\nversion = ")[^"]*("\n(?!source))',
              lambda m: m.group(1) + want + m.group(2), lock)
open(path, "w").write(lock)
PY
sed -i -e "s/^version: .*/version: $want/" -e "s/^appVersion: .*/appVersion: \"$want\"/" \
  "$root/charts/vault-injector/Chart.yaml"
sed -i "s/^ARG VERSION=.*/ARG VERSION=$want/" "$root/Dockerfile"
if [ -f "$root/CHANGELOG.md" ] && grep -q '^## Unreleased' "$root/CHANGELOG.md"; then
  sed -i "s/^## Unreleased.*/## Unreleased\n\n## $want - $(date -u +%Y-%m-%d)/" "$root/CHANGELOG.md"
fi
echo "set-version: $old -> $want" >&2
"$0" --root "$root" --check >/dev/null
