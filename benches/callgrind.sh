#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: repeatable whatever
# else the machine is doing, unlike the requests/s of benches/load.sh. The
# set-up is load.sh's: a fixed small-response upstream, a throwaway Redis, one
# route with a scope and a workspace check, proxies on one worker thread.
#
# Cases: (b) the bare pingora passthrough, (c) tollgate with its decision
# cache (hits), (d) tollgate with cache.ttl_ms = 0, (e) the decision listener
# (nginx convention, cache hits) asked as examples/decisions/nginx.conf asks it. Each proxy runs alone under
# callgrind; after WARMUP requests the counters are zeroed, REQUESTS more are
# sent over CONNS keep-alive connections, and the counters are dumped. The
# dumps stay in OUT for callgrind_annotate.
#
#   benches/callgrind.sh                 # all three cases
#   CASES="c" REQUESTS=5000 benches/callgrind.sh
#   TOLLGATE_LOG=info benches/callgrind.sh   # access log on (load.sh runs with warn)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

REQUESTS=${REQUESTS:-20000}
WARMUP=${WARMUP:-2000}
CONNS=${CONNS:-8}
CASES=${CASES:-"b c d"}
LOG_LEVEL=${TOLLGATE_LOG:-warn}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

for tool in valgrind callgrind_control callgrind_annotate redis-server redis-cli curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
if [ -z "${SKIP_BUILD:-}" ]; then
  scripts/ensure-deps.sh build
  cargo build --release --locked --bin tollgate --example passthrough --example fixed_upstream
fi
# shellcheck source=benches/lib.sh
. benches/lib.sh

start_backends

# The account, workspace, membership and token, made once through a
# tollgate that is not measured; the measured ones share its Redis.
P=$(free_port); AD=$(free_port); ME=$(free_port)
write_config setup 500 "$P" "$AD" "$ME"
TOLLGATE_ADMIN_KEY=$ADMIN_KEY TOLLGATE_LOG=warn "$BIN/tollgate" serve --config "$WORK/setup.toml" \
  >"$WORK/setup.log" 2>&1 &
SETUP_PID=$!
PIDS+=("$SETUP_PID")
wait_http "http://127.0.0.1:$AD/healthz"
make_account "$AD" "$P"
kill "$SETUP_PID"
wait "$SETUP_PID" 2>/dev/null || true

# Exactly N requests over CONNS keep-alive connections, each connection
# sending its next request when the answer is in; anything but 200 fails.
cat >"$WORK/drive.py" <<'PY'
import selectors, socket, sys
host, port, path, n, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
auth = sys.argv[6] if len(sys.argv) > 6 else ""
extra = sys.argv[7] if len(sys.argv) > 7 else ""
req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
       + (f"Authorization: Bearer {auth}\r\n" if auth else "") + extra + "\r\n").encode()
sel = selectors.DefaultSelector()
sent = done = bad = 0
def send(s):
    global sent
    s.sendall(req)
    sent += 1
for _ in range(min(conns, n)):
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sel.register(s, selectors.EVENT_READ, [s, b""])
    send(s)
while done < n:
    for key, _ in sel.select():
        conn = key.data
        data = conn[0].recv(65536)
        if not data:
            sys.exit("connection closed by the proxy")
        conn[1] += data
        while (i := conn[1].find(b"\r\n\r\n")) >= 0:
            head = conn[1][:i].decode("latin1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(conn[1]) < i + 4 + length:
                break
            bad += head[0].split()[1] != "200"
            conn[1] = conn[1][i + 4 + length:]
            done += 1
            if sent < n:
                send(conn[0])
if bad:
    sys.exit(f"{bad} of {n} answers were not 200")
PY
drive() { # n port path [token]
  python3 "$WORK/drive.py" 127.0.0.1 "$2" "$3" "$1" "$CONNS" "${4:-}" "${DRIVE_EXTRA:-}"
}

total_ir() { # callgrind dump -> total Ir
  awk '/^(summary|totals):/ {print $2; exit}' "$1"
}

measure() { # case port path ready_url cmd... ; sets IR_PER_REQ
  local name=$1 port=$2 path=$3 ready=$4; shift 4
  local token=""
  [ "$name" != b ] && token=$TOKEN
  rm -f "$OUT/$name.out"*
  # shellcheck disable=SC2086 # VALGRIND_ARGS is a list of options
  valgrind --tool=callgrind ${VALGRIND_ARGS:-} --callgrind-out-file="$OUT/$name.out" "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_http "$ready" 600
  drive "$WARMUP" "$port" "$path" "$token"
  callgrind_control -z "$pid" >/dev/null
  drive "$REQUESTS" "$port" "$path" "$token"
  callgrind_control -d "measured" "$pid" >/dev/null
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  local dump
  # The dump asked for is NAME.out.1; NAME.out holds what ran after it.
  dump=$(ls "$OUT/$name.out."* | head -1)
  mv "$dump" "$OUT/$name.measured"
  local ir
  ir=$(total_ir "$OUT/$name.measured")
  IR_PER_REQ=$((ir / REQUESTS))
  printf '%-40s %14s Ir total %10s Ir/request\n' "$name" "$ir" "$IR_PER_REQ"
}

declare -A RESULT
for c in $CASES; do
  case $c in
    b)
      PT=$(free_port)
      measure b "$PT" /api/v1/workflows/x "http://127.0.0.1:$PT/" \
        "$BIN/examples/passthrough" "127.0.0.1:$PT" "127.0.0.1:$UP" 1
      ;;
    c | d)
      ttl=500; [ "$c" = d ] && ttl=0
      P=$(free_port); AD=$(free_port); ME=$(free_port)
      write_config "$c" "$ttl" "$P" "$AD" "$ME"
      TOLLGATE_ADMIN_KEY=$ADMIN_KEY TOLLGATE_LOG=$LOG_LEVEL \
        measure "$c" "$P" "/api/v1/workflows/x?environmentId=bench-env" \
        "http://127.0.0.1:$AD/healthz" "$BIN/tollgate" serve --config "$WORK/$c.toml"
      ;;
    e)
      # The decision listener (nginx convention, cache on) asked as
      # examples/decisions/nginx.conf's /_tollgate asks it.
      P=$(free_port); AD=$(free_port); ME=$(free_port); DL=$(free_port)
      write_config e 500 "$P" "$AD" "$ME"
      sed -i "/^threads = /a decisions_listen = \"127.0.0.1:$DL\"" "$WORK/e.toml"
      printf '[decisions]\nconvention = "nginx"\n' >>"$WORK/e.toml"
      DRIVE_EXTRA=$'X-Original-Method: GET\r\nX-Original-URI: /api/v1/workflows/x?environmentId=bench-env\r\n' \
        TOLLGATE_ADMIN_KEY=$ADMIN_KEY TOLLGATE_LOG=$LOG_LEVEL \
        measure e "$DL" /_tollgate "http://127.0.0.1:$AD/healthz" "$BIN/tollgate" serve --config "$WORK/e.toml"
      ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
  esac
  RESULT[$c]=$IR_PER_REQ
done

echo
echo "instructions per request ($REQUESTS requests after $WARMUP warm-up, $CONNS connections, TOLLGATE_LOG=$LOG_LEVEL):"
for c in $CASES; do printf '  (%s) %s\n' "$c" "${RESULT[$c]}"; done
if [ -n "${RESULT[b]:-}" ]; then
  for c in c d; do
    [ -n "${RESULT[$c]:-}" ] && awk -v x="${RESULT[$c]}" -v b="${RESULT[b]}" -v c="$c" \
      'BEGIN {printf "  %s/b = %.2f (tollgate adds %d Ir/request)\n", c, x / b, x - b}'
  done
fi
echo "dumps: $OUT/<case>.measured  (callgrind_annotate --inclusive=yes FILE)"
