#!/usr/bin/env bash
# Agent benchmark: vault-injector-agent vs `bao agent`, same OpenBao dev
# server, same 10 KV v2 secrets, same AppRole auth, same refresh interval,
# run one after the other in one invocation.
#
# Measures, per agent:
#   - time from process start to all 10 files rendered (median of --runs);
#   - peak RSS (VmHWM) over the startup runs and the steady window;
#   - steady-state RSS (VmRSS at the end) and CPU (utime+stime) over
#     --steady seconds of sidecar mode;
#   - the size of the agent binary (what `copy-self` puts into each pod's
#     memory volume).
# Targets: peak RSS <= 3 MB, >= 10x faster first render, binary <= 6 MB.
#
# Usage: scripts/bench-agent.sh [--steady SECONDS] [--runs N] [--refresh SECONDS]
#   (defaults: 60 s steady window, 5 startup runs, 30 s refresh)
set -euo pipefail

steady=${BENCH_STEADY_SECS:-60}
runs=${BENCH_RUNS:-5}
refresh=${BENCH_REFRESH_SECS:-30}
while [ $# -gt 0 ]; do
  case "$1" in
    --steady) steady=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --refresh) refresh=$2; shift 2 ;;
    *) echo "usage: $0 [--steady SECONDS] [--runs N] [--refresh SECONDS]" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.tools/bin:$PATH"
# Rendered files go to tmpfs, like the pod's memory volume (emptyDir with
# medium: Memory), for both agents.
shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || shm=${TMPDIR:-/tmp}
work=$(mktemp -d "$shm/bench-agent.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# AGENT_BIN measures another build of the agent (a static one, say)
# instead of the one built here.
if [ -n "${AGENT_BIN:-}" ]; then
  vi=$AGENT_BIN
else
  echo "bench-agent: building the release agent binary" >&2
  (cd "$root" && cargo build --profile agent --quiet -p vault-injector-agent --bin vault-injector-agent)
  vi="$root/target/agent/vault-injector-agent"
fi
bao_bin=$(command -v bao)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export BAO_ADDR="http://127.0.0.1:$port" BAO_TOKEN=root HOME="$work"
bao server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$port" >"$work/bao.log" 2>&1 &
for _ in $(seq 100); do bao status >/dev/null 2>&1 && break; sleep 0.1; done
bao status >/dev/null

for i in $(seq 1 10); do
  bao kv put -mount=secret "bench/s$i" username="user$i" password="$(openssl rand -hex 16)" url="postgres://db$i:5432/app" >/dev/null
done
bao policy write bench - >/dev/null <<'HCL'
path "secret/data/bench/*" { capabilities = ["read"] }
HCL
bao auth enable approle >/dev/null
bao write auth/approle/role/bench token_policies=bench token_ttl=1h >/dev/null
bao read -field=role_id auth/approle/role/bench/role-id >"$work/role-id"
bao write -f -field=secret_id auth/approle/role/bench/secret-id >"$work/secret-id"

# Our agent's config: 10 JSON files.
python3 - "$work" "$BAO_ADDR" "$refresh" >"$work/vi-config.json" <<'PY'
import json, sys
work, addr, refresh = sys.argv[1], sys.argv[2], int(sys.argv[3])
print(json.dumps({
  "vault": {"address": addr},
  "auth": {"method": "approle", "mount": "approle",
           "roleIdPath": f"{work}/role-id", "secretIdPath": f"{work}/secret-id"},
  "secrets": [{"name": f"s{i}", "path": f"secret/data/bench/s{i}", "file": f"s{i}.json"}
              for i in range(1, 11)],
  "refreshIntervalSecs": refresh,
  "logFormat": "json",
}))
PY

# bao agent's config: the same 10 files through templates.
{
  cat <<HCL
vault { address = "$BAO_ADDR" }
auto_auth {
  method "approle" {
    mount_path = "auth/approle"
    config = {
      role_id_file_path = "$work/role-id"
      secret_id_file_path = "$work/secret-id"
      remove_secret_id_file_after_reading = false
    }
  }
  sink "file" { config = { path = "OUT/token" } }
}
template_config {
  static_secret_render_interval = "${refresh}s"
}
HCL
  for i in $(seq 1 10); do
    cat <<HCL
template {
  contents = "{{ with secret \"secret/data/bench/s$i\" }}{{ .Data.data | toJSON }}{{ end }}"
  destination = "OUT/s$i.json"
}
HCL
  done
} >"$work/bao-agent.hcl.in"

python3 - "$work" "$vi" "$bao_bin" "$runs" "$steady" <<'PY'
import json, os, shutil, signal, statistics, subprocess, sys, time

work, vi, bao, runs, steady = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
tick = os.sysconf("SC_CLK_TCK")
files = [f"s{i}.json" for i in range(1, 11)]

def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return 0

def rss_by_file(pid):
    """Resident kB per mapped file, largest first."""
    by, name = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5:
                name = parts[5] if len(parts) > 5 and parts[5].startswith("/") else None
            elif parts[0] == "Rss:" and name:
                by[name] = by.get(name, 0) + int(parts[1])
    return sorted(by.items(), key=lambda kv: -kv[1])

def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])

def launch(kind, out):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    log = open(os.path.join(out, "..", os.path.basename(out) + ".log"), "w")
    if kind == "vault-injector-agent":
        env = dict(os.environ, VAULT_INJECTOR_CONFIG=open(f"{work}/vi-config.json").read())
        cmd = [vi, "agent", "--mode", "sidecar", "--secrets-dir", out,
               "--state-dir", out + "-state"]
    else:
        env = dict(os.environ)
        cfg = open(f"{work}/bao-agent.hcl.in").read().replace("OUT", out)
        path = out + ".hcl"
        open(path, "w").write(cfg)
        cmd = [bao, "agent", "-config", path]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    return p, t0

def all_rendered(out):
    for f in files:
        try:
            if os.path.getsize(os.path.join(out, f)) == 0:
                return False
        except OSError:
            return False
    return True

def start(kind, out):
    p, t0 = launch(kind, out)
    hwm = 0
    while not all_rendered(out):
        if p.poll() is not None:
            sys.exit(f"{kind} exited with {p.returncode}; see {out}.log")
        try:
            hwm = max(hwm, status(p.pid, "VmHWM"))
        except OSError:
            pass
        if time.monotonic() - t0 > 60:
            sys.exit(f"{kind} did not render within 60 s; see {out}.log")
        time.sleep(0.0005)
    return p, time.monotonic() - t0, hwm

def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()

results = {}
for kind in ["vault-injector-agent", "bao agent"]:
    slug = kind.replace(" ", "-")
    times, hwms = [], []
    for r in range(runs):
        p, dt, _ = start(kind, f"{work}/{slug}-{r}")
        hwms.append(status(p.pid, "VmHWM"))
        times.append(dt)
        stop(p)
    p, dt, _ = start(kind, f"{work}/{slug}-steady")
    times.append(dt)
    c0, t0 = cpu_ticks(p.pid), time.monotonic()
    time.sleep(steady)
    c1, t1 = cpu_ticks(p.pid), time.monotonic()
    rss, hwm = status(p.pid, "VmRSS"), status(p.pid, "VmHWM")
    anon, file_ = status(p.pid, "RssAnon"), status(p.pid, "RssFile")
    print(f"{kind}: steady RSS {rss} kB = anonymous {anon} kB + file-backed {file_} kB "
          f"(+ shmem)", file=sys.stderr)
    print(f"{kind}: file-backed RSS by file: " + ", ".join(
        f"{os.path.basename(f)} {kb} kB" for f, kb in rss_by_file(p.pid)[:5]), file=sys.stderr)
    hwms.append(hwm)
    stop(p)
    for f in files:
        a = json.load(open(f"{work}/{slug}-steady/{f}"))
        assert set(a) == {"username", "password", "url"}, (kind, f, list(a))
    results[kind] = {
        "render_ms": statistics.median(times) * 1000,
        "render_ms_min": min(times) * 1000,
        "peak_rss_kb": max(hwms),
        "steady_rss_kb": rss,
        "cpu_pct": 100.0 * (c1 - c0) / tick / (t1 - t0),
        "cpu_ms": 1000.0 * (c1 - c0) / tick,
    }

ours, theirs = results["vault-injector-agent"], results["bao agent"]
print(f"| metric | vault-injector-agent | bao agent | ratio |")
print(f"|---|---|---|---|")
print(f"| time to all 10 files rendered (median of {runs + 1}) | {ours['render_ms']:.1f} ms | {theirs['render_ms']:.1f} ms | {theirs['render_ms'] / ours['render_ms']:.1f}x faster |")
print(f"| peak RSS (VmHWM) | {ours['peak_rss_kb'] / 1024:.1f} MB | {theirs['peak_rss_kb'] / 1024:.1f} MB | {theirs['peak_rss_kb'] / ours['peak_rss_kb']:.1f}x less |")
print(f"| steady RSS after {steady} s | {ours['steady_rss_kb'] / 1024:.1f} MB | {theirs['steady_rss_kb'] / 1024:.1f} MB | {theirs['steady_rss_kb'] / ours['steady_rss_kb']:.1f}x less |")
print(f"| CPU time over {steady} s (clock ticks of {1000 // tick} ms) | {ours['cpu_ms']:.0f} ms ({ours['cpu_pct']:.2f}%) | {theirs['cpu_ms']:.0f} ms ({theirs['cpu_pct']:.2f}%) | |")
size = os.path.getsize(vi)
print(f"| binary size | {size / 1e6:.2f} MB | | |")
ok = (ours["peak_rss_kb"] <= 3 * 1024 and theirs["render_ms"] >= 10 * ours["render_ms"]
      and size <= 6 * 1000 * 1000)
print()
print(f"targets (peak RSS <= 3 MB, >= 10x faster first render, binary <= 6 MB): {'met' if ok else 'NOT met'}")
PY
