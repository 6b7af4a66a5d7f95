#!/usr/bin/env bash
# Run every test (unit + integration) against a throwaway Redis.
#
# Unless TOLLGATE_TEST_REDIS_URL is already set, this starts a private
# redis-server on a free loopback port (no persistence, temp dir), exports
# TOLLGATE_TEST_REDIS_URL for the tests, and always stops that server again.
# Tests isolate themselves by key prefix, so one Redis serves them all.
# Extra arguments are passed to `cargo test` (e.g. `scripts/test.sh policy`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/ensure-deps.sh test

redis_pid=""
redis_dir=""
cargo_pid=""

cleanup() {
  if [ -n "$cargo_pid" ] && kill -0 "$cargo_pid" 2>/dev/null; then
    kill "$cargo_pid" 2>/dev/null || true
    wait "$cargo_pid" 2>/dev/null || true
  fi
  if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
    kill "$redis_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  if [ -n "$redis_dir" ]; then
    rm -rf "$redis_dir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# True when something already accepts connections on 127.0.0.1:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Start redis-server on a random free high port. Another process may grab the
# port between our check and redis's bind, so we confirm that the server
# answering is ours (INFO's process_id) and retry with another port if not.
start_redis() {
  redis_dir="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-test-redis.XXXXXX")"
  local attempt port
  for attempt in $(seq 1 20); do
    port=$((20000 + RANDOM % 40000))
    if port_in_use "$port"; then
      continue
    fi
    redis-server --bind 127.0.0.1 --port "$port" \
      --save "" --appendonly no \
      --dir "$redis_dir" --logfile "$redis_dir/redis.log" \
      --pidfile "$redis_dir/redis.pid" \
      --daemonize no --protected-mode yes </dev/null >/dev/null 2>&1 &
    redis_pid=$!
    local i
    for i in $(seq 1 100); do
      if ! kill -0 "$redis_pid" 2>/dev/null; then
        break # exited: most likely the port was taken; try another one
      fi
      if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
        if redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null |
          tr -d '\r' | grep -qx "process_id:$redis_pid"; then
          REDIS_PORT=$port
          return 0
        fi
        break # someone else's server answered on this port
      fi
      sleep 0.05
    done
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=""
    echo "test.sh: redis-server did not come up on port $port (attempt $attempt), retrying" >&2
  done
  echo "error: could not start a throwaway redis-server; last log:" >&2
  cat "$redis_dir/redis.log" >&2 2>/dev/null || true
  return 1
}

if [ -n "${TOLLGATE_TEST_REDIS_URL:-}" ]; then
  echo "test.sh: using TOLLGATE_TEST_REDIS_URL from the environment" >&2
else
  start_redis
  export TOLLGATE_TEST_REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"
  echo "test.sh: throwaway redis-server (pid $redis_pid) at $TOLLGATE_TEST_REDIS_URL" >&2
fi

# A three-master Redis Cluster on free loopback ports (port + 10000 is each
# node's cluster bus), for the second pass below.
cluster_pids=()
cluster_dir=""
stop_cluster() {
  local p
  for p in "${cluster_pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${cluster_pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  cluster_pids=()
  if [ -n "$cluster_dir" ]; then
    rm -rf "$cluster_dir"
  fi
}
start_cluster() {
  cluster_dir="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-test-cluster.XXXXXX")"
  local ports=() port i pid up tries=0
  while [ "${#ports[@]}" -lt 3 ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 20 ]; then
      echo "error: could not start the cluster's redis-server nodes" >&2
      return 1
    fi
    port=$((20000 + RANDOM % 30000))
    if port_in_use "$port" || port_in_use $((port + 10000)); then
      continue
    fi
    mkdir -p "$cluster_dir/$port"
    redis-server --bind 127.0.0.1 --port "$port" \
      --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 2000 --save "" --appendonly no \
      --dir "$cluster_dir/$port" --logfile "$cluster_dir/$port/redis.log" \
      --pidfile "$cluster_dir/$port/redis.pid" \
      --daemonize no </dev/null >/dev/null 2>&1 &
    pid=$!
    up=""
    for i in $(seq 1 200); do
      kill -0 "$pid" 2>/dev/null || break
      if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
        up=1
        break
      fi
      sleep 0.05
    done
    if [ -z "$up" ]; then
      echo "test.sh: cluster node on port $port did not come up, retrying:" >&2
      tail -n 5 "$cluster_dir/$port/redis.log" >&2 2>/dev/null || true
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      continue
    fi
    cluster_pids+=("$pid")
    ports+=("$port")
  done
  local nodes=() urls=()
  for port in "${ports[@]}"; do
    nodes+=("127.0.0.1:$port")
    urls+=("redis://127.0.0.1:$port")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
    </dev/null >"$cluster_dir/create.log" 2>&1 || {
    echo "error: redis-cli --cluster create failed:" >&2
    cat "$cluster_dir/create.log" >&2
    return 1
  }
  for port in "${ports[@]}"; do
    for i in $(seq 1 200); do
      redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null |
        grep -q cluster_state:ok && break
      sleep 0.05
    done
  done
  CLUSTER_URLS=$(IFS=,; echo "${urls[*]}")
}
trap 'stop_cluster; cleanup' EXIT

cargo_flags=(--all-targets)
if [ "${CI:-}" = true ]; then
  cargo_flags+=(--locked) # CI tests exactly the committed Cargo.lock
fi

# Runs cargo test in the background, so that a TERM/INT to this script runs
# the traps at once instead of after cargo finishes, and appends its output
# to $test_log.
test_log=$(mktemp)
run_cargo_test() {
  local log
  log=$(mktemp)
  cargo test "$@" >"$log" 2>&1 &
  cargo_pid=$!
  tail -n +1 -f --pid="$cargo_pid" "$log"
  local rc=0
  wait "$cargo_pid" || rc=$?
  cargo_pid=""
  cat "$log" >>"$test_log"
  rm -f "$log"
  return "$rc"
}

status=0
run_cargo_test "${cargo_flags[@]}" "$@" || status=$?

# Second pass: the suites that exercise the registry, tokens and enforcement,
# against a Redis Cluster (store.cluster = true). Skipped when arguments
# narrow the run, unless TOLLGATE_TEST_CLUSTER=1.
if [ "$status" = 0 ] && { [ "$#" = 0 ] || [ "${TOLLGATE_TEST_CLUSTER:-}" = 1 ]; }; then
  start_cluster
  echo "test.sh: second pass against a Redis Cluster at $CLUSTER_URLS" >&2
  cluster_flags=()
  if [ "${CI:-}" = true ]; then
    cluster_flags+=(--locked)
  fi
  # Modules of the integration suite (tests/integration/); the forwarding
  # edge cases below `forwarding::` are not about the store.
  cluster_flags+=(--test integration --)
  for m in admin_api oauth enforcement forwarding instances; do
    cluster_flags+=("$m::")
  done
  for m in forwarding::bodies forwarding::edges forwarding::tunnels; do
    cluster_flags+=(--skip "$m::")
  done
  TOLLGATE_TEST_REDIS_CLUSTER_URLS="$CLUSTER_URLS" \
    run_cargo_test "${cluster_flags[@]}" || status=$?
  stop_cluster
fi

# One closing line for the whole run: cargo prints one result per test binary.
awk '/^test result:/ {
       for (i = 2; i <= NF; i++) {
         if ($i ~ /^passed;?$/) p += $(i - 1)
         if ($i ~ /^failed;?$/) f += $(i - 1)
         if ($i ~ /^ignored;?$/) s += $(i - 1)
       }
     }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$test_log"
rm -f "$test_log"
exit "$status"
