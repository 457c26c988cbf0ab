#!/usr/bin/env bash
# start_registry PORT: starts Debian's docker-registry on 127.0.0.1:PORT with
# storage in a temp directory and waits until /v2/ answers; stop_registry
# stops it and removes its storage. Sourced by demo.sh, test.sh and bench.

registry_pid=""
registry_dir=""

free_port() {
  bun -e 'const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }); console.log(s.port); s.stop(true);'
}

start_registry() {
  local port=$1
  registry_dir=$(mktemp -d /tmp/ocicache-registry.XXXXXX)
  cat > "$registry_dir/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $registry_dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
  docker-registry serve "$registry_dir/config.yml" >"$registry_dir/log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 1 150); do
    if curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$registry_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "registry: docker-registry did not start on 127.0.0.1:$port:" >&2
  cat "$registry_dir/log" >&2
  return 1
}

stop_registry() {
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
    registry_pid=""
  fi
  if [ -n "$registry_dir" ]; then
    rm -rf "$registry_dir"
    registry_dir=""
  fi
}
