#!/usr/bin/env bash
# What using a connection costs, measured from outside the process: wrk
# (the load generator) against nginx (a GitLab stand-in serving fixed
# GitLab-shaped JSON) directly, through Gatehouse's proxy, and as an action
# (`list-projects`, which runs the gitlab-pat connector in the sandbox and
# makes the same upstream request). Variants take turns within each round so
# a noisy neighbour hits them alike; the summary is the median of the
# per-round ratios.
#
#   host/benches/proxy.sh            # 3 rounds of 10 s per variant
#   ROUNDS=1 DURATION=2s host/benches/proxy.sh   # a quick look
#
# Needs Debian's wrk and nginx (installed here if missing, as root).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# A page of 20 GitLab projects (about 17 KB), with GitLab's pagination headers.
{
  printf '['
  for i in $(seq 1 20); do
    [ "$i" -gt 1 ] && printf ','
    project_json "$i"
  done
  printf ']'
} >"$work/www/api/v4/projects"
start_nginx "" "location /api/v4/projects {
      add_header x-page 1;
      add_header x-per-page 20;
      add_header x-next-page 2;
      add_header link '<http://127.0.0.1:$UPSTREAM_PORT/api/v4/projects?page=2&per_page=20>; rel=\"next\"';
      try_files /api/v4/projects =404;
    }"
start_gatehouse --sync-poll 0s
id=$(connect_pat)

direct_url="http://127.0.0.1:$UPSTREAM_PORT/api/v4/projects?membership=true&per_page=20"
proxy_url="http://127.0.0.1:$GATEHOUSE_PORT/api/v1/integrations/$id/proxy/api/v4/projects?membership=true&per_page=20"
action_url="http://127.0.0.1:$GATEHOUSE_PORT/api/v1/integrations/$id/actions/list-projects"
cat >"$work/action.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"per_page":20}'
wrk.headers["Content-Type"] = "application/json"
EOF
# Each variant must answer 200 before it is measured.
curl -sf -o /dev/null -H "PRIVATE-TOKEN: $TOKEN" "$direct_url"
curl -sf -o /dev/null -H "Authorization: Bearer $KEY" "$proxy_url"
curl -sf -o /dev/null -H "Authorization: Bearer $KEY" -H 'content-type: application/json' -d '{"per_page":20}' "$action_url"

# run NAME CONNECTIONS URL [wrk args…] → "rps p50_ms p99_ms non2xx"
run() {
  local connections=$1 url=$2
  shift 2
  local out
  out=$(wrk -t1 -c"$connections" -d"$DURATION" --latency "$@" "$url")
  local rps p50 p99 bad
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  if grep -q "Socket errors" <<<"$out" || [ -n "$bad" ]; then
    echo "errors in a run against $url:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}
to_ms() {
  python3 -c 'import sys,re; v=sys.argv[1]; n=float(re.match(r"[\d.]+",v).group()); u=v[len(re.match(r"[\d.]+",v).group()):]; print(round(n*{"us":0.001,"ms":1,"s":1000}[u],3))' "$1"
}

printf '%-6s %-8s %12s %10s %10s\n' round variant req/s p50_ms p99_ms
results=()
for round in $(seq 1 "$ROUNDS"); do
  for c in 1 "$CONNECTIONS"; do
    d=$(run "$c" "$direct_url" -H "PRIVATE-TOKEN: $TOKEN")
    p=$(run "$c" "$proxy_url" -H "Authorization: Bearer $KEY")
    a=$(run "$c" "$action_url" -H "Authorization: Bearer $KEY" -s "$work/action.lua")
    printf '%-6s %-8s %12s %10s %10s\n' "$round" "direct/c$c" $d
    printf '%-6s %-8s %12s %10s %10s\n' "$round" "proxy/c$c" $p
    printf '%-6s %-8s %12s %10s %10s\n' "$round" "action/c$c" $a
    results+=("$c $d $p $a")
  done
done

python3 - "${results[@]}" <<'PY'
import statistics, sys
rows = [list(map(float, r.split())) for r in sys.argv[1:]]
for c in sorted({r[0] for r in rows}):
    rs = [r for r in rows if r[0] == c]
    def med(i): return statistics.median(r[i] for r in rs)
    def ratio(i, j): return [r[i] / r[j] for r in rs]
    p50_proxy = ratio(5, 2); p50_action = ratio(8, 2); rps_proxy = ratio(4, 1); rps_action = ratio(7, 1)
    def fmt(v): return f"{statistics.median(v):.2f}x (rounds {min(v):.2f}-{max(v):.2f})"
    print(f"\n{int(c)} connection(s), medians over {len(rs)} round(s):")
    print(f"  direct  {med(1):10.0f} req/s  p50 {med(2):.3f} ms  p99 {med(3):.3f} ms")
    print(f"  proxy   {med(4):10.0f} req/s  p50 {med(5):.3f} ms  p99 {med(6):.3f} ms")
    print(f"  action  {med(7):10.0f} req/s  p50 {med(8):.3f} ms  p99 {med(9):.3f} ms")
    print(f"  proxy p50 / direct p50: {fmt(p50_proxy)};  proxy throughput / direct: {fmt(rps_proxy)}")
    print(f"  action p50 / direct p50: {fmt(p50_action)};  action throughput / direct: {fmt(rps_action)}")
    print(f"  proxy overhead per request (p50): {med(5) - med(2):.3f} ms;  action: {med(8) - med(2):.3f} ms")
PY
