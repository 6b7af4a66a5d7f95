# Shared set-up of benches/load.sh and benches/callgrind.sh; sourced, not run,
# from the repository root after the release build. Every process started
# goes into PIDS and is killed on exit, with the work dir.

BIN=${BIN:-target/release}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Below the kernel's ephemeral range (32768 and up by default): a port that
# one of the many client connections is using as its source port cannot be
# listened on, and the instance started there never came up.
free_port() {
  local p
  while :; do
    p=$((10000 + RANDOM % 22000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

wait_http() { # url [tries of 0.1 s]
  for _ in $(seq 1 "${2:-100}"); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  exit 1
}

# A throwaway Redis (REDIS = its port) and the fixed small-response upstream
# (UP), both run under the optional command prefix (e.g. taskset -c 1: the
# backends share the load generator's CPU, away from the proxy's, as they
# would be on machines of their own in production);
# the bench policy: one route with a scope and a workspace check, and one
# like it with a rate limit.
start_backends() { # [prefix command...]
  UP=$(free_port); REDIS=$(free_port)
  "$@" redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    --logfile "$WORK/redis.log" --daemonize no &
  PIDS+=($!)
  "$@" "$BIN/examples/fixed_upstream" "127.0.0.1:$UP" 1 &
  PIDS+=($!)
  for _ in $(seq 1 50); do redis-cli -p "$REDIS" ping >/dev/null 2>&1 && break; sleep 0.1; done
  wait_http "http://127.0.0.1:$UP/"
  mkdir -p "$WORK/policies"
  cat >"$WORK/policies/bench.toml" <<TOML
[[route]]
name = "bench-read"
methods = ["GET"]
path = "/api/v1/workflows/**"
upstream = "bench"
scope = "workflows:read"
workspace_role = "member"

# The same checks with a rate limit never reached (units leased from Redis
# and spent locally): what a limit costs a request under it.
[[route]]
name = "bench-limited"
methods = ["GET"]
path = "/api/v1/limited/**"
upstream = "bench"
scope = "workflows:read"
workspace_role = "member"
rate_limit = { requests = 1000000000, per = "1s", by = "service_account" }
TOML
}

ADMIN_KEY=bench-admin-key-$RANDOM$RANDOM
write_config() { # name cache_ttl_ms listen admin metrics
  cat >"$WORK/$1.toml" <<TOML
[server]
listen = "127.0.0.1:$3"
admin_listen = "127.0.0.1:$4"
metrics_listen = "127.0.0.1:$5"
threads = ${THREADS:-1}
[store]
url = "redis://127.0.0.1:$REDIS/0"
key_prefix = "bench"
[cache]
ttl_ms = $2
[proxy]
trusted_proxies = ["127.0.0.1/32"]
[policies]
dir = "$WORK/policies"
[upstreams.bench]
addrs = ["127.0.0.1:$UP"]
TOML
}

json() { python3 -c 'import json, sys; v = json.load(sys.stdin)
for k in sys.argv[1:]: v = v[k]
print(v)' "$@"; }

# Through the tollgate whose admin listener is ADMIN_PORT and proxy PROXY_PORT:
# an account with workflows:write, a member of workspace ws with environment
# bench-env, and a token. Sets SA_ID, CLIENT_ID, SECRET and TOKEN.
make_account() { # admin_port proxy_port
  ADMIN_PORT=$1
  local sa
  sa=$(admin POST /service-accounts '{"name":"bench","scopes":["workflows:write"]}')
  SA_ID=$(json service_account id <<<"$sa")
  CLIENT_ID=$(json credential client_id <<<"$sa")
  SECRET=$(json credential client_secret <<<"$sa")
  admin PUT /workspaces/ws '{"name":"ws"}' >/dev/null
  admin PUT /workspaces/ws/environments/bench-env '{"name":"env"}' >/dev/null
  admin PUT "/workspaces/ws/members/$SA_ID" '{"role":"member"}' >/dev/null
  TOKEN=$(curl -s -u "$CLIENT_ID:$SECRET" -d grant_type=client_credentials \
    "http://127.0.0.1:$2/api/auth/oauth2/token" | json access_token)
}

admin() { # method path [json]
  curl -s -X "$1" "http://127.0.0.1:$ADMIN_PORT/v1/organizations/bench$2" \
    -H "Authorization: Bearer $ADMIN_KEY" -H 'content-type: application/json' ${3:+-d "$3"}
}
