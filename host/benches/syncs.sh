#!/usr/bin/env bash
# Sync throughput and change-feed latency, measured from outside the process.
#
# 1. A 10,000-project sync: nginx serves GitLab's keyset pages of
#    `GET /api/v4/projects` (100 projects each, `Link: rel="next"` with
#    `id_after`); Gatehouse runs the gitlab-pat connector's `projects` sync
#    in the sandbox, validates and hashes every record and commits each
#    page with its checkpoint. Timed from the connect call (which makes the
#    syncs due) until all records are committed and the sync is idle; a
#    fresh data dir each round; the median of ROUNDS rounds.
# 2. The change feed with 1,000,000 records stored: records seeded with
#    sqlite3 into the database of a connected integration; wrk reads pages
#    of 500 from random cursors; latency percentiles from wrk.
#
#   host/benches/syncs.sh
#   ROUNDS=1 PROJECTS=2000 FEED_RECORDS=100000 DURATION=3s host/benches/syncs.sh   # a quick look
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
PROJECTS=${PROJECTS:-10000}
FEED_RECORDS=${FEED_RECORDS:-1000000}
DURATION=${DURATION:-10s}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# Keyset pages: keyset/<id_after>.json, and the next link for each.
write_keyset_pages
start_nginx "include $work/maps.conf;" "
    location = /api/v4/projects { add_header link \$next_link; try_files /keyset/\$page_file.json =404; }
    location = /api/v4/groups { add_header x-next-page ''; try_files /empty.json =404; }
    location = /api/v4/issues { add_header x-next-page ''; try_files /empty.json =404; }
    location = /api/v4/merge_requests { add_header x-next-page ''; try_files /empty.json =404; }"

echo "== sync of $PROJECTS projects through the sandbox ($ROUNDS rounds)"
rates=()
for round in $(seq 1 "$ROUNDS"); do
  rm -rf "$work/data"
  start_gatehouse --sync-poll 100ms
  rate=$(python3 "$(dirname "$0")/time_sync.py" "$GATEHOUSE_PORT" "$KEY" "$TOKEN" "$UPSTREAM_PORT" "$PROJECTS")
  echo "round $round: ${rate% *} records/s (${rate#* } s)"
  rates+=("${rate% *}")
  [ "$round" -lt "$ROUNDS" ] && stop_gatehouse
done
printf '%s\n' "${rates[@]}" | python3 -c 'import statistics,sys; v=[float(x) for x in sys.stdin]; print(f"median {statistics.median(v):.0f} records/s (rounds {min(v):.0f}-{max(v):.0f})")'

echo "== change feed: pages of 500 with $FEED_RECORDS records stored"
id=$(api /api/v1/integrations | python3 -c 'import json,sys; print(json.load(sys.stdin)["integrations"][0]["id"])')
sqlite3 "$work/data/gatehouse.db" <<SQL
.timeout 10000
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $FEED_RECORDS)
INSERT INTO records (integration_id, model, external_id, data_json, content_hash, action, seq, first_seen_at,
                     last_modified_at, last_modified_unix, seen_run)
SELECT '$id', 'bench', 'b-' || i,
       '{"id":' || i || ',"name":"project-' || i || '","path_with_namespace":"acme/project-' || i ||
       '","web_url":"https://gitlab.example.com/acme/project-' || i ||
       '","default_branch":"main","visibility":"private","archived":false,"updated_at":"2026-11-20T08:00:00.000Z","last_activity_at":"2026-11-20T08:00:00.000Z"}',
       hex(randomblob(16)), 'added', 1000000000 + i, '2026-11-26T10:00:00Z', '2026-11-26T10:00:00Z', 1795600800, NULL
FROM n;
UPDATE counters SET value = (SELECT MAX(seq) FROM records) WHERE name = 'records';
SQL
count=$(api "/api/v1/integrations/$id/records?model=bench&limit=500&cursor=1000000000" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["records"]))')
[ "$count" = 500 ] || { echo "a feed page has $count records, not 500" >&2; exit 1; }
cat >"$work/feed.lua" <<EOF
math.randomseed(42)
wrk.headers["Authorization"] = "Bearer $KEY"
request = function()
  local cursor = 1000000000 + math.random(0, $FEED_RECORDS - 500)
  return wrk.format("GET", "/api/v1/integrations/$id/records?model=bench&limit=500&cursor=" .. cursor)
end
EOF
for c in 1 4; do
  out=$(wrk -t1 -c"$c" -d"$DURATION" --latency -s "$work/feed.lua" "http://127.0.0.1:$GATEHOUSE_PORT")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    echo "$out" >&2
    exit 1
  fi
  echo "$c connection(s): $(awk '/Requests\/sec/ {print $2}' <<<"$out") pages/s, p50 $(awk '$1=="50%" {print $2}' <<<"$out"), p90 $(awk '$1=="90%" {print $2}' <<<"$out"), p99 $(awk '$1=="99%" {print $2}' <<<"$out")"
done
