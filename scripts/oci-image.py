#!/usr/bin/env python3
"""Writes the image the final stage of the Dockerfile describes, without
Docker or any daemon: one OCI image layout in one tar, which also carries a
Docker `manifest.json`, so `docker load`, `podman load`, `kind load
image-archive`, `ctr images import` and skopeo (`oci-archive:` and
`docker-archive:`) all read it.

    oci-image.py --dockerfile Dockerfile --context . --out X.oci.tar \
        --tag REPO:TAG --build-arg VERSION=... --build-arg REVISION=... \
        [--map /src=DIR] [--epoch SECONDS] [--describe]

The final stage must be `FROM scratch` and use only ARG, LABEL, ENV, USER,
EXPOSE, WORKDIR, ENTRYPOINT, CMD and `COPY --from=STAGE SRC DST`; a stage
path under the build stage's WORKDIR is read from the matching local
directory (`--map`, default: that WORKDIR -> --context). Anything else is an
error rather than an image that silently differs from a Docker build.

Reproducible: sorted entries, root-owned, mtimes and `created` from
--epoch (SOURCE_DATE_EPOCH), gzip without a timestamp. `--describe` prints
the parsed stage as JSON (what scripts/test-image.sh compares the archive
with) and writes nothing.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import sys
import tarfile
import time

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def fail(msg):
    sys.exit(f"oci-image: {msg}")


def logical_lines(text):
    """Dockerfile lines with comments dropped and continuations joined."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        out.append(cur + line)
        cur = ""
    if cur:
        out.append(cur)
    return out


def substitute(value, args):
    def one(m):
        name = m.group(1) or m.group(2)
        if name not in args:
            fail(f"${{{name}}} is not a declared ARG")
        return args[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", one, value)


def pairs(rest, args):
    """`k=v k2="v 2"` (LABEL, ENV) -> list of (k, v)."""
    out = []
    for word in shlex.split(rest):
        if "=" not in word:
            fail(f"expected KEY=VALUE, got {word!r}")
        k, v = word.split("=", 1)
        out.append((k, substitute(v, args)))
    return out


def parse(dockerfile, build_args):
    """The final stage: its config and files, as a dict."""
    lines = logical_lines(open(dockerfile).read())
    stages, cur = [], None
    global_args = {}
    for line in lines:
        inst, _, rest = line.partition(" ")
        inst = inst.upper()
        rest = rest.strip()
        if inst == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            if not m:
                fail(f"cannot parse FROM {rest!r}")
            cur = {"from": m.group(1), "name": m.group(2), "lines": [], "workdir": "/"}
            stages.append(cur)
        elif cur is None:
            if inst != "ARG":
                fail(f"{inst} before the first FROM")
            k, _, v = rest.partition("=")
            global_args[k] = build_args.get(k, v)
        else:
            cur["lines"].append((inst, rest))
            if inst == "WORKDIR":
                cur["workdir"] = rest
    if not stages:
        fail("no FROM")
    final = stages[-1]
    if final["from"] != "scratch":
        fail(f"the final stage must be FROM scratch, not {final['from']}")
    named = {s["name"]: s for s in stages if s["name"]}
    args = {}
    image = {"user": "", "env": [], "labels": {}, "exposed": [], "workdir": "",
             "entrypoint": None, "cmd": None, "files": []}
    for inst, rest in final["lines"]:
        if inst == "ARG":
            k, has_default, v = rest.partition("=")
            args[k] = build_args.get(k, v if has_default else global_args.get(k, ""))
        elif inst == "LABEL":
            image["labels"].update(pairs(rest, args))
        elif inst == "ENV":
            for k, v in pairs(rest, args):
                image["env"] = [e for e in image["env"] if not e.startswith(k + "=")] + [f"{k}={v}"]
        elif inst == "USER":
            image["user"] = substitute(rest, args)
        elif inst == "EXPOSE":
            image["exposed"] += [p if "/" in p else p + "/tcp" for p in rest.split()]
        elif inst == "WORKDIR":
            image["workdir"] = substitute(rest, args)
        elif inst in ("ENTRYPOINT", "CMD"):
            try:
                value = json.loads(rest)
            except ValueError:
                fail(f"{inst} must be in JSON form (there is no shell): {rest!r}")
            image[inst.lower()] = value
        elif inst == "COPY":
            words = rest.split()
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            if stage not in named or len(flags) != 1 or len(paths) != 2:
                fail(f"only `COPY --from=STAGE SRC DST` is supported: {rest!r}")
            src, dst = (substitute(p, args) for p in paths)
            image["files"].append({"stage": stage, "src": src, "dst": dst})
        else:
            fail(f"{inst} is not supported in the final stage")
    image["stage_workdirs"] = {n: s["workdir"] for n, s in named.items()}
    return image


def local_path(f, image, maps, context):
    for prefix, local in maps:
        if f["src"] == prefix or f["src"].startswith(prefix.rstrip("/") + "/"):
            return os.path.join(local, os.path.relpath(f["src"], prefix))
    workdir = image["stage_workdirs"][f["stage"]]
    if f["src"].startswith(workdir.rstrip("/") + "/"):
        return os.path.join(context, os.path.relpath(f["src"], workdir))
    fail(f"{f['src']} is outside the build stage's WORKDIR {workdir}; pass --map")


def layer_tar(entries, epoch):
    """Uncompressed layer: parent directories, then files, sorted."""
    files = {}
    for dst, local in entries:
        files[dst.lstrip("/")] = local
    dirs = set()
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs | set(files)):
            info = tarfile.TarInfo(name)
            info.mtime = epoch
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if name in files:
                data = open(files[name], "rb").read()
                info.size = len(data)
                info.mode = 0o755
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
    return buf.getvalue()


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dockerfile", required=True)
    ap.add_argument("--context", default=".")
    ap.add_argument("--out")
    ap.add_argument("--tag", action="append", default=[])
    ap.add_argument("--build-arg", action="append", default=[])
    ap.add_argument("--map", action="append", default=[])
    ap.add_argument("--epoch", type=int, default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--describe", action="store_true")
    a = ap.parse_args()
    build_args = dict(x.split("=", 1) for x in a.build_arg)
    image = parse(a.dockerfile, build_args)
    if a.describe:
        del image["stage_workdirs"]
        print(json.dumps(image, indent=2, sort_keys=True))
        return
    if not a.out or not a.tag:
        fail("--out and --tag are required")
    maps = [m.split("=", 1) for m in a.map]
    entries = []
    for f in image["files"]:
        local = local_path(f, image, maps, a.context)
        if not os.path.isfile(local):
            fail(f"{local} (for {f['dst']}) does not exist: build it first")
        entries.append((f["dst"], local))

    layer = layer_tar(entries, a.epoch)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=9) as z:
        z.write(layer)
    layer_digest, layer_gz = blob(gz.getvalue())

    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.epoch))
    config = {"User": image["user"], "Env": image["env"], "Labels": image["labels"]}
    if image["entrypoint"] is not None:
        config["Entrypoint"] = image["entrypoint"]
    if image["cmd"] is not None:
        config["Cmd"] = image["cmd"]
    if image["exposed"]:
        config["ExposedPorts"] = {p: {} for p in image["exposed"]}
    if image["workdir"]:
        config["WorkingDir"] = image["workdir"]
    cfg_doc = {
        "architecture": a.arch,
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "scripts/oci-image.py (" + os.path.basename(a.dockerfile) + ")"}],
    }
    cfg_digest, cfg_bytes = blob(json.dumps(cfg_doc, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cfg_digest, "size": len(cfg_bytes)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer_gz)}],
        "annotations": {k: v for k, v in image["labels"].items()} | {"org.opencontainers.image.created": created},
    }
    man_digest, man_bytes = blob(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": man_digest,
                "size": len(man_bytes),
                "platform": {"architecture": a.arch, "os": "linux"},
                "annotations": {
                    # containerd (ctr, kind) and Docker read the full name;
                    # skopeo and umoci address the image by the tag alone.
                    "io.containerd.image.name": tag,
                    "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[1],
                },
            }
            for tag in a.tag
        ],
    }
    docker_manifest = [{
        "Config": "blobs/sha256/" + cfg_digest[7:],
        "RepoTags": a.tag,
        "Layers": ["blobs/sha256/" + layer_digest[7:]],
    }]
    files = [
        ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
        ("index.json", json.dumps(index, sort_keys=True, separators=(",", ":")).encode()),
        ("manifest.json", json.dumps(docker_manifest, separators=(",", ":")).encode()),
        ("blobs", None),
        ("blobs/sha256", None),
    ] + sorted(
        ("blobs/sha256/" + d[7:], b)
        for d, b in [(cfg_digest, cfg_bytes), (man_digest, man_bytes), (layer_digest, layer_gz)]
    )
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.mtime = a.epoch
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, a.out)
    print(json.dumps({"manifest": man_digest, "config": cfg_digest, "layer": layer_digest,
                      "layer_bytes": len(layer), "layer_gzip_bytes": len(layer_gz)}))


if __name__ == "__main__":
    main()
