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

cargo_flags=(--all-targets)
if [ "${CI:-}" = true ]; then
  cargo_flags+=(--locked) # CI tests exactly the committed Cargo.lock
fi

# In the background so that a TERM/INT to this script runs the traps at once
# instead of after cargo finishes.
test_log=$(mktemp)
cargo test "${cargo_flags[@]}" "$@" >"$test_log" 2>&1 &
cargo_pid=$!
tail -n +1 -f --pid="$cargo_pid" "$test_log"
status=0
wait "$cargo_pid" || status=$?
cargo_pid=""
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
