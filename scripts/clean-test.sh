#!/usr/bin/env bash
# Remove what an interrupted test run can leave behind: throwaway Redis
# servers started by scripts/test.sh (found through their pid files, never by
# name) and temp dirs of the integration-test harness.
set -euo pipefail

tmp="${TMPDIR:-/tmp}"
shopt -s nullglob

for dir in "$tmp"/tollgate-test-redis.*; do
  pidfile="$dir/redis.pid"
  if [ -f "$pidfile" ]; then
    pid="$(cat "$pidfile")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
      grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null; then
      echo "stopping throwaway redis-server pid $pid"
      kill "$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$dir"
done

# Redis Cluster nodes of test.sh's second pass and of tests/integration/cluster.rs.
for dir in "$tmp"/tollgate-test-cluster.* "$tmp"/tollgate-cluster.*; do
  for pidfile in "$dir"/*/redis.pid; do
    pid="$(cat "$pidfile")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
      grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null; then
      echo "stopping throwaway redis-server pid $pid"
      kill "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$dir"
done

for dir in "$tmp"/tollgate-it.*; do
  rm -rf "$dir"
done
