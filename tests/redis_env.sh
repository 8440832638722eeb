#!/bin/sh
# Runs a command with a redis-server of its own: a temp dir, a free port,
# persistence off, and a unix socket.  Exports LUAHOST_TEST_REDIS_URL
# (redis://127.0.0.1:PORT/0), LUAHOST_TEST_REDIS_PORT and
# LUAHOST_TEST_REDIS_SOCK (the socket's path), runs "$@", stops redis by
# its PID and exits with the command's status.
set -u
dir=$(mktemp -d "${TMPDIR:-/tmp}/luahost-redis.XXXXXX") || exit 1
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM
tries=0
while :; do
  # a port the kernel gives out now (python binds port 0 and reports it)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
    --unixsocket "$dir/redis.sock" --unixsocketperm 700 \
    --daemonize no --logfile "$dir/redis.log" &
  pid=$!
  n=0
  while [ $n -lt 100 ]; do
    if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    n=$((n + 1)); sleep 0.05
  done
  if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then break; fi
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=
  tries=$((tries + 1))
  if [ $tries -ge 5 ]; then echo "redis_env.sh: redis-server did not start" >&2; cat "$dir/redis.log" >&2; exit 1; fi
done
export LUAHOST_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
export LUAHOST_TEST_REDIS_PORT="$port"
export LUAHOST_TEST_REDIS_SOCK="$dir/redis.sock"
"$@"
status=$?
exit $status
