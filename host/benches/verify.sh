#!/usr/bin/env bash
# Sandboxed verify against a native verifier of the same shape, measured
# from outside both: wrk (64 connections, one thread) posts a verify to
# Gatehouse (the gitlab-pat connector in a fresh sandbox instance per call)
# and to host/examples/native_verifier.rs (poem + reqwest reading the token,
# its user and what it reaches, the same JSON in and out), both against one
# nginx serving GitLab's answers. The two take turns, in alternating order,
# round after round; the summary is the median of the per-round ratios. Gatehouse's
# resident memory is sampled at the end of each of its runs.
#
#   host/benches/verify.sh                          # 4 rounds of 10 s each
#   ROUNDS=1 DURATION=3s host/benches/verify.sh     # a quick look
#   PROFILE=/tmp/verify.perf host/benches/verify.sh # then one more run under
#       perf record (Debian's linux-perf), and its flat profile printed
#
# Needs Debian's wrk and nginx (installed here if missing, as root).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
NATIVE_PORT=${NATIVE_PORT:-18082}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

cargo build --release -p gatehouse --example native_verifier >&2
NATIVE=${CARGO_TARGET_DIR:-target}/release/examples/native_verifier

start_nginx "" ""
start_gatehouse
"$NATIVE" "127.0.0.1:$NATIVE_PORT" "$KEY" >>"$work/native.log" 2>&1 &
native_pid=$!
trap 'kill $native_pid 2>/dev/null || true; cleanup' EXIT

body="{\"credentials\":{\"token\":\"$TOKEN\",\"base_url\":\"http://127.0.0.1:$UPSTREAM_PORT\"}}"
cat >"$work/verify.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
path=/api/v1/providers/gitlab-pat/verify
for port in "$GATEHOUSE_PORT" "$NATIVE_PORT"; do
  for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  answer=$(curl -sf -H "Authorization: Bearer $KEY" -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$port$path")
  grep -q '"valid":true' <<<"$answer" || { echo "verify on port $port answered: $answer" >&2; exit 1; }
done

# CPU time (user + system) a process has used, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_HZ=$(getconf CLK_TCK)

# run PORT PID -> "rps p50_ms p99_ms cpu_us_per_request"
run() {
  local out rps p50 p99 before after
  before=$(ticks "$2")
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/verify.lua" "http://127.0.0.1:$1$path")
  if grep -q "Socket errors\|Non-2xx" <<<"$out"; then
    echo "errors in a run against port $1:" >&2
    echo "$out" >&2
    exit 1
  fi
  after=$(ticks "$2")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $(( (after - before) * 1000000 / TICK_HZ / total ))"
}
to_ms() {
  python3 -c 'import sys,re; v=sys.argv[1]; n=float(re.match(r"[\d.]+",v).group()); u=v[len(re.match(r"[\d.]+",v).group()):]; print(round(n*{"us":0.001,"ms":1,"s":1000}[u],3))' "$1"
}
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

printf '%-6s %-10s %10s %9s %9s %11s %9s\n' round server req/s p50_ms p99_ms cpu_us/req rss_MiB
results=()
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then
    g=$(run "$GATEHOUSE_PORT" "$gh_pid"); g_rss=$(rss_mib "$gh_pid"); n=$(run "$NATIVE_PORT" "$native_pid")
  else
    n=$(run "$NATIVE_PORT" "$native_pid"); g=$(run "$GATEHOUSE_PORT" "$gh_pid"); g_rss=$(rss_mib "$gh_pid")
  fi
  printf '%-6s %-10s %10s %9s %9s %11s %9s\n' "$round" gatehouse $g "$g_rss"
  printf '%-6s %-10s %10s %9s %9s %11s %9s\n' "$round" native $n "$(rss_mib "$native_pid")"
  results+=("$g $n $g_rss")
done

python3 - "${results[@]}" <<'PY'
import statistics, sys
rows = [list(map(float, r.split())) for r in sys.argv[1:]]
def fmt(v): return f"{statistics.median(v):.2f}x (rounds {min(v):.2f}-{max(v):.2f})"
g = lambda i: statistics.median(r[i] for r in rows)
print(f"\nmedians over {len(rows)} round(s):")
print(f"  gatehouse {g(0):10.0f} verifies/s  p50 {g(1):.3f} ms  p99 {g(2):.3f} ms  CPU {g(3):.0f} us/verify  RSS {max(r[8] for r in rows):.1f} MiB (max)")
print(f"  native    {g(4):10.0f} verifies/s  p50 {g(5):.3f} ms  p99 {g(6):.3f} ms  CPU {g(7):.0f} us/verify")
print(f"  throughput gatehouse/native: {fmt([r[0] / r[4] for r in rows])}")
print(f"  p50 latency gatehouse/native: {fmt([r[1] / r[5] for r in rows])}")
print(f"  CPU per verify gatehouse/native: {fmt([r[3] / r[7] for r in rows])}")
PY

if [ -n "${PROFILE:-}" ]; then
  perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -o "$PROFILE" -p "$gh_pid" 2>"$work/perf.log" &
  perf_pid=$!
  sleep 0.5
  run "$GATEHOUSE_PORT" "$gh_pid" >/dev/null
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
  echo "
flat profile of Gatehouse under that load (top 40 symbols, self time):"
  perf report -i "$PROFILE" --stdio --no-children --sort dso,symbol 2>/dev/null | grep -v '^#' | grep '%' | head -40
fi
