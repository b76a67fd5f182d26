# Shared by the shell benchmarks (proxy.sh, syncs.sh): installs wrk and
# nginx when missing, builds the release binary, serves GitLab-shaped JSON
# with nginx, starts Gatehouse and connects a PAT. Source it; it sets
# $work, $BIN, $KEY, $TOKEN, $UPSTREAM_PORT, $GATEHOUSE_PORT.

UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
GATEHOUSE_PORT=${GATEHOUSE_PORT:-18080}
KEY=bench-api-key-0123456789abcdef
TOKEN=glpat-bench-token-00000000000000

if ! command -v wrk >/dev/null || { ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; }; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light sqlite3 >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -p gatehouse --bin gatehouse >&2
BIN=${CARGO_TARGET_DIR:-target}/release/gatehouse

work=$(mktemp -d)
cleanup() {
  [ -n "${gh_pid:-}" ] && kill "$gh_pid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The two endpoints the gitlab-pat connector verifies with.
mkdir -p "$work/www/api/v4/personal_access_tokens" "$work/logs"
echo '{"id":1,"name":"bench","revoked":false,"created_at":"2026-01-01T00:00:00.000Z","scopes":["api"],"user_id":1,"last_used_at":null,"active":true,"expires_at":null}' \
  >"$work/www/api/v4/personal_access_tokens/self"
echo '{"id":1,"username":"bench","name":"Bench","state":"active","locked":false,"avatar_url":null,"web_url":"https://gitlab.example.com/bench","email":"bench@example.com","bot":false}' \
  >"$work/www/api/v4/user"
# What the token reaches (the connector's reach call after a valid verify):
# a group, its subgroup and two projects, in GitLab's shape. Served by an
# exact location, since `self` above is a file.
echo '{"groups":[{"id":9,"web_url":"https://gitlab.example.com/groups/acme","name":"acme","avatar_url":null,"visibility":"private","parent_id":null,"organization_id":1,"access_levels":50},{"id":10,"web_url":"https://gitlab.example.com/groups/acme/infra","name":"infra","avatar_url":null,"visibility":"private","parent_id":9,"organization_id":1,"access_levels":50}],"projects":[{"id":1,"description":null,"name":"project-1","name_with_namespace":"acme / project-1","path":"project-1","path_with_namespace":"acme/project-1","created_at":"2026-01-05T10:00:00.000Z","web_url":"https://gitlab.example.com/acme/project-1","visibility":"private","access_levels":{"project_access_level":30,"group_access_level":null}},{"id":2,"description":null,"name":"project-2","name_with_namespace":"acme / project-2","path":"project-2","path_with_namespace":"acme/infra/project-2","created_at":"2026-01-05T10:00:00.000Z","web_url":"https://gitlab.example.com/acme/infra/project-2","visibility":"private","access_levels":{"project_access_level":30,"group_access_level":null}}]}' \
  >"$work/www/associations.json"

# start_nginx HTTP_BLOCK_EXTRA SERVER_BLOCK_EXTRA
start_nginx() {
  cat >"$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/json;
  keepalive_requests 1000000;
  $1
  server {
    listen 127.0.0.1:$UPSTREAM_PORT;
    root $work/www;
    location = /api/v4/personal_access_tokens/self/associations {
      alias $work/www/associations.json;
      add_header X-Total 4;
    }
    $2
  }
}
EOF
  # nginx's workers run as an unprivileged user: let them read the files.
  chmod a+rx "$work"
  chmod -R a+rX "$work/www"
  "$NGINX" -c "$work/nginx.conf" -p "$work"
}

# start_gatehouse [extra serve flags…]
start_gatehouse() {
  GATEHOUSE_API_KEY=$KEY GATEHOUSE_LOG=warn "$BIN" serve --listen "127.0.0.1:$GATEHOUSE_PORT" \
    --data-dir "$work/data" --master-key-file "$work/master.key" --allow-private-networks --allow-http --refresh-interval 0s --plugins-poll 0s "$@" \
    >>"$work/gatehouse.log" 2>&1 &
  gh_pid=$!
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$GATEHOUSE_PORT/api/v1/health" >/dev/null && return 0
    kill -0 "$gh_pid" 2>/dev/null || { cat "$work/gatehouse.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "gatehouse did not start" >&2
  exit 1
}

stop_gatehouse() {
  kill "$gh_pid" && wait "$gh_pid" || true
  gh_pid=
}

# connect_pat → prints the integration id
connect_pat() {
  curl -sf -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
    "http://127.0.0.1:$GATEHOUSE_PORT/api/v1/integrations" \
    -d "{\"provider\":\"gitlab-pat\",\"credentials\":{\"token\":\"$TOKEN\",\"base_url\":\"http://127.0.0.1:$UPSTREAM_PORT\"}}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

# api GET-PATH → prints the JSON answer
api() {
  curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:$GATEHOUSE_PORT$1"
}

# The JSON of GitLab project $1 (full, not simple=true).
project_json() {
  printf '{"id":%d,"description":null,"name":"project-%d","name_with_namespace":"acme / project-%d","path":"project-%d","path_with_namespace":"acme/project-%d","created_at":"2026-01-05T10:00:00.000Z","default_branch":"main","tag_list":[],"topics":[],"web_url":"https://gitlab.example.com/acme/project-%d","readme_url":null,"forks_count":0,"avatar_url":null,"star_count":0,"last_activity_at":"2026-11-20T08:00:00.000Z","visibility":"private","archived":false,"updated_at":"2026-11-20T08:00:00.000Z","namespace":{"id":9,"name":"acme","path":"acme","kind":"group","full_path":"acme","parent_id":null}}' \
    "$1" "$1" "$1" "$1" "$1" "$1"
}

# write_keyset_pages: GitLab's keyset pages of $PROJECTS projects, 100 a
# page, as $work/www/keyset/<id_after>.json, and $work/maps.conf mapping each
# page's id_after to its file and its `link: rel="next"` header (include it
# in start_nginx's http block); $work/www/empty.json is an empty page.
write_keyset_pages() {
  local after i next key
  mkdir -p "$work/www/keyset"
  {
    echo 'map $arg_id_after $page_file { default $arg_id_after; "" 0; }'
    echo 'map $arg_id_after $next_link { default "";'
    for after in $(seq 0 100 $((PROJECTS - 100))); do
      {
        printf '['
        for i in $(seq $((after + 1)) $((after + 100))); do
          [ "$i" -gt $((after + 1)) ] && printf ','
          project_json "$i"
        done
        printf ']'
      } >"$work/www/keyset/$after.json"
      next=$((after + 100))
      key=$after
      [ "$after" = 0 ] && key='""'
      if [ "$next" -lt "$PROJECTS" ]; then
        echo "  $key '<http://127.0.0.1:$UPSTREAM_PORT/api/v4/projects?membership=true&pagination=keyset&order_by=id&sort=asc&per_page=100&id_after=$next>; rel=\"next\"';"
      fi
    done
    echo '}'
  } >"$work/maps.conf"
  echo '[]' >"$work/www/empty.json"
}
