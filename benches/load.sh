#!/usr/bin/env bash
# Load benchmark: tollgate against a bare pingora passthrough, in one run on
# this machine. Builds release binaries, starts a fixed small-response
# upstream, a throwaway Redis, and each proxy on one worker thread pinned to
# CPU 0 while wrk, the upstream and Redis share CPU 1. Prints requests/s,
# p50 and p99 per case and the ratios c/b and d/b, measured in turns and
# side by side (see below), and tollgate beside nginx proxy_pass.
#
#   benches/load.sh            # 10 s per case, 64 connections; b, c and d
#                              # in 5 side-by-side rounds and 9 rounds in
#                              # turns, 5 s each
#   DURATION=30s CONNS=128 SIDE_ROUNDS=9 ROUNDS=15 ROUND_DURATION=3s benches/load.sh
#   ONLY=heads benches/load.sh # case (h) alone: unfinished request heads
#   ONLY=decisions benches/load.sh
#                              # case (i) alone: nginx + auth_request asking
#                              # tollgate's decision listener, beside nginx
#                              # alone and tollgate inline
#   ONLY=edge benches/load.sh  # the edge protocols alone: tollgate (cache
#                              # hits) beside a pingora passthrough speaking
#                              # the same protocol, side by side: TLS with
#                              # HTTP/1.1 (wrk), h2c and HTTP/2 over TLS
#                              # (h2load); EDGE_ROUNDS rounds (default 5)
#   ONLY=limits benches/load.sh # case (l) alone: a rate-limited route beside
#                              # the same route without a limit
#   THREADS=2 ...              # worker threads per proxy (default 1)
#   COMPARE_BIN=path/to/tollgate benches/load.sh
#                              # only this build's cached tollgate side by
#                              # side with another build's (before/after)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
COLD_CLIENTS=${COLD_CLIENTS:-20}

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else
    echo "missing $1: run  sudo apt-get install -y $2" >&2
    exit 1
  fi
}
need wrk wrk
need redis-server redis-server
need curl curl
need taskset util-linux
need nginx nginx
scripts/ensure-deps.sh build

cargo build --release --locked --bin tollgate --example passthrough --example fixed_upstream
# shellcheck source=benches/lib.sh
. benches/lib.sh

start_backends taskset -c "$LOAD_CPU"

start_tollgate() { # config [binary] -> sets TG_PID_LAST
  TOLLGATE_ADMIN_KEY=$ADMIN_KEY TOLLGATE_LOG=warn taskset -c "$PROXY_CPU" "${2:-$BIN/tollgate}" serve --config "$1" \
    >"$WORK/tollgate.log" 2>&1 &
  TG_PID_LAST=$!
  PIDS+=("$TG_PID_LAST")
}

# (h) Unfinished request heads: HEAD_CONNS connections (default 1,500)
# each send HEAD_LINES header lines of 65,000 bytes without the blank line
# that ends a head, on a fresh tollgate; its RSS before, at the peak while
# they are open, and 2 s after they closed. server.max_request_head_bytes
# and server.request_head_timeout_ms bound what each may hold. Runs alone
# with  ONLY=heads benches/load.sh
heads_case() {
  local p ad me pid
  p=$(free_port); ad=$(free_port); me=$(free_port)
  write_config heads 500 "$p" "$ad" "$me"
  start_tollgate "$WORK/heads.toml"
  pid=$TG_PID_LAST
  wait_http "http://127.0.0.1:$ad/healthz"
  cat >"$WORK/heads.py" <<'PY'
import resource, socket, sys, threading, time
port, pid, conns, lines = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, conns + 100)), hard))
def rss():
    line = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0]
    return int(line.split()[1]) // 1024
before = rss()
peak, done = before, False
def sample():
    global peak
    while not done:
        peak = max(peak, rss())
        time.sleep(0.05)
t = threading.Thread(target=sample)
t.start()
line = b"x-filler: " + b"a" * 64990 + b"\r\n"
socks, refused = [], 0
for i in range(conns):
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(5)
        s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")
        socks.append(s)
    except OSError:
        refused += 1
for _ in range(lines):
    for s in socks:
        try:
            s.sendall(line)
        except OSError:
            pass
time.sleep(1)
answered = 0
for s in socks:
    try:
        answered += s.recv(4096).startswith(b"HTTP/1.1 431")
    except OSError:
        pass
during = peak
for s in socks:
    s.close()
time.sleep(2)
done = True
t.join()
print(before, during, rss(), answered, refused)
PY
  read -r H_BEFORE H_DURING H_AFTER H_431 H_REFUSED < <(python3 "$WORK/heads.py" "$p" "$pid" "${HEAD_CONNS:-1500}" "${HEAD_LINES:-15}")
  H_LINE="(h) ${HEAD_CONNS:-1500} connections x ${HEAD_LINES:-15} header lines of 65,000 bytes without the blank line: tollgate RSS ${H_BEFORE} MiB before, ${H_DURING} MiB at the peak, ${H_AFTER} MiB 2 s after they closed (${H_431} answered 431, ${H_REFUSED} not connected)"
  echo "$H_LINE"
}

# (i) Decision-service mode (docs/decisions.md): nginx with auth_request
# asking tollgate's decision listener (cache on), as examples/decisions/
# nginx.conf configures it, side by side with nginx alone (proxy_pass with
# keep-alive), and tollgate inline (its proxy listener) side by side with
# nginx alone; the same snippet without keep-alive to tollgate, to show
# what that costs; and, as the control, the same snippet asking an nginx
# that answers a fixed 200 (the most any authorizer can score here). Each
# nginx has one worker; nginx, tollgate and the
# passthrough share CPU $PROXY_CPU, so each ratio is one of costs per request.
nginx_on() { # name port http-body -> starts nginx (1 worker) on CPU $PROXY_CPU
  mkdir -p "$WORK/$1"
  cat >"$WORK/$1.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/$1/body;
  proxy_temp_path $WORK/$1/proxy;
  fastcgi_temp_path $WORK/$1/fastcgi;
  uwsgi_temp_path $WORK/$1/uwsgi;
  scgi_temp_path $WORK/$1/scgi;
$3
}
NGINX
  taskset -c "$PROXY_CPU" nginx -c "$WORK/$1.conf" -p "$WORK/$1" &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$2/"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
decisions_case() {
  local p ad me dl plain auth auth_nokeep r
  p=$(free_port); ad=$(free_port); me=$(free_port); dl=$(free_port)
  write_config decisions 500 "$p" "$ad" "$me"
  sed -i "/^threads = /a decisions_listen = \"127.0.0.1:$dl\"" "$WORK/decisions.toml"
  printf '[decisions]\nconvention = "nginx"\n' >>"$WORK/decisions.toml"
  start_tollgate "$WORK/decisions.toml"
  wait_http "http://127.0.0.1:$ad/healthz"
  [ -n "${TOKEN:-}" ] || make_account "$ad" "$p"
  local target="/api/v1/workflows/x?environmentId=bench-env" auth_h=(-H "Authorization: Bearer $TOKEN")
  # A second tollgate on the same store whose decision listener is a Unix
  # socket, as for an nginx on the same host.
  local p2 ad2 me2 sock="$WORK/decisions.sock" tg_uds_pid
  p2=$(free_port); ad2=$(free_port); me2=$(free_port)
  write_config decisions_uds 500 "$p2" "$ad2" "$me2"
  sed -i "/^threads = /a decisions_socket_mode = \"0666\"" "$WORK/decisions_uds.toml"
  sed -i "/^threads = /a decisions_listen = \"unix:$sock\"" "$WORK/decisions_uds.toml"
  printf '[decisions]\nconvention = "nginx"\n' >>"$WORK/decisions_uds.toml"
  local tg_pid=$TG_PID_LAST
  start_tollgate "$WORK/decisions_uds.toml"
  tg_uds_pid=$TG_PID_LAST
  wait_http "http://127.0.0.1:$ad2/healthz"
  plain=$(free_port); auth=$(free_port); auth_nokeep=$(free_port)
  local auth_uds auth_uds_pid
  auth_uds=$(free_port)
  nginx_on dec_plain "$plain" "upstream bench { server 127.0.0.1:$UP; keepalive 64; }
server { listen 127.0.0.1:$plain; location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
  local plain_pid=${PIDS[-1]} auth_pid
  local snippet
  snippet=$(grep -v '^#' examples/decisions/nginx.conf)
  snippet=${snippet//\{decisions\}/127.0.0.1:$dl}
  snippet=${snippet//\{backend\}/127.0.0.1:$UP}
  nginx_on dec_auth "$auth" "${snippet//\{listen\}/127.0.0.1:$auth}"
  auth_pid=${PIDS[-1]}
  snippet=$(grep -v -e '^#' -e '^    keepalive 32;' examples/decisions/nginx.conf)
  snippet=${snippet//\{decisions\}/127.0.0.1:$dl}
  snippet=${snippet//\{backend\}/127.0.0.1:$UP}
  nginx_on dec_auth_nokeep "$auth_nokeep" "${snippet//\{listen\}/127.0.0.1:$auth_nokeep}"
  snippet=$(grep -v '^#' examples/decisions/nginx.conf)
  snippet=${snippet//\{decisions\}/unix:$sock}
  snippet=${snippet//\{backend\}/127.0.0.1:$UP}
  nginx_on dec_auth_uds "$auth_uds" "${snippet//\{listen\}/127.0.0.1:$auth_uds}"
  auth_uds_pid=${PIDS[-1]}
  # The control: the same snippet asking an nginx (its own process, same
  # CPU) that answers every check with a fixed 200 and the identity headers
  # tollgate answered this one with. No authorizer reached over HTTP does
  # less per check, so this pair is the most any authorizer can score here.
  local answer fixed_h static static_pid auth_static auth_static_pid
  answer=$(curl -s -D - -o /dev/null "${auth_h[@]}" -H "X-Original-Method: GET" -H "X-Original-URI: $target" "http://127.0.0.1:$dl/")
  fixed_h=$(awk -F': ' 'tolower($1) ~ /^(x-tollgate-|cache-control)/ {sub("\r$", "", $2); printf "add_header %s \"%s\"; ", $1, $2}' <<<"$answer")
  [ "$(grep -c 'X-Tollgate\|x-tollgate' <<<"$fixed_h" || true)" != 0 ] \
    || { echo "set-up failed: tollgate's answer carries no identity headers" >&2; exit 1; }
  static=$(free_port); auth_static=$(free_port)
  nginx_on dec_static "$static" "server { listen 127.0.0.1:$static; keepalive_requests 100000; location / { $fixed_h return 200; } }"
  static_pid=${PIDS[-1]}
  snippet=$(grep -v '^#' examples/decisions/nginx.conf)
  snippet=${snippet//\{decisions\}/127.0.0.1:$static}
  snippet=${snippet//\{backend\}/127.0.0.1:$UP}
  nginx_on dec_auth_static "$auth_static" "${snippet//\{listen\}/127.0.0.1:$auth_static}"
  auth_static_pid=${PIDS[-1]}
  for u in "http://127.0.0.1:$auth$target" "http://127.0.0.1:$auth_nokeep$target" "http://127.0.0.1:$auth_uds$target" "http://127.0.0.1:$auth_static$target" "http://127.0.0.1:$p$target"; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$u" "${auth_h[@]}")" = 200 ] \
      || { echo "set-up failed: the benchmark request is not allowed on $u" >&2; cat "$WORK/tollgate.log" >&2; exit 1; }
  done
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$auth$target")" = 401 ] \
    || { echo "set-up failed: nginx + tollgate let a request without a token through" >&2; exit 1; }
  local rounds=${SIDE_ROUNDS:-5} dur=${SIDE_DURATION:-5s} x b
  I_AUTH=(); I_NOKEEP=(); I_INLINE=(); I_DIRECT=(); I_UDS=(); I_STATIC=()
  # The decision listener asked directly, as nginx's /_tollgate asks it.
  local direct_h=(-H "X-Original-Method: GET" -H "X-Original-URI: $target")
  pair() { # url_x url_b [wrk args of x] -> PAIR_RATIO
    local ux=$1 ub=$2; shift 2
    if [ $((r % 2)) = 1 ]; then
      taskset -c "$LOAD_CPU" wrk -t1 -c"$((CONNS / 2))" -d"$dur" "${auth_h[@]}" "$@" "$ux" >"$WORK/i_x.txt" & x=$!
      taskset -c "$LOAD_CPU" wrk -t1 -c"$((CONNS / 2))" -d"$dur" "${auth_h[@]}" "$ub" >"$WORK/i_b.txt" & b=$!
    else
      taskset -c "$LOAD_CPU" wrk -t1 -c"$((CONNS / 2))" -d"$dur" "${auth_h[@]}" "$ub" >"$WORK/i_b.txt" & b=$!
      taskset -c "$LOAD_CPU" wrk -t1 -c"$((CONNS / 2))" -d"$dur" "${auth_h[@]}" "$@" "$ux" >"$WORK/i_x.txt" & x=$!
    fi
    wait "$x" "$b"
    PAIR_RATIO=$(awk -v x="$(awk '/Requests\/sec/ {print $2}' "$WORK/i_x.txt")" \
      -v b="$(awk '/Requests\/sec/ {print $2}' "$WORK/i_b.txt")" 'BEGIN {printf "%.3f", x / b}')
    if grep -q Non-2xx "$WORK/i_x.txt"; then echo "non-2xx answers in (i): $(grep Non-2xx "$WORK/i_x.txt")" >&2; fi
  }
  for r in $(seq 1 "$rounds"); do
    pair "http://127.0.0.1:$auth$target" "http://127.0.0.1:$plain$target"; I_AUTH+=("$PAIR_RATIO")
    pair "http://127.0.0.1:$p$target" "http://127.0.0.1:$plain$target"; I_INLINE+=("$PAIR_RATIO")
    pair "http://127.0.0.1:$auth_nokeep$target" "http://127.0.0.1:$plain$target"; I_NOKEEP+=("$PAIR_RATIO")
    pair "http://127.0.0.1:$dl/" "http://127.0.0.1:$plain$target" "${direct_h[@]}"; I_DIRECT+=("$PAIR_RATIO")
    pair "http://127.0.0.1:$auth_uds$target" "http://127.0.0.1:$plain$target"; I_UDS+=("$PAIR_RATIO")
    pair "http://127.0.0.1:$auth_static$target" "http://127.0.0.1:$plain$target"; I_STATIC+=("$PAIR_RATIO")
    echo "(i) round $r: nginx+tollgate/nginx ${I_AUTH[-1]}, nginx+fixed answer/nginx ${I_STATIC[-1]}, over a Unix socket ${I_UDS[-1]}, tollgate inline/nginx ${I_INLINE[-1]}, without keep-alive to tollgate ${I_NOKEEP[-1]}, decision listener alone/nginx ${I_DIRECT[-1]}" >&2
  done
  # Where the CPU goes: each set-up alone (not side by side), the CPU time
  # (user + system, from /proc) each process spent per request answered.
  cpu_ticks() { awk '{print $14 " " $15}' "/proc/$1/stat"; }
  alone() { # url pid... -> ALONE_US (per process, per request)
    local url=$1; shift
    local before=() p i=0
    for p in "$@"; do before+=("$(cpu_ticks "$p")"); done
    taskset -c "$LOAD_CPU" wrk -t1 -c"$((CONNS / 2))" -d"$dur" "${auth_h[@]}" "$url" >"$WORK/i_alone.txt"
    local n hz
    n=$(awk '/requests in/ {print $1}' "$WORK/i_alone.txt"); hz=$(getconf CLK_TCK)
    ALONE_US=()
    for p in "$@"; do
      # "total (user u, system s)" in microseconds per request.
      ALONE_US+=("$(awk -v a="${before[$i]}" -v b="$(cpu_ticks "$p")" -v n="$n" -v hz="$hz" 'BEGIN {
        split(a, x, " "); split(b, y, " "); k = 1e6 / hz / n
        u = (y[1] - x[1]) * k; s = (y[2] - x[2]) * k
        printf "%.1f (user %.1f, system %.1f)", u + s, u, s }')")
      i=$((i + 1))
    done
  }
  alone "http://127.0.0.1:$plain$target" "$plain_pid"; local cpu_plain=${ALONE_US[0]}
  alone "http://127.0.0.1:$auth$target" "$auth_pid" "$tg_pid"; local cpu_auth=${ALONE_US[0]} cpu_tg=${ALONE_US[1]}
  alone "http://127.0.0.1:$auth_uds$target" "$auth_uds_pid" "$tg_uds_pid"; local cpu_auth_uds=${ALONE_US[0]} cpu_tg_uds=${ALONE_US[1]}
  alone "http://127.0.0.1:$auth_static$target" "$auth_static_pid" "$static_pid"; local cpu_auth_static=${ALONE_US[0]} cpu_static=${ALONE_US[1]}
  I_CPU_LINE="(i) CPU per request, each set-up alone ($dur): nginx alone ${cpu_plain} us; nginx with auth_request ${cpu_auth} us + tollgate's decision listener ${cpu_tg} us; over a Unix socket, nginx ${cpu_auth_uds} us + tollgate ${cpu_tg_uds} us; asking the fixed answer, nginx ${cpu_auth_static} us + the fixed-answer nginx ${cpu_static} us"
  echo "$I_CPU_LINE"
  I_LINE="(i) side by side with nginx alone (1 worker, same CPU), $rounds rounds of $dur, wrk -c$((CONNS / 2)) each: nginx + auth_request -> tollgate (cache on) / nginx = $(median "${I_AUTH[@]}") (${I_AUTH[*]}); the control, nginx + auth_request -> nginx's fixed 200 / nginx = $(median "${I_STATIC[@]}") (${I_STATIC[*]}); tollgate inline / nginx = $(median "${I_INLINE[@]}") (${I_INLINE[*]}); nginx + tollgate without keep-alive to tollgate / nginx = $(median "${I_NOKEEP[@]}") (${I_NOKEEP[*]}); tollgate's decision listener asked directly / nginx = $(median "${I_DIRECT[@]}") (${I_DIRECT[*]}); nginx + auth_request -> tollgate over a Unix socket / nginx = $(median "${I_UDS[@]}") (${I_UDS[*]})"
  echo "$I_LINE"
}

# wrk prints 850.00us, 1.04ms or 1.20s; microseconds, as a number.
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else print n * 1000000 }'; }

RESULTS=()
run_wrk() { # label url [extra wrk args...]
  local label=$1 url=$2; shift 2
  local out
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"${WRK_CONNS:-$CONNS}" -d"$DURATION" --latency "$@" "$url")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  RESULTS+=("$(printf '%-44s %12s %10s %10s %s' "$label" "$rps" "$p50" "$p99" "${non2xx:+(non-2xx: $non2xx)}")")
  echo "$label: $rps req/s, p50 $p50, p99 $p99 ${non2xx:+non-2xx $non2xx}" >&2
  LAST_RPS=$rps
  LAST_P50=$(to_us "$p50")
  LAST_P99=$(to_us "$p99")
}

if [ "${ONLY:-}" = heads ]; then
  heads_case
  exit 0
fi
if [ "${ONLY:-}" = decisions ]; then
  decisions_case
  exit 0
fi

# (l) What a rate limit costs: two fresh cached tollgates side by side on
# the proxies' CPU, one asked for a route with a rate_limit it never
# reaches (bench-limited), the other for the same route without one
# (bench-read); everything else alike. Each pair is started in either
# order, turn about; the passthrough control pair says how far from 1.000
# the method strays. Runs alone, short, with  ONLY=limits benches/load.sh
# (LIMIT_ROUNDS rounds, default 5, of SIDE_DURATION, default 5 s).
limits_case() {
  local pl al ml pu au mu
  pl=$(free_port); al=$(free_port); ml=$(free_port)
  write_config limited 500 "$pl" "$al" "$ml"
  start_tollgate "$WORK/limited.toml"
  wait_http "http://127.0.0.1:$al/healthz"
  pu=$(free_port); au=$(free_port); mu=$(free_port)
  write_config unlimited 500 "$pu" "$au" "$mu"
  start_tollgate "$WORK/unlimited.toml"
  wait_http "http://127.0.0.1:$au/healthz"
  make_account "$al" "$pl"
  local url_l="http://127.0.0.1:$pl/api/v1/limited/x?environmentId=bench-env"
  local url_u="http://127.0.0.1:$pu/api/v1/workflows/x?environmentId=bench-env"
  for u in "$url_l" "$url_u"; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$u" -H "Authorization: Bearer $TOKEN")" = 200 ] \
      || { echo "set-up failed: $u is not allowed" >&2; cat "$WORK/tollgate.log" >&2; exit 1; }
  done
  local c1 c2 pt1 pt2 r l_rps u_rps
  LIMIT_RATIOS=(); LIMIT_CONTROL=()
  c1=$(free_port); taskset -c "$PROXY_CPU" "$BIN/examples/passthrough" "127.0.0.1:$c1" "127.0.0.1:$UP" 1 & PIDS+=($!)
  c2=$(free_port); taskset -c "$PROXY_CPU" "$BIN/examples/passthrough" "127.0.0.1:$c2" "127.0.0.1:$UP" 1 & PIDS+=($!)
  wait_http "http://127.0.0.1:$c1/"; wait_http "http://127.0.0.1:$c2/"
  pair_ratio() { # url_x url_y round -> PAIR_RATIO, PAIR_X, PAIR_Y
    local px py
    if [ $(($3 % 2)) = 1 ]; then
      taskset -c "$LOAD_CPU" wrk -t1 -c"$((CONNS / 2))" -d"${SIDE_DURATION:-5s}" -H "Authorization: Bearer $TOKEN" "$1" >"$WORK/lx.txt" & px=$!
      taskset -c "$LOAD_CPU" wrk -t1 -c"$((CONNS / 2))" -d"${SIDE_DURATION:-5s}" -H "Authorization: Bearer $TOKEN" "$2" >"$WORK/ly.txt" & py=$!
    else
      taskset -c "$LOAD_CPU" wrk -t1 -c"$((CONNS / 2))" -d"${SIDE_DURATION:-5s}" -H "Authorization: Bearer $TOKEN" "$2" >"$WORK/ly.txt" & py=$!
      taskset -c "$LOAD_CPU" wrk -t1 -c"$((CONNS / 2))" -d"${SIDE_DURATION:-5s}" -H "Authorization: Bearer $TOKEN" "$1" >"$WORK/lx.txt" & px=$!
    fi
    wait "$px" "$py"
    PAIR_X=$(awk '/Requests\/sec/ {print $2}' "$WORK/lx.txt")
    PAIR_Y=$(awk '/Requests\/sec/ {print $2}' "$WORK/ly.txt")
    PAIR_RATIO=$(awk -v x="$PAIR_X" -v y="$PAIR_Y" 'BEGIN {printf "%.3f", x / y}')
    if grep -q "Non-2xx" "$WORK/lx.txt" "$WORK/ly.txt"; then
      echo "non-2xx answers in round $3:" >&2; cat "$WORK/lx.txt" "$WORK/ly.txt" >&2; exit 1
    fi
  }
  for r in $(seq 1 "${LIMIT_ROUNDS:-5}"); do
    pair_ratio "$url_l" "$url_u" "$r"; LIMIT_RATIOS+=("$PAIR_RATIO")
    echo "round $r: limited $PAIR_X req/s, unlimited $PAIR_Y req/s, ratio $PAIR_RATIO" >&2
    pair_ratio "http://127.0.0.1:$c1/api/v1/workflows/x" "http://127.0.0.1:$c2/api/v1/workflows/x" "$r"; LIMIT_CONTROL+=("$PAIR_RATIO")
  done
  local leases
  leases=$(curl -s "http://127.0.0.1:$ml/metrics" | awk '/^tollgate_limit_leases_total\{kind="rate",result="granted"\}/ {print $2}')
  echo "(l) rate-limited route over the same route without a limit, cached, side by side, ${LIMIT_ROUNDS:-5} rounds of ${SIDE_DURATION:-5s}: ${LIMIT_RATIOS[*]}; median $(printf '%s\n' "${LIMIT_RATIOS[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') (control b'/b ${LIMIT_CONTROL[*]}); ${leases:-0} leases from Redis"
}
if [ "${ONLY:-}" = limits ]; then
  limits_case
  exit 0
fi

# The edge protocols: each a tollgate with its decision cache beside a
# pingora passthrough (benches/baselines/passthrough.rs) offering the same
# protocol, side by side on CPU $PROXY_CPU as below, each driven by a load
# generator of its own with half the connections: wrk over TLS (HTTP/1.1,
# no ALPN), h2load with prior knowledge (h2c) and over TLS (ALPN h2), 10
# streams per connection. The pair is a fresh self-signed ECDSA P-256 one.
edge_case() {
  need h2load nghttp2-client
  need openssl openssl
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/edge.key" -out "$WORK/edge.pem" -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
  local p ad me pt ptt pth tp tad tme
  p=$(free_port); ad=$(free_port); me=$(free_port)
  write_config edge_plain 500 "$p" "$ad" "$me"
  start_tollgate "$WORK/edge_plain.toml"
  wait_http "http://127.0.0.1:$ad/healthz"
  make_account "$ad" "$p"
  tp=$(free_port); tad=$(free_port); tme=$(free_port)
  write_config edge_tls 500 "$tp" "$tad" "$tme"
  cat >>"$WORK/edge_tls.toml" <<TOML
[server.tls]
cert_file = "$WORK/edge.pem"
key_file = "$WORK/edge.key"
TOML
  start_tollgate "$WORK/edge_tls.toml"
  wait_http "http://127.0.0.1:$tad/healthz"
  ptt=$(free_port); pth=$(free_port)
  taskset -c "$PROXY_CPU" "$BIN/examples/passthrough" "127.0.0.1:$ptt" "127.0.0.1:$UP" 1 "tls:$WORK/edge.pem:$WORK/edge.key" &
  PIDS+=($!)
  taskset -c "$PROXY_CPU" "$BIN/examples/passthrough" "127.0.0.1:$pth" "127.0.0.1:$UP" 1 h2c &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$pth/"
  for _ in $(seq 1 50); do curl -sk -o /dev/null "https://127.0.0.1:$ptt/" && break; sleep 0.1; done
  local target="/api/v1/workflows/x?environmentId=bench-env"
  [ "$(curl -sk --http2 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$tp$target" -H "Authorization: Bearer $TOKEN")" = 200 ] \
    || { echo "set-up failed: the request is not allowed over TLS" >&2; exit 1; }
  [ "$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p$target" -H "Authorization: Bearer $TOKEN")" = 200 ] \
    || { echo "set-up failed: the request is not allowed over h2c" >&2; exit 1; }
  local half=$((CONNS / 2)) dur=${SIDE_DURATION:-5s}
  edge_load() { # tool url out
    if [ "$1" = wrk ]; then
      taskset -c "$LOAD_CPU" wrk -t1 -c"$half" -d"$dur" -H "Authorization: Bearer $TOKEN" "$2" \
        | awk '/Requests\/sec/ {print $2}' >"$3" &
    else
      taskset -c "$LOAD_CPU" h2load -t1 -c"$((half / 4 > 0 ? half / 4 : 1))" -m10 -D"${dur%s}" \
        -H "authorization: Bearer $TOKEN" "$2" \
        | awk '/^finished in/ {print $4}' >"$3" &
    fi
    EDGE_PIDS+=($!)
  }
  edge_pair() { # tool tollgate_url passthrough_url -> EDGE_RATIO
    EDGE_PIDS=()
    if [ $((r % 2)) = 1 ]; then
      edge_load "$1" "$2" "$WORK/edge_x"; edge_load "$1" "$3" "$WORK/edge_b"
    else
      edge_load "$1" "$3" "$WORK/edge_b"; edge_load "$1" "$2" "$WORK/edge_x"
    fi
    wait "${EDGE_PIDS[@]}"
    EDGE_X=$(cat "$WORK/edge_x"); EDGE_B=$(cat "$WORK/edge_b")
    EDGE_RATIO=$(awk -v x="$EDGE_X" -v b="$EDGE_B" 'BEGIN {printf "%.3f", x / b}')
  }
  local r ETLS=() EH2C=() EH2T=() XT=() XC=() XH=()
  for r in $(seq 1 "${EDGE_ROUNDS:-5}"); do
    edge_pair wrk "https://127.0.0.1:$tp$target" "https://127.0.0.1:$ptt$target"
    ETLS+=("$EDGE_RATIO"); XT+=("$EDGE_X/$EDGE_B")
    edge_pair h2load "http://127.0.0.1:$p$target" "http://127.0.0.1:$pth$target"
    EH2C+=("$EDGE_RATIO"); XC+=("$EDGE_X/$EDGE_B")
    edge_pair h2load "https://127.0.0.1:$tp$target" "https://127.0.0.1:$ptt$target"
    EH2T+=("$EDGE_RATIO"); XH+=("$EDGE_X/$EDGE_B")
    echo "edge round $r: TLS-h1 ${ETLS[-1]}  h2c ${EH2C[-1]}  h2-TLS ${EH2T[-1]}" >&2
  done
  echo "machine: $(nproc) cores; proxies on 1 worker thread (CPU $PROXY_CPU), side by side, load on CPU $LOAD_CPU, ${EDGE_ROUNDS:-5} rounds of $dur"
  echo "tollgate/passthrough, TLS + HTTP/1.1 (wrk -c$half each): ${ETLS[*]}; median $(median "${ETLS[@]}")  (req/s ${XT[*]})"
  echo "tollgate/passthrough, h2c (h2load -m10): ${EH2C[*]}; median $(median "${EH2C[@]}")  (req/s ${XC[*]})"
  echo "tollgate/passthrough, HTTP/2 over TLS (h2load -m10): ${EH2T[*]}; median $(median "${EH2T[@]}")  (req/s ${XH[*]})"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

if [ "${ONLY:-}" = edge ]; then
  edge_case
  exit 0
fi

# (a) direct upstream
run_wrk "(a) direct upstream" "http://127.0.0.1:$UP/api/v1/workflows/x"
A=$LAST_RPS

# Proxies, each on one worker thread pinned to the same CPU: the bare
# pingora passthrough (b), tollgate with its decision cache (c) and without
# (d). All three stay up for the whole run. They are measured side by side
# (below), then in turns: short rounds in an order that rotates from round
# to round, so that a noisy neighbour or a slow drift of the machine hits
# every case alike; each round's c/b and d/b are compared, and their
# medians reported.
PT=$(free_port)
taskset -c "$PROXY_CPU" "$BIN/examples/passthrough" "127.0.0.1:$PT" "127.0.0.1:$UP" 1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PT/"

P=$(free_port); AD=$(free_port); ME=$(free_port)
write_config cached 500 "$P" "$AD" "$ME"
start_tollgate "$WORK/cached.toml"
TG_PID=$TG_PID_LAST
wait_http "http://127.0.0.1:$AD/healthz"
P2=$(free_port); AD2=$(free_port); ME2=$(free_port)
write_config uncached 0 "$P2" "$AD2" "$ME2"
start_tollgate "$WORK/uncached.toml"
wait_http "http://127.0.0.1:$AD2/healthz"

make_account "$AD" "$P"
# Every proxy gets the same request, token and query included: the
# passthrough forwards them as they are, tollgate checks them.
TARGET="/api/v1/workflows/x?environmentId=bench-env"
URL_B="http://127.0.0.1:$PT$TARGET"
URL_C="http://127.0.0.1:$P$TARGET"
URL_D="http://127.0.0.1:$P2$TARGET"
AUTH=(-H "Authorization: Bearer $TOKEN")
for u in "$URL_C" "$URL_D"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$u" "${AUTH[@]}")" = 200 ] \
    || { echo "set-up failed: the benchmark request is not allowed on $u" >&2; cat "$WORK/tollgate.log" >&2; exit 1; }
done


# Side by side: two proxies pinned to CPU 0 at the same time, each driven by
# a wrk of its own with half the connections, so that whatever the machine
# does to one in a given second it does to the other. The CPU is shared
# between them by the scheduler, and each one's requests/s is set by its own
# cost per request: the ratio measures that cost, not the machine's mood of
# the moment. Two more passthroughs side by side are the control: how far
# from 1.000 the method itself strays. Every proxy slows a little with the
# load it has served in the last minute or so (an aged passthrough, or
# tollgate, runs at 0.95-0.97 of a fresh one beside it), so the two of a
# pair always serve the same rounds: c beside b, d beside a passthrough of
# its own (b_d), the control pair beside each other. (With one passthrough
# beside all three, it served three times the rounds of its partners, and
# the control read 1.03.) This runs first, while every proxy has served
# alike; each pair is started in either order, turn about.
start_passthrough() { # -> LAST_PT (its port)
  LAST_PT=$(free_port)
  taskset -c "$PROXY_CPU" "$BIN/examples/passthrough" "127.0.0.1:$LAST_PT" "127.0.0.1:$UP" 1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$LAST_PT/"
}
start_passthrough; URL_BD="http://127.0.0.1:$LAST_PT$TARGET"
# nginx proxy_pass, one worker on the proxies' CPU with keep-alive to the
# upstream, beside a cached tollgate of its own (c_n): how tollgate's cost
# per request compares with the proxy most operators already run.
NG=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream bench { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NG;
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!)
wait_http "http://127.0.0.1:$NG/"
URL_N="http://127.0.0.1:$NG$TARGET"
P4=$(free_port); AD4=$(free_port); ME4=$(free_port)
write_config beside_nginx 500 "$P4" "$AD4" "$ME4"
start_tollgate "$WORK/beside_nginx.toml"
wait_http "http://127.0.0.1:$AD4/healthz"
URL_CN="http://127.0.0.1:$P4$TARGET"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL_CN" "${AUTH[@]}")" = 200 ] \
  || { echo "set-up failed: the benchmark request is not allowed on $URL_CN" >&2; exit 1; }
start_passthrough; URL_CONTROL1="http://127.0.0.1:$LAST_PT$TARGET"
start_passthrough; URL_CONTROL2="http://127.0.0.1:$LAST_PT$TARGET"
SIDE_ROUNDS=${SIDE_ROUNDS:-5}
SIDE_DURATION=${SIDE_DURATION:-5s}
side_wrk() { # url out; adds to SIDE_PIDS
  taskset -c "$LOAD_CPU" wrk -t1 -c"$((CONNS / 2))" -d"$SIDE_DURATION" "${AUTH[@]}" "$1" >"$2" &
  SIDE_PIDS+=($!)
}
side_by_side() { # url_x url_b -> SIDE_RATIO (x's requests/s over b's)
  SIDE_PIDS=()
  if [ $((r % 2)) = 1 ]; then
    side_wrk "$1" "$WORK/side_x.txt"; side_wrk "$2" "$WORK/side_b.txt"
  else
    side_wrk "$2" "$WORK/side_b.txt"; side_wrk "$1" "$WORK/side_x.txt"
  fi
  wait "${SIDE_PIDS[@]}"
  local rx rb
  rx=$(awk '/Requests\/sec/ {print $2}' "$WORK/side_x.txt")
  rb=$(awk '/Requests\/sec/ {print $2}' "$WORK/side_b.txt")
  SIDE_RATIO=$(awk -v x="$rx" -v b="$rb" 'BEGIN {printf "%.3f", x / b}')
}
SCB=(); SDB=(); SBB=(); SCN=()
side_c() { side_by_side "$URL_C" "$URL_B"; SCB+=("$SIDE_RATIO"); echo "side by side, round $r: c/b $SIDE_RATIO" >&2; }
side_d() { side_by_side "$URL_D" "$URL_BD"; SDB+=("$SIDE_RATIO"); echo "side by side, round $r: d/b $SIDE_RATIO" >&2; }
side_control() { side_by_side "$URL_CONTROL1" "$URL_CONTROL2"; SBB+=("$SIDE_RATIO"); echo "side by side, round $r: b'/b $SIDE_RATIO" >&2; }
side_nginx() { side_by_side "$URL_CN" "$URL_N"; SCN+=("$SIDE_RATIO"); echo "side by side, round $r: c/nginx $SIDE_RATIO" >&2; }
# Before/after: this build's cached tollgate (c) side by side with another
# build's (k) on the same Redis, token and request, and the passthrough
# control pair; nothing else runs.
if [ -n "${COMPARE_BIN:-}" ]; then
  P5=$(free_port); AD5=$(free_port); ME5=$(free_port)
  write_config compare 500 "$P5" "$AD5" "$ME5"
  start_tollgate "$WORK/compare.toml" "$COMPARE_BIN"
  wait_http "http://127.0.0.1:$AD5/healthz"
  URL_K="http://127.0.0.1:$P5$TARGET"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL_K" "${AUTH[@]}")" = 200 ] \
    || { echo "set-up failed: the benchmark request is not allowed on $URL_K" >&2; exit 1; }
  SCK=()
  for r in $(seq 1 "$SIDE_ROUNDS"); do
    side_by_side "$URL_C" "$URL_K"; SCK+=("$SIDE_RATIO"); echo "side by side, round $r: c/k $SIDE_RATIO" >&2
    side_control
  done
  echo "c/k (this build over $COMPARE_BIN, cached, side by side): median $(median "${SCK[@]}") of ${SCK[*]}"
  echo "control b'/b: median $(median "${SBB[@]}") of ${SBB[*]}"
  exit 0
fi
SIDES=(c d control nginx)
for r in $(seq 1 "$SIDE_ROUNDS"); do
  for i in 0 1 2 3; do
    "side_${SIDES[(i + r - 1) % 4]}"
  done
done
SCB_MED=$(median "${SCB[@]}"); SDB_MED=$(median "${SDB[@]}"); SBB_MED=$(median "${SBB[@]}"); SCN_MED=$(median "${SCN[@]}")

ROUNDS=${ROUNDS:-9}
ROUND_DURATION=${ROUND_DURATION:-5s}
BS=(); CS=(); DS=(); CP50=(); BP50=(); CP99=(); CB=(); DB=()
round_b() { run_wrk "(b) bare pingora passthrough, round $r" "$URL_B" "${AUTH[@]}"; RB=$LAST_RPS; BS+=("$LAST_RPS"); BP50+=("$LAST_P50"); }
round_c() { run_wrk "(c) tollgate, cache hits, round $r" "$URL_C" "${AUTH[@]}"; RC=$LAST_RPS; CS+=("$LAST_RPS"); CP50+=("$LAST_P50"); CP99+=("$LAST_P99"); }
round_d() { run_wrk "(d) tollgate, cache.ttl_ms = 0, round $r" "$URL_D" "${AUTH[@]}"; RD=$LAST_RPS; DS+=("$LAST_RPS"); }
ORDER=(b c d)
for r in $(seq 1 "$ROUNDS"); do
  for i in 0 1 2; do
    DURATION=$ROUND_DURATION "round_${ORDER[(i + r - 1) % 3]}"
  done
  CB+=("$(awk -v c="$RC" -v b="$RB" 'BEGIN {printf "%.3f", c / b}')")
  DB+=("$(awk -v d="$RD" -v b="$RB" 'BEGIN {printf "%.3f", d / b}')")
done
B=$(median "${BS[@]}"); C=$(median "${CS[@]}"); D=$(median "${DS[@]}")
B_P50=$(median "${BP50[@]}"); C_P50=$(median "${CP50[@]}"); C_P99=$(median "${CP99[@]}")
CB_MED=$(median "${CB[@]}"); DB_MED=$(median "${DB[@]}")

# The latency tollgate adds to one request, without queueing: at $CONNS
# connections both proxies are saturated and a p50 is mostly time spent
# waiting behind other requests (about connections / throughput). One
# connection sending one request at a time measures the work itself.
B1=(); C1=()
for r in $(seq 1 "$ROUNDS"); do
  WRK_CONNS=1 DURATION=$ROUND_DURATION run_wrk "(b) passthrough, 1 connection, round $r" "$URL_B" "${AUTH[@]}"; B1+=("$LAST_P50")
  WRK_CONNS=1 DURATION=$ROUND_DURATION run_wrk "(c) tollgate, 1 connection, round $r" "$URL_C" "${AUTH[@]}"; C1+=("$LAST_P50")
done
B1_P50=$(median "${B1[@]}"); C1_P50=$(median "${C1[@]}")

# (e) token issuance: warm (verified-secret cache hit) and cold
BASIC=$(printf '%s:%s' "$CLIENT_ID" "$SECRET" | base64 -w0)
cat >"$WORK/token.lua" <<LUA
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $BASIC"
LUA
# Warm: the secret was verified minutes ago, at set-up, and a verified
# secret is remembered for five minutes. One request now, so that the run
# measures warm clients and not a cold start (which, with wrk correcting for
# the stalled connections, showed as a p99 of ~0.5 s).
curl -s -o /dev/null -u "$CLIENT_ID:$SECRET" -d grant_type=client_credentials "http://127.0.0.1:$P/api/auth/oauth2/token"
DB_BEFORE=$(redis-cli -p "$REDIS" dbsize); MEM_BEFORE=$(redis-cli -p "$REDIS" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
run_wrk "(e) token issuance, warm client" "http://127.0.0.1:$P/api/auth/oauth2/token" -s "$WORK/token.lua"
DB_AFTER=$(redis-cli -p "$REDIS" dbsize); MEM_AFTER=$(redis-cli -p "$REDIS" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')

CREDS=()
for i in $(seq 1 "$COLD_CLIENTS"); do
  J=$(admin POST "/service-accounts/$SA_ID/credentials" "{\"name\":\"cold$i\"}")
  CREDS+=("$(json client_id <<<"$J"):$(json client_secret <<<"$J")")
done
T0=$(date +%s.%N)
for c in "${CREDS[@]}"; do
  curl -s -o /dev/null -u "$c" -d grant_type=client_credentials "http://127.0.0.1:$P/api/auth/oauth2/token"
done
T1=$(date +%s.%N)
COLD=$(awk -v n="$COLD_CLIENTS" -v a="$T0" -v b="$T1" 'BEGIN {printf "%.1f", n/(b-a)}')
RESULTS+=("$(printf '%-44s %12s %10s %10s' "(e) token issuance, cold (sequential)" "$COLD" "-" "-")")

# (f) (c) while the token endpoint is flooded with bad secrets from many
# addresses (X-Forwarded-For from a trusted proxy), so that the per-source
# throttle does not stop them, each secret different, as from a guesser, so
# that every one costs an argon2 verification (identical requests at once
# would share one).
cat >"$WORK/bad.lua" <<LUA
math.randomseed(os.time())
request = function()
  local ip = "10." .. math.random(0, 255) .. "." .. math.random(0, 255) .. "." .. math.random(1, 254)
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Forwarded-For"] = ip,
  }, "grant_type=client_credentials&client_id=$CLIENT_ID&client_secret=tg_sk_wrong-" .. math.random(1, 1000000000))
end
LUA
# (c) measured while a second wrk sends the flood; sets FLOOD_P99 (c's p99)
# and FLOOD_RPS (the flood's requests/s).
under_flood() { # label connections script url
  taskset -c "$LOAD_CPU" wrk -t1 -c"$2" -d"$DURATION" -s "$3" "$4" >"$WORK/flood.txt" &
  local flood=$!
  sleep 1
  run_wrk "$1" "$URL_C" "${AUTH[@]}"
  FLOOD_P99=$LAST_P99
  wait "$flood" || true
  FLOOD_RPS=$(awk '/Requests\/sec/ {print $2}' "$WORK/flood.txt")
}
under_flood "(f) (c) under a bad-secret flood" 16 "$WORK/bad.lua" "http://127.0.0.1:$P/api/auth/oauth2/token"
F_P99=$FLOOD_P99; F_RPS=$FLOOD_RPS

# (g) (c) while the proxy is flooded with distinct well-formed bearer tokens
# that do not exist: each one a cache miss, a Redis look-up and a 401, and
# (as an unknown token is remembered for a quarter of cache.ttl_ms) an entry
# in the decision cache, which cache.max_entries bounds. tollgate's RSS
# before and after shows that the flood does not grow it without bound.
rss_of() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$1/status"; }
G_RSS_BEFORE=$(rss_of "$TG_PID")
cat >"$WORK/badtokens.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  local token = string.sub("$TOKEN", 1, #"$TOKEN" - 12) .. string.format("%012d", n)
  return wrk.format("GET", "$TARGET", {["Authorization"] = "Bearer " .. token})
end
LUA
under_flood "(g) (c) under a flood of distinct bad tokens" 32 "$WORK/badtokens.lua" "http://127.0.0.1:$P"
G_P99=$FLOOD_P99; G_RPS=$FLOOD_RPS
G_RSS_AFTER=$(rss_of "$TG_PID")

# Idle keep-alive connections: RSS of the long-running tollgate after all
# the runs above (argon2 included), and of fresh processes (tollgate with its
# cache, and the passthrough) holding 1,000 keep-alive connections that each
# made one forwarded request and then went idle.
RSS_IDLE=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$TG_PID/status")
cat >"$WORK/idle.py" <<'PY'
import socket, sys, time
port, pid, path, token = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def rss():
    line = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0]
    return int(line.split()[1]) // 1024
auth = f"Authorization: Bearer {token}\r\n" if token != "-" else ""
request = f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()
before = rss()
socks = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request)
    socks.append(s)
ok = 0
for s in socks:
    ok += s.recv(65536).startswith(b"HTTP/1.1 200")
time.sleep(1)
print(before, rss(), ok)
PY
idle_rss() { # port pid path token
  python3 "$WORK/idle.py" "$@"
}
read -r RSS_OLD RSS RSS_OK < <(idle_rss "$P" "$TG_PID" /healthz-nothing -)
P3=$(free_port); AD3=$(free_port); ME3=$(free_port)
write_config fresh 500 "$P3" "$AD3" "$ME3"
start_tollgate "$WORK/fresh.toml"
FRESH_PID=$TG_PID_LAST
wait_http "http://127.0.0.1:$AD3/healthz"
read -r FRESH_START FRESH_IDLE FRESH_OK < <(idle_rss "$P3" "$FRESH_PID" \
  "/api/v1/workflows/x?environmentId=bench-env" "$TOKEN")
PT2=$(free_port)
taskset -c "$PROXY_CPU" "$BIN/examples/passthrough" "127.0.0.1:$PT2" "127.0.0.1:$UP" 1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PT2/"
PT2_PID=$(pgrep -f "examples/passthrough 127.0.0.1:$PT2" | head -1)
read -r PT_START PT_IDLE PT_OK < <(idle_rss "$PT2" "$PT2_PID" /api/v1/workflows/x -)
heads_case >/dev/null
decisions_case >/dev/null

echo
echo "machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ //'); proxies on 1 worker thread (CPU $PROXY_CPU), wrk -t1 -c$CONNS -d$DURATION (b, c, d: $ROUNDS rounds of $ROUND_DURATION) on CPU $LOAD_CPU"
printf '%-44s %12s %10s %10s\n' "case" "req/s" "p50" "p99"
printf '%s\n' "${RESULTS[@]}"
awk -v a="$A" -v b="$B" -v c="$C" -v d="$D" 'BEGIN {printf "\nmedians of %s rounds: b = %.0f, c = %.0f, d = %.0f req/s\nratios of the medians: b/a = %.3f   c/b = %.3f   d/b = %.3f\n", "'"$ROUNDS"'", b, c, d, b/a, c/b, d/b}'
echo "ratios within each round: c/b ${CB[*]}; d/b ${DB[*]}"
echo "medians of the rounds' ratios: c/b = $CB_MED   d/b = $DB_MED"
echo "side by side on CPU $PROXY_CPU, wrk -c$((CONNS / 2)) each, $SIDE_ROUNDS rounds of $SIDE_DURATION: c/b ${SCB[*]}; d/b ${SDB[*]}; control b'/b ${SBB[*]}"
echo "side by side, medians (the figures the targets are judged by): c/b = $SCB_MED   d/b = $SDB_MED   (control b'/b = $SBB_MED)"
echo "side by side with nginx proxy_pass (1 worker, same CPU): c/nginx ${SCN[*]}; median $SCN_MED"
awk -v b="$B_P50" -v c="$C_P50" -v n="$CONNS" 'BEGIN {printf "p50 at %d connections (median of rounds): b %.0f us, c %.0f us, added by tollgate %.0f us\n", n, b, c, c - b}'
awk -v b="$B1_P50" -v c="$C1_P50" 'BEGIN {printf "p50 at 1 connection (median of rounds): b %.0f us, c %.0f us, added by tollgate %.0f us\n", b, c, c - b}'
echo "c p99: ${C_P99} us alone, ${F_P99} us under a flood of $F_RPS bad token requests/s"
echo "c p99: ${G_P99} us under a flood of $G_RPS distinct bad bearer tokens/s (all 401); tollgate RSS ${G_RSS_BEFORE} MiB before it, ${G_RSS_AFTER} MiB after"
TOKENS=$((DB_AFTER - DB_BEFORE))
[ "$TOKENS" -gt 0 ] && awk -v m=$((MEM_AFTER - MEM_BEFORE)) -v n="$TOKENS" 'BEGIN {printf "redis: %d new keys, %.0f bytes of used_memory per new key\n", n, m/n}'
echo "tollgate RSS: ${RSS_IDLE} MiB after the runs, ${RSS} MiB with 1,000 idle keep-alive connections"
echo "fresh tollgate RSS: ${FRESH_START} MiB at start, ${FRESH_IDLE} MiB holding 1,000 idle keep-alive connections (${FRESH_OK} of 1,000 requests forwarded with 200)"
echo "fresh passthrough RSS: ${PT_START} MiB at start, ${PT_IDLE} MiB holding 1,000 idle keep-alive connections (${PT_OK} with 200)"
echo "$H_LINE"
echo "$I_LINE"
echo "$I_CPU_LINE"
