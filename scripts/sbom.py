#!/usr/bin/env python3
"""CycloneDX 1.5 JSON SBOM of the Rust crates linked into the image's
binaries, from `cargo metadata` (no extra tool: cargo-cyclonedx and
cargo-auditable would have to be compiled from crates.io on every fresh
machine).

    sbom.py --metadata METADATA.json --lock Cargo.lock --root vault-injector \
        --root vault-injector-agent --version V --epoch SECONDS > sbom.cdx.json

What is listed: every package reachable from the roots through normal
(not dev, not build) dependencies for the image's platform, so build
scripts' helpers are left out, and proc macros, which run in the compiler
and are not linked. Cargo resolves features once for the workspace, so a
crate a test alone enables a feature of is still the crate that ships.
Each component has its purl, license expression, and the SHA-256 of its
crates.io archive from Cargo.lock.
"""
import argparse
import json
import re
import sys
import time
import uuid


def lock_checksums(path):
    sums, cur = {}, {}
    for line in open(path):
        m = re.match(r'(name|version|checksum) = "(.*)"', line.strip())
        if m:
            cur[m.group(1)] = m.group(2)
        elif line.startswith("[[package]]"):
            cur = {}
        if {"name", "version", "checksum"} <= cur.keys():
            sums[(cur["name"], cur["version"])] = cur["checksum"]
    return sums


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metadata", required=True)
    ap.add_argument("--lock", required=True)
    ap.add_argument("--root", action="append", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--epoch", type=int, default=0)
    ap.add_argument("--image", default="vault-injector")
    a = ap.parse_args()

    meta = json.load(open(a.metadata))
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    sums = lock_checksums(a.lock)
    by_name = {p["name"]: p["id"] for p in meta["packages"] if p["id"] in meta["workspace_members"]}
    roots = []
    for r in a.root:
        if r not in by_name:
            sys.exit(f"sbom: {r} is not a workspace package")
        roots.append(by_name[r])

    def proc_macro(pid):
        return any("proc-macro" in t["kind"] for t in packages[pid]["targets"])

    def normal_deps(pid):
        for d in nodes[pid]["deps"]:
            if any(k["kind"] is None for k in d["dep_kinds"]) and not proc_macro(d["pkg"]):
                yield d["pkg"]

    seen, stack = set(), list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(normal_deps(pid))

    def purl(p):
        return f"pkg:cargo/{p['name']}@{p['version']}"

    components = []
    for pid in sorted(seen, key=lambda i: (packages[i]["name"], packages[i]["version"])):
        p = packages[pid]
        c = {
            "type": "application" if pid in roots else "library",
            "bom-ref": purl(p),
            "name": p["name"],
            "version": p["version"],
            "purl": purl(p),
        }
        if p.get("description"):
            c["description"] = " ".join(p["description"].split())
        if p.get("license"):
            c["licenses"] = [{"expression": p["license"]}]
        checksum = sums.get((p["name"], p["version"]))
        if checksum:
            c["hashes"] = [{"alg": "SHA-256", "content": checksum}]
        refs = []
        if p.get("repository"):
            refs.append({"type": "vcs", "url": p["repository"]})
        if p.get("homepage"):
            refs.append({"type": "website", "url": p["homepage"]})
        if refs:
            c["externalReferences"] = refs
        components.append(c)

    image_ref = f"pkg:oci/{a.image}@{a.version}"
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        # Same inputs, same document: the serial number derives from them.
        "serialNumber": "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, image_ref + "#" + ",".join(c["purl"] for c in components))),
        "version": 1,
        "metadata": {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.epoch)),
            "tools": {"components": [{"type": "application", "name": "scripts/sbom.py (cargo metadata)"}]},
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": a.image,
                "version": a.version,
                "licenses": [{"expression": "Apache-2.0"}],
            },
        },
        "components": components,
        "dependencies": [{"ref": image_ref, "dependsOn": sorted(purl(packages[r]) for r in roots)}]
        + [
            {"ref": purl(packages[pid]), "dependsOn": sorted({purl(packages[d]) for d in normal_deps(pid)})}
            for pid in sorted(seen, key=lambda i: (packages[i]["name"], packages[i]["version"]))
        ],
    }
    json.dump(bom, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
