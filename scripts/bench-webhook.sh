#!/usr/bin/env bash
# Load benchmark of the webhook against a ceiling server, in one run.
#
#   scripts/bench-webhook.sh            (or: make bench-webhook)
#
# Both servers get the same AdmissionReview (tests/data/review-3c5s.json: a pod
# with 3 containers and 5 secrets) over HTTPS from wrk, at 4 and 64 keep-alive
# connections, back to back. The ceiling (examples/ceiling.rs) is hyper +
# rustls that parses the body as JSON and returns a fixed "allowed" review.
# Reported: admissions/s, mean/p50/p99 latency, non-2xx/socket errors, peak
# RSS (VmHWM). The webhook's audit lines go to a file and are counted: one per
# request answered.
#
# Env: DURATION (default 10s), WARMUP (2s), CONNS ("4 64"), THREADS (2),
#      FIXTURE (tests/data/review-3c5s.json), OUT (markdown table file).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-4 64}
THREADS=${THREADS:-2}
FIXTURE=${FIXTURE:-tests/data/review-3c5s.json}

command -v wrk >/dev/null || { echo "bench-webhook: wrk not found; run scripts/install-tools.sh --bench" >&2; exit 2; }
[ -f "$FIXTURE" ] || { echo "bench-webhook: fixture $FIXTURE missing" >&2; exit 2; }

echo "building release binaries..." >&2
cargo build --release --quiet --bin vault-injector --example ceiling
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

results=()
run_target() { # name
  local name=$1 port admin pid
  port=$(free_port)
  if [ "$name" = webhook ]; then
    admin=$(free_port)
    "$bin" webhook --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
      --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" \
      >"$work/audit.jsonl" 2>"$work/webhook.log" &
  else
    "$ceiling" "127.0.0.1:$port" "$work/certs/tls.crt" "$work/certs/tls.key" 2>"$work/ceiling.log" &
  fi
  pid=$!
  pids+=("$pid")
  wait_tls "$port"
  local url="https://127.0.0.1:$port/mutate"
  wrk -t"$THREADS" -c64 -d"$WARMUP" -s "$work/post.lua" "$url" >/dev/null
  local warm_lines=0
  [ "$name" = webhook ] && warm_lines=$(wc -l <"$work/audit.jsonl")
  local answered=0
  for c in $CONNS; do
    local t=$THREADS
    [ "$c" -lt "$t" ] && t=$c
    local line
    line=$(wrk -t"$t" -c"$c" -d"$DURATION" --latency -s "$work/post.lua" "$url" | grep '^RESULT')
    eval "${line#RESULT }"
    answered=$((answered + requests))
    local rps
    rps=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN {printf "%.0f", r / (d / 1e6)}')
    results+=("$name|$c|$rps|$(awk -v v="$mean_us" 'BEGIN {printf "%.2f", v/1000}')|$(awk -v v="$p50_us" 'BEGIN {printf "%.2f", v/1000}')|$(awk -v v="$p99_us" 'BEGIN {printf "%.2f", v/1000}')|$non2xx|$sockerr")
    echo "$name c=$c: $rps req/s, mean ${mean_us}us p50 ${p50_us}us p99 ${p99_us}us, non-2xx $non2xx, socket errors $sockerr" >&2
  done
  local hwm
  hwm=$(hwm_kb "$pid")
  results+=("$name|peak-rss|$((hwm / 1024)).$(((hwm % 1024) * 10 / 1024)) MB")
  if [ "$name" = webhook ]; then
    sleep 0.5
    local lines
    lines=$(($(wc -l <"$work/audit.jsonl") - warm_lines))
    # wrk counts requests it sent a response for; audit lines can exceed it by
    # requests cut off at the end of a run.
    echo "webhook audit lines during measured runs: $lines (wrk counted $answered responses)" >&2
    [ "$lines" -ge "$answered" ] || { echo "bench-webhook: fewer audit lines than answered requests" >&2; exit 1; }
  fi
  kill -TERM "$pid"
  wait "$pid" || true
}

run_target webhook
run_target ceiling

echo
echo "machine: $(nproc) cores, $(uname -sr); fixture $FIXTURE ($(wc -c <"$FIXTURE") bytes); wrk -t$THREADS, $DURATION per point"
echo
echo "| server | conns | admissions/s | mean ms | p50 ms | p99 ms | non-2xx | socket errors |"
echo "|---|---|---|---|---|---|---|---|"
for r in "${results[@]}"; do
  IFS='|' read -r n c a b d e f g <<<"$r"
  if [ "$c" = peak-rss ]; then continue; fi
  echo "| $n | $c | $a | $b | $d | $e | $f | $g |"
done
echo
for r in "${results[@]}"; do
  IFS='|' read -r n c a <<<"$r"
  [ "$c" = peak-rss ] && echo "- peak RSS ($n): $a"
done
# Ratios against the ceiling (SPEC "Performance targets").
python3 - "${results[@]}" <<'PY'
import sys
rows = {}
for r in sys.argv[1:]:
    p = r.split("|")
    if p[1] != "peak-rss":
        rows[(p[0], p[1])] = [float(x) for x in p[2:6]]
for c in sorted({k[1] for k in rows}, key=int):
    w, m = rows.get(("webhook", c)), rows.get(("ceiling", c))
    if w and m:
        print(f"- {c} conns: throughput {w[0] / m[0]:.0%} of ceiling; mean {w[1] / m[1]:.2f}x, p99 {w[3] / m[3]:.2f}x the ceiling's")
PY
