#!/usr/bin/env bash
# Make sure the system tools tollgate's build and tests need are present.
#
#   scripts/ensure-deps.sh build   C compiler + cmake (pingora's zlib-ng build needs cmake)
#   scripts/ensure-deps.sh test    build + redis-server/redis-cli (integration tests)
#                                  + php-cli (tests/integration/upstream_frameworks.rs runs PHP's
#                                  built-in server as an upstream; skipped without it)
#                                  + chromium/chromedriver (tests/integration/browser.rs drives
#                                  the console in headless Chromium over WebDriver)
#                                  + nginx (tests/integration/decisions/nginx.rs puts tollgate
#                                  behind nginx's auth_request; benches/load.sh measures it)
#                                  + curl (with HTTP/2) and openssl (tests/integration/tls.rs,
#                                  http2.rs and grpc.rs use them as real clients)
#
# Missing Debian/Ubuntu packages are installed with apt-get when we are root or
# have passwordless sudo; otherwise the exact command is printed and we fail.
set -euo pipefail

want="${1:-test}"
case "$want" in
  build | test) ;;
  *)
    echo "usage: $0 [build|test]" >&2
    exit 2
    ;;
esac

missing=()
need() { # need COMMAND PACKAGE
  if ! command -v "$1" >/dev/null 2>&1; then
    case " ${missing[*]-} " in
      *" $2 "*) ;;
      *) missing+=("$2") ;;
    esac
  fi
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found. Install Rust first: https://rustup.rs" >&2
  exit 1
fi

need cc build-essential
need cmake cmake
if [ "$want" = test ]; then
  need redis-server redis-server
  need redis-cli redis-server
  need php php-cli
  need chromium chromium
  need chromedriver chromium-driver
  need nginx nginx
  need curl curl
  need openssl openssl
fi

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "ensure-deps: missing packages: ${missing[*]}" >&2

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: no apt-get here; install these with your package manager: ${missing[*]}" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "error: cannot install packages without root. Run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "ensure-deps: ${as_root[*]-}${as_root[*]:+ }apt-get update" >&2
${as_root[@]+"${as_root[@]}"} apt-get update -qq
echo "ensure-deps: ${as_root[*]-}${as_root[*]:+ }apt-get install -y ${missing[*]}" >&2
${as_root[@]+"${as_root[@]}"} apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2

for cmd in cc cmake; do
  command -v "$cmd" >/dev/null 2>&1 || {
    echo "error: $cmd still missing after install" >&2
    exit 1
  }
done
if [ "$want" = test ]; then
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || {
    echo "error: redis-server/redis-cli still missing after install" >&2
    exit 1
  }
fi
