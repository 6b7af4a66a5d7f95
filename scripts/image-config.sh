#!/usr/bin/env bash
# Lays out the container image's /etc/tollgate: the shipped config with its
# policy folder beside it, and the shipped example policy in that folder.
#
#   scripts/image-config.sh SOURCE_TREE DEST_DIR
#
# The Dockerfile runs it to build the image's configuration, and the test
# suite runs it into a temporary folder and checks the result with
# `tollgate check`, so the image cannot ship a config that fails to start.
set -euo pipefail

if [ "$#" -ne 2 ]; then
  echo "usage: $0 SOURCE_TREE DEST_DIR" >&2
  exit 2
fi
src=$1
dest=$2

mkdir -p "$dest/policies"
cp "$src/config/tollgate.toml" "$dest/tollgate.toml"
# In the repository the policies sit one folder up from config/; in the
# image they sit beside the config file.
sed -i 's|^dir = "../policies"|dir = "policies"|' "$dest/tollgate.toml"
grep -q '^dir = "policies"' "$dest/tollgate.toml" || {
  echo "image-config: config/tollgate.toml no longer has dir = \"../policies\"" >&2
  exit 1
}
cp "$src"/policies/*.toml "$dest/policies/"
