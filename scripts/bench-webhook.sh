#!/usr/bin/env bash
# Load benchmark of the webhook against a ceiling server, in one run.
#
#   scripts/bench-webhook.sh            (or: make bench-webhook)
#
# Both servers get the same AdmissionReview (crates/webhook/tests/data/review-3c5s.json: a pod
# with 3 containers and 5 secrets) over HTTPS, back to back: HTTP/1.1 from wrk
# at 4 and 64 keep-alive connections, and HTTP/2 (the API server's protocol
# to webhooks) from h2load at 16 and 64 connections, one stream each. The ceiling (crates/webhook/examples/ceiling.rs) is hyper +
# rustls that parses the body as JSON and returns a fixed "allowed" review.
# Reported: admissions/s, mean/p50/p99 latency, non-2xx/socket errors, peak
# RSS (VmHWM). The webhook's audit lines go to a file and are counted: one per
# request answered.
#
# Env: DURATION (default 10s), WARMUP (2s), CONNS ("4 64"), H2_CONNS ("16 64"), THREADS (2),
#      ROUNDS (3), NICE (0), FIXTURE (crates/webhook/tests/data/review-3c5s.json).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-4 64}
H2_CONNS=${H2_CONNS:-16 64}
THREADS=${THREADS:-2}
FIXTURE=${FIXTURE:-crates/webhook/tests/data/review-3c5s.json}
ROUNDS=${ROUNDS:-3}
# On a shared machine, NICE=-10 (as root) keeps other work from dominating
# the tail latencies of both servers and of wrk alike.
NICE=${NICE:-0}
prio="nice -n $NICE"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

command -v wrk >/dev/null || { echo "bench-webhook: wrk not found; run scripts/install-tools.sh --bench" >&2; exit 2; }
command -v h2load >/dev/null || { echo "bench-webhook: h2load not found; run scripts/install-tools.sh --bench" >&2; exit 2; }
[ -f "$FIXTURE" ] || { echo "bench-webhook: fixture $FIXTURE missing" >&2; exit 2; }

echo "building release binaries..." >&2
# Two invocations: building an example pulls in dev-dependency features;
# the binary measured is the one `cargo build --release` makes.
cargo build --release --quiet --bin vault-injector
cargo build --release --quiet --example ceiling
bin=target/release/vault-injector
ceiling=target/release/examples/ceiling

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" certs --out "$work/certs" --host localhost,127.0.0.1 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wrk script: POST the fixture; print machine-readable results at the end.
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("$root/$FIXTURE", "rb"))
wrk.body = f:read("*a")
f:close()
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d mean_us=%.1f p50_us=%d p99_us=%d non2xx=%d sockerr=%d\n",
    summary.requests, summary.duration, latency.mean, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
LUA

wait_tls() { # port
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench-webhook: server on port $1 did not come up" >&2; return 1
}

hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

start_server() { # name port -> sets server_pid
  local name=$1 port=$2
  if [ "$name" = webhook ]; then
    $prio "$bin" webhook --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$(free_port)" \
      --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" \
      >"$work/audit.jsonl" 2>"$work/webhook.log" &
  else
    $prio "$ceiling" "127.0.0.1:$port" "$work/certs/tls.crt" "$work/certs/tls.key" 2>"$work/ceiling.log" &
  fi
  server_pid=$!
  pids+=("$server_pid")
  wait_tls "$port"
}

# wrk ... -> "requests duration_us mean_us p50_us p99_us non2xx sockerr"
measure() { # url conns duration
  local t=$THREADS line
  [ "$2" -lt "$t" ] && t=$2
  line=$($prio wrk -t"$t" -c"$2" -d"$3" --latency -s "$work/post.lua" "$1" | grep '^RESULT')
  eval "${line#RESULT }"
  echo "$requests $duration_us $mean_us $p50_us $p99_us $non2xx $sockerr"
}

# h2load ... -> the same fields, from its per-request log (start, status,
# microseconds to the end of the response).
measure_h2() { # url conns duration
  local t=$THREADS log=$work/h2.log
  [ "$2" -lt "$t" ] && t=$2
  rm -f "$log" # h2load appends to its log
  $prio h2load -t"$t" -c"$2" -m1 -D"${3%s}" -d "$root/$FIXTURE" \
    -H 'content-type: application/json' --log-file="$log" "$1" >"$work/h2.out"
  python3 - "$log" "${3%s}" "$work/h2.out" <<'PY'
import re, statistics, sys
lat, non2xx = [], 0
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 3:
        continue
    lat.append(int(f[2]))
    non2xx += not f[1].startswith("2")
out = open(sys.argv[3]).read()
errored = re.search(r"(\d+) errored", out)
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0
mean = int(statistics.fmean(lat)) if lat else 0
print(len(lat), int(float(sys.argv[2]) * 1e6), mean, pick(0.5), pick(0.99), non2xx,
      errored.group(1) if errored else 0)
PY
}

declare -A port pid
for name in webhook ceiling; do
  port[$name]=$(free_port)
  start_server "$name" "${port[$name]}"
  pid[$name]=$server_pid
  measure "https://127.0.0.1:${port[$name]}/mutate" 64 "$WARMUP" >/dev/null
done
warm_lines=$(wc -l <"$work/audit.jsonl")

# Rounds alternate webhook and ceiling at each concurrency, so a burst of
# load from elsewhere on a shared machine hits both; the median round (by
# throughput) of each is reported.
samples=$work/samples
: >"$samples"
answered=0
for point in $(for c in $CONNS; do echo "http1:$c"; done; for c in $H2_CONNS; do echo "h2:$c"; done); do
  proto=${point%%:*} c=${point#*:}
  for r in $(seq 1 "$ROUNDS"); do
    for name in webhook ceiling; do
      if [ "$proto" = h2 ]; then run=measure_h2; else run=measure; fi
      read -r requests duration_us mean_us p50_us p99_us non2xx sockerr \
        < <($run "https://127.0.0.1:${port[$name]}/mutate" "$c" "$DURATION")
      [ "$name" = webhook ] && answered=$((answered + requests))
      echo "$name $proto:$c $r $requests $duration_us $mean_us $p50_us $p99_us $non2xx $sockerr" >>"$samples"
      echo "round $r $name $proto c=$c: $requests requests in ${duration_us}us, mean ${mean_us}us p50 ${p50_us}us p99 ${p99_us}us, non-2xx $non2xx, errors $sockerr" >&2
    done
  done
done

declare -A hwm
for name in webhook ceiling; do
  hwm[$name]=$(hwm_kb "${pid[$name]}")
done
sleep 0.5
lines=$(($(wc -l <"$work/audit.jsonl") - warm_lines))
# wrk and h2load count the responses they read; audit lines can exceed that
# by requests cut off at the end of a run, never fall short of it.
echo "webhook audit lines during measured runs: $lines (the load generators counted $answered responses)" >&2
[ "$lines" -ge "$answered" ] || { echo "bench-webhook: fewer audit lines than answered requests" >&2; exit 1; }
for name in webhook ceiling; do
  kill -TERM "${pid[$name]}"
  wait "${pid[$name]}" || true
done

echo
echo "machine: $(nproc) cores, $(uname -sr), load average before the run: $load_before"
echo "fixture $FIXTURE ($(wc -c <"$FIXTURE") bytes); wrk and h2load -t$THREADS (h2load: one stream per connection); $ROUNDS alternating rounds of $DURATION per point, median round shown; nice $NICE"
python3 - "$samples" "${hwm[webhook]}" "${hwm[ceiling]}" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
best = {}
for name in ("webhook", "ceiling"):
    for c in sorted({r[1] for r in rows}, key=lambda p: (p.split(":")[0] != "http1", int(p.split(":")[1]))):
        rs = [r for r in rows if r[0] == name and r[1] == c]
        # median round by throughput
        rs.sort(key=lambda r: int(r[3]) / int(r[4]))
        r = rs[len(rs) // 2]
        rps = int(r[3]) / (int(r[4]) / 1e6)
        best[(name, c)] = (rps, float(r[5]) / 1000, int(r[6]) / 1000, int(r[7]) / 1000, r[8], r[9])
print()
print("| server | protocol | conns | admissions/s | mean ms | p50 ms | p99 ms | non-2xx | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for (name, c), (rps, mean, p50, p99, n2, se) in best.items():
    proto, conns = c.split(":")
    print(f"| {name} | {proto} | {conns} | {rps:.0f} | {mean:.2f} | {p50:.2f} | {p99:.2f} | {n2} | {se} |")
print()
print(f"- peak RSS (VmHWM): webhook {int(sys.argv[2]) / 1024:.1f} MB, ceiling {int(sys.argv[3]) / 1024:.1f} MB")
for c in sorted({k[1] for k in best}, key=lambda p: (p.split(":")[0] != "http1", int(p.split(":")[1]))):
    w, m = best[("webhook", c)], best[("ceiling", c)]
    print(f"- {c.replace(':', ' ')} conns: webhook throughput {w[0] / m[0]:.0%} of the ceiling's; mean {w[1] / m[1]:.2f}x, p99 {w[3] / m[3]:.2f}x the ceiling's")
PY
