#!/usr/bin/env bash
# Installs the Debian packages luahost needs to build, test and benchmark.
# Idempotent; runs apt-get only when something is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config liblua5.4-dev lua5.4 lua-unit libuv1-dev
      node-llhttp python3 clang libclang-rt-14-dev curl wrk
      libhiredis-dev redis-server redis-tools haproxy
      libcurl4-openssl-dev ca-certificates openssl python3-h2 lua-cjson prometheus)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(nginx-light libnginx-mod-http-lua lua-nginx-redis linux-perf valgrind)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
