# Sourced by scripts/test and scripts/chaos: a real redis-server from Debian for the
# Redis bus tests, installed when missing, started on a free loopback port without
# persistence, stopped when the calling script exits (it must collect SERVER_PIDS).

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install_redis() {
  if ! command -v redis-server >/dev/null 2>&1; then
    local started=$SECONDS
    as_root apt-get update -qq && as_root apt-get install -y -qq redis-server >/dev/null
    echo "installed in $((SECONDS - started)) s"
  fi
  redis-server --version
}

# Starts redis-server and exports its URL as PERSONA_TEST_REDIS_URL.
start_redis() {
  local port
  port="$(free_port)"
  mkdir -p .work
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >.work/redis.log 2>&1 &
  SERVER_PIDS+=($!)
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      export PERSONA_TEST_REDIS_URL="redis://127.0.0.1:$port"
      echo "redis-server on $PERSONA_TEST_REDIS_URL (log .work/redis.log)"
      return 0
    fi
    sleep 0.1
  done
  echo "redis-server did not answer on port $port within 10 s; see .work/redis.log" >&2
  exit 1
}
