#!/usr/bin/env bash
# The same load on three deployments: one process on SQLite, one process on
# PostgreSQL, two processes on one PostgreSQL database — same machine, same
# load generator, everything on loopback.
#
# 1. Verify throughput: wrk (one thread, CONNECTIONS connections) posts
#    `POST /api/v1/providers/gitlab-pat/verify` through an nginx load
#    balancer (round-robin over the processes; the one-process runs go
#    through it too), against an nginx serving GitLab's answers. Every
#    request resolves its API key in the database.
# 2. Sync records/s: a PROJECTS-project sync (keyset pages of 100, as
#    syncs.sh serves them), timed from the connect call until every record
#    is committed and the sync is idle. One sync runs in one process (its
#    lease), so a second process adds availability, not speed, to a single
#    sync.
# The median of ROUNDS rounds each. PostgreSQL is Debian's (installed if
# missing), a throwaway cluster in the work dir with fsync on (the default).
#
#   host/benches/databases.sh
#   ROUNDS=1 DURATION=3s PROJECTS=2000 host/benches/databases.sh   # a quick look
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
PROJECTS=${PROJECTS:-10000}
PG_PORT=${PG_PORT:-18433}
LB_ONE=${LB_ONE:-18070}
LB_TWO=${LB_TWO:-18071}
SECOND_PORT=${SECOND_PORT:-18090}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$work/pg"
if [ "$(id -u)" = 0 ]; then
  chmod a+rx "$work"
  chown postgres:postgres "$work/pg"
fi
as_pg "$PGBIN/initdb" -D "$work/pg/data" -U postgres -A trust --no-locale -E UTF8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
  -o "-p $PG_PORT -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=100" start >/dev/null
psql() { "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qAtc "$1"; }
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; as_pg "$PGBIN/pg_ctl" -D "$work/pg/data" -m fast stop >/dev/null 2>&1 || true; cleanup' EXIT

# GitLab's keyset pages of projects, as syncs.sh serves them.
write_keyset_pages
# The load balancers: one in front of the first process, one in front of both.
start_nginx "include $work/maps.conf;
  upstream one { server 127.0.0.1:$GATEHOUSE_PORT; keepalive 64; }
  upstream two { server 127.0.0.1:$GATEHOUSE_PORT; server 127.0.0.1:$SECOND_PORT; keepalive 64; }
  server { listen 127.0.0.1:$LB_ONE; location / { proxy_pass http://one; proxy_http_version 1.1; proxy_set_header Connection ''; } }
  server { listen 127.0.0.1:$LB_TWO; location / { proxy_pass http://two; proxy_http_version 1.1; proxy_set_header Connection ''; } }" "
    location = /api/v4/projects { add_header link \$next_link; try_files /keyset/\$page_file.json =404; }
    location = /api/v4/groups { add_header x-next-page ''; try_files /empty.json =404; }
    location = /api/v4/issues { add_header x-next-page ''; try_files /empty.json =404; }
    location = /api/v4/merge_requests { add_header x-next-page ''; try_files /empty.json =404; }"

# serve PORT [flags…]: one process with its own data dir.
serve() {
  local port=$1
  shift
  GATEHOUSE_API_KEY=$KEY GATEHOUSE_LOG=warn "$BIN" serve --listen "127.0.0.1:$port" --data-dir "$work/data-$port" \
    --master-key-file "$work/master.key" --allow-private-networks --allow-http --plugins-poll 0s \
    --sync-poll 100ms "$@" >>"$work/gatehouse-$port.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/api/v1/ready" >/dev/null && return 0
    sleep 0.1
  done
  cat "$work/gatehouse-$port.log" >&2
  exit 1
}

body="{\"credentials\":{\"token\":\"$TOKEN\",\"base_url\":\"http://127.0.0.1:$UPSTREAM_PORT\"}}"
cat >"$work/verify.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA

# verify_rps LB_PORT -> requests/s
verify_rps() {
  local out
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/verify.lua" "http://127.0.0.1:$1/api/v1/providers/gitlab-pat/verify")
  if grep -q "Socket errors\|Non-2xx" <<<"$out"; then
    echo "$out" >&2
    exit 1
  fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}

# sync_rate LB_PORT -> records/s of one fresh PROJECTS-project sync
sync_rate() {
  local rate
  rate=$(python3 "$(dirname "$0")/time_sync.py" "$1" "$KEY" "$TOKEN" "$UPSTREAM_PORT" "$PROJECTS" --replace --timeout 900)
  echo "${rate% *}"
}

median() { printf '%s\n' "$@" | python3 -c 'import statistics,sys; v=[float(x) for x in sys.stdin]; print(f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})")'; }

printf '%-28s %-26s %-26s\n' deployment "verifies/s median (range)" "sync records/s median (range)"
for deployment in "sqlite 1" "postgres 1" "postgres 2"; do
  read -r backend processes <<<"$deployment"
  rm -rf "$work"/data-*
  flags=()
  if [ "$backend" = postgres ]; then
    psql "DROP DATABASE IF EXISTS gatehouse" 2>/dev/null && psql "CREATE DATABASE gatehouse"
    flags=(--database-url "postgres://postgres@127.0.0.1:$PG_PORT/gatehouse")
  fi
  serve "$GATEHOUSE_PORT" "${flags[@]}"
  lb=$LB_ONE
  if [ "$processes" = 2 ]; then
    serve "$SECOND_PORT" "${flags[@]}"
    lb=$LB_TWO
  fi
  verifies=()
  syncs=()
  for round in $(seq 1 "$ROUNDS"); do
    verifies+=("$(verify_rps "$lb")")
    syncs+=("$(sync_rate "$lb")")
    echo "  $processes process(es), $backend, round $round: ${verifies[-1]} verifies/s, ${syncs[-1]} records/s" >&2
  done
  printf '%-28s %-26s %-26s\n' "$processes process(es), $backend" "$(median "${verifies[@]}")" "$(median "${syncs[@]}")"
  stop_all
done
