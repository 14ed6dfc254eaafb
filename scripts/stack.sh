#!/usr/bin/env bash
# amber-dr local test stack: real servers, installed and cached on first use.
#
# Usage: scripts/stack.sh up | down [--purge] | status | env
#
#   up       install (first time only) and start every service; idempotent.
#            Writes the env file "$AMBER_DR_STACK_DIR/env".
#   down     stop the processes this script started (by pidfile); keeps data.
#            --purge also deletes the services' data and the env file.
#   status   one line per service: name, running/stopped, endpoint.
#            Exit 0 if all services are running, 3 otherwise.
#   env      print the env file, so that  eval "$(scripts/stack.sh env)"  works.
#
# Environment (all optional):
#   AMBER_DR_CACHE        where installed tools are cached (default ~/.cache/amber-dr)
#   AMBER_DR_STACK_DIR    state dir: data, logs, pidfiles, env (default <repo>/.stack)
#   AMBER_DR_S3_PORT      S3 (s3s-fs) port on 127.0.0.1 (default 39100)
#   AMBER_DR_S3_ACCESS_KEY / AMBER_DR_S3_SECRET_KEY   (default amberdr / amberdr-secret-key)
#   AMBER_DR_S3_BUCKET    bucket pre-created for the backup repository (default amber-dr-repo)
#   AMBER_DR_S3_REGION    region clients should sign for (default us-east-1)
#   AMBER_DR_PG_PORT      Postgres port on 127.0.0.1 (default 39200)
#   AMBER_DR_PG_PASSWORD  password of the `postgres` superuser (default amberdr-pg)
#   AMBER_DR_NEO4J_PORT   Bolt port of the first Neo4j on 127.0.0.1 (default 39400)
#   AMBER_DR_NEO4J_PORT_2 Bolt port of the second, independent Neo4j (default NEO4J_PORT + 1)
#   AMBER_DR_NEO4J_PASSWORD  password of the `neo4j` user (default amberdr-neo4j)
#   AMBER_DR_MOTO_PORT    moto (in-memory S3 for key edge cases) port on 127.0.0.1 (default 39300)
#   AMBER_DR_ETCD_PORT    etcd client port on 127.0.0.1 (default 39500); the peer port is +1
#   AMBER_DR_MILVUS_PORT  Milvus gRPC port on 127.0.0.1 (default 39530); its internal ports are
#                         the next eight (+1..+8); its metrics/health port is the first free one
#                         from 9091 up (the milvus wrapper picks it; it cannot be set)
#   AMBER_DR_DOCKER       0 leaves the Docker engine out (default 1: started when root)
#   AMBER_DR_STACK_SERVICES  a space-separated subset of the services to manage (default: all),
#                         e.g. "s3 pg moto" for a second stack that only needs those; milvus
#                         needs s3 and etcd in the same subset. Tests of a server left out skip
#                         (or fail, with AMBER_DR_REQUIRE_SERVICES=1).
#
# The Docker engine (for the [docker] integration) is a private dockerd: socket, data and
# exec roots under $AMBER_DR_STACK_DIR/docker, no iptables, no bridge; it never touches
# /var/run/docker.sock. `up` imports the local image amber-dr-busybox:latest (busybox only,
# nothing is pulled). Its socket is AMBER_DR_DOCKER_HOST in the env file.
#
# Adding a service: write svc_<name>_install / _start / _stop / _status / _env
# (and optionally _purge) below and add <name> to SERVICES. Start order is the
# order of SERVICES; stop order is the reverse.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVICES=(s3 pg neo4j moto etcd milvus)
if [[ "${AMBER_DR_DOCKER:-1}" != 0 ]]; then
  SERVICES+=(docker)
fi
if [[ -n "${AMBER_DR_STACK_SERVICES:-}" ]]; then
  subset=()
  for svc in "${SERVICES[@]}"; do
    [[ " $AMBER_DR_STACK_SERVICES " == *" $svc "* ]] && subset+=("$svc")
  done
  SERVICES=("${subset[@]}")
  unset subset
fi

STACK_DIR="${AMBER_DR_STACK_DIR:-$AMBER_DR_REPO_ROOT/.stack}"
ENV_FILE="$STACK_DIR/env"
LOCK_FILE="$STACK_DIR/.lock"
HOST=127.0.0.1

# ================================================================ s3 (s3s-fs)
# Apache-2.0 S3 server backed by a directory (stands in for MinIO, which is AGPL).
S3S_VERSION=0.14.1 # needs rustc >= 1.92; 0.15+ needs a newer one still
S3_PORT="${AMBER_DR_S3_PORT:-39100}"
S3_ACCESS_KEY="${AMBER_DR_S3_ACCESS_KEY:-amberdr}"
S3_SECRET_KEY="${AMBER_DR_S3_SECRET_KEY:-amberdr-secret-key}"
S3_REGION="${AMBER_DR_S3_REGION:-us-east-1}"
S3_BUCKET="${AMBER_DR_S3_BUCKET:-amber-dr-repo}"
S3_DIR="$STACK_DIR/s3"
S3_PIDFILE="$S3_DIR/s3s-fs.pid"
S3_LOG="$S3_DIR/s3s-fs.log"
S3_CONFIG="$S3_DIR/config" # settings the running server was started with

s3_bin() {
  printf '%s/s3s-fs/bin/s3s-fs\n' "$(amber_cache_dir)"
}

# Load the settings of the running server (port/keys) if there is one.
s3_load_running_config() {
  [[ -f "$S3_CONFIG" ]] || return 1
  local port="" access="" secret=""
  # shellcheck disable=SC1090
  . "$S3_CONFIG"
  RUN_S3_PORT="$port"
  RUN_S3_ACCESS_KEY="$access"
  RUN_S3_SECRET_KEY="$secret"
}

# curl with SigV4 auth against the server, for body-less requests; extra args
# follow. s3s requires x-amz-content-sha256, which curl 7.88 does not send by
# itself: give the SHA-256 of the empty body.
S3_EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
s3_curl() {
  curl -sS --max-time 5 --aws-sigv4 "aws:amz:$S3_REGION:s3" \
    --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    -H "x-amz-content-sha256: $S3_EMPTY_SHA256" "$@"
}

s3_endpoint() {
  printf 'http://%s:%s\n' "$HOST" "$S3_PORT"
}

_s3_do_install() {
  local bin cache
  bin="$(s3_bin)"
  [[ -x "$bin" ]] && return 0
  cache="$(amber_cache_dir)"
  ensure_cargo
  # s3s-fs 0.14.1 declares rust-version 1.92 (Debian 12's own rustc is 1.63).
  local rv
  rv="$(rustc --version 2>/dev/null | awk '{print $2}')" || true
  if [[ -n "$rv" ]] && ! printf '%s\n%s\n' 1.92.0 "$rv" | sort -V -C; then
    die "s3s-fs $S3S_VERSION needs rustc >= 1.92, found $rv (use a rustup toolchain)"
  fi
  log "installing s3s-fs $S3S_VERSION into $cache/s3s-fs (first time only; takes a few minutes)"
  local start=$SECONDS
  CARGO_TARGET_DIR="$cache/cargo-target" \
    cargo install "s3s-fs@$S3S_VERSION" --features binary --locked \
    --root "$cache/s3s-fs" >&2 \
    || die "cargo install s3s-fs@$S3S_VERSION failed (see output above)"
  [[ -x "$bin" ]] || die "cargo install finished but $bin is missing"
  rm -rf -- "$cache/cargo-target" # ~400 MB of build products, not needed to run
  log "s3s-fs installed in $((SECONDS - start))s"
}

svc_s3_install() {
  ensure_apt_pkg curl
  [[ -x "$(s3_bin)" ]] && return 0
  with_lock "$(amber_cache_dir)/.s3s-fs.install.lock" _s3_do_install
}

# Is our s3s-fs running and answering? Prints the pid. (Runs in $(...), so
# callers must s3_load_running_config themselves to see RUN_S3_*.)
s3_running_pid() {
  local pid
  pid="$(pidfile_alive "$S3_PIDFILE" s3s-fs)" || return 1
  s3_load_running_config || return 1
  port_open "$HOST" "$RUN_S3_PORT" || return 1
  printf '%s\n' "$pid"
}

s3_ensure_bucket() {
  local url code
  url="$(s3_endpoint)/$S3_BUCKET"
  code="$(s3_curl -o /dev/null -w '%{http_code}' -I "$url" || true)"
  case "$code" in
    200) return 0 ;;
    404) ;;
    403) die "s3s-fs rejected our credentials (HTTP 403 on HEAD $url)" ;;
    *) die "unexpected HTTP $code on HEAD $url (log: $S3_LOG)" ;;
  esac
  # s3s-fs maps a bucket to a top-level directory of its data dir; creating
  # it through the API keeps us honest about that.
  code="$(s3_curl -o /dev/null -w '%{http_code}' -X PUT "$url" || true)"
  [[ "$code" == 200 || "$code" == 409 ]] || die "could not create bucket $S3_BUCKET: HTTP $code (log: $S3_LOG)"
  log "s3: created bucket $S3_BUCKET"
}

svc_s3_start() {
  local pid
  if pid="$(s3_running_pid)"; then
    s3_load_running_config
    if [[ "$RUN_S3_PORT" != "$S3_PORT" || "$RUN_S3_ACCESS_KEY" != "$S3_ACCESS_KEY" \
      || "$RUN_S3_SECRET_KEY" != "$S3_SECRET_KEY" ]]; then
      die "s3s-fs is already running (pid $pid, port $RUN_S3_PORT) with other settings than requested" \
        "(AMBER_DR_S3_PORT/ACCESS_KEY/SECRET_KEY); run 'scripts/stack.sh down' first"
    fi
    log "s3: already running (pid $pid) at $(s3_endpoint)"
    s3_ensure_bucket
    return 0
  fi
  # A live process of ours that does not answer: restart it.
  if pidfile_alive "$S3_PIDFILE" s3s-fs >/dev/null; then
    warn "s3: pid $(pidfile_read "$S3_PIDFILE") is alive but not answering; restarting it"
    stop_pidfile "$S3_PIDFILE" s3s-fs
  fi
  rm -f "$S3_PIDFILE"

  if port_open "$HOST" "$S3_PORT"; then
    die "port $S3_PORT on $HOST is already in use by another process;" \
      "set AMBER_DR_S3_PORT to a free port (e.g. AMBER_DR_S3_PORT=$((S3_PORT + 1)) scripts/stack.sh up)"
  fi

  mkdir -p "$S3_DIR/data"
  # Mode 600: the file holds the (test-only) secret key.
  (
    umask 077
    printf 'port=%q\naccess=%q\nsecret=%q\n' "$S3_PORT" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >"$S3_CONFIG"
  )
  start_bg "$S3_PIDFILE" "$S3_LOG" "$(s3_bin)" \
    --host "$HOST" --port "$S3_PORT" \
    --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" \
    "$S3_DIR/data"
  pid="$(pidfile_read "$S3_PIDFILE")"

  # Ready = a signed ListBuckets returns 200 (proves the port is ours and auth works).
  local deadline=$((SECONDS + 20)) ok=""
  while ((SECONDS < deadline)); do
    if ! pid_alive "$pid"; then
      break
    fi
    if s3_curl -f -o /dev/null "$(s3_endpoint)/" 2>/dev/null; then
      ok=1
      break
    fi
    sleep 0.25
  done
  if [[ -z "$ok" ]]; then
    local why="did not answer within 20s"
    pid_alive "$pid" || why="exited"
    printf '%s\n' "----- last lines of $S3_LOG -----" >&2
    tail -n 30 "$S3_LOG" >&2 || true
    printf '%s\n' "-----" >&2
    stop_pidfile "$S3_PIDFILE" s3s-fs 5 || true
    die "s3s-fs $why on port $S3_PORT (AMBER_DR_S3_PORT); log: $S3_LOG"
  fi
  log "s3: started s3s-fs (pid $pid) at $(s3_endpoint), data in $S3_DIR/data"
  s3_ensure_bucket
}

svc_s3_stop() {
  local pid
  if pid="$(pidfile_alive "$S3_PIDFILE" s3s-fs)"; then
    stop_pidfile "$S3_PIDFILE" s3s-fs 10
    log "s3: stopped s3s-fs (pid $pid)"
  else
    rm -f "$S3_PIDFILE"
    log "s3: not running"
  fi
}

svc_s3_status() {
  local pid port="$S3_PORT"
  if s3_load_running_config; then port="$RUN_S3_PORT"; fi
  if pid="$(s3_running_pid)"; then
    printf '%-8s %-8s %s (pid %s)\n' s3 running "http://$HOST:$port" "$pid"
    return 0
  fi
  printf '%-8s %-8s %s\n' s3 stopped "http://$HOST:$port"
  return 1
}

svc_s3_env() {
  printf 'export AMBER_DR_S3_ENDPOINT=%q\n' "$(s3_endpoint)"
  printf 'export AMBER_DR_S3_ACCESS_KEY=%q\n' "$S3_ACCESS_KEY"
  printf 'export AMBER_DR_S3_SECRET_KEY=%q\n' "$S3_SECRET_KEY"
  printf 'export AMBER_DR_S3_REGION=%q\n' "$S3_REGION"
  printf 'export AMBER_DR_S3_BUCKET=%q\n' "$S3_BUCKET"
}

svc_s3_purge() {
  rm -rf -- "$S3_DIR"
}

# ================================================================ pg (PostgreSQL)
# Debian's PostgreSQL (15 on Debian 12), its own cluster in the state dir,
# password (SCRAM) authentication over TCP, trust on the private socket.
PG_PORT="${AMBER_DR_PG_PORT:-39200}"
PG_PASSWORD="${AMBER_DR_PG_PASSWORD:-amberdr-pg}"
PG_DIR="$STACK_DIR/pg"
# The server runs as `postgres`: when the state dir is not reachable for that user (e.g. a
# checkout under /root), keep the cluster in a directory of its own under /var/tmp.
if [[ "$(id -u)" == 0 ]] && id postgres >/dev/null 2>&1 \
  && ! runuser -u postgres -- test -x "$STACK_DIR" 2>/dev/null; then
  mkdir -p "$STACK_DIR"
  if ! runuser -u postgres -- test -x "$STACK_DIR" 2>/dev/null; then
    PG_DIR="/var/tmp/amber-dr-stack-$(printf '%s' "$STACK_DIR" | md5sum | cut -c1-12)/pg"
  fi
fi
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
PG_SOCK="$PG_DIR/sock"

pg_bindir() {
  local d
  while IFS= read -r d; do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
      printf '%s\n' "$d"
      return 0
    fi
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
  return 1
}

# Run a command as the cluster's owner: `postgres` when we are root, else ourselves.
pg_as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

svc_pg_install() {
  if ! pg_bindir >/dev/null; then
    ensure_apt_pkg /usr/lib/postgresql/15/bin/initdb postgresql
  fi
  pg_bindir >/dev/null || die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin"
}

pg_running() {
  local bin
  bin="$(pg_bindir)" || return 1
  [[ -f "$PG_DATA/postmaster.pid" ]] || return 1
  pg_as_owner "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

svc_pg_start() {
  local bin
  bin="$(pg_bindir)"
  if pg_running; then
    log "pg: already running at 127.0.0.1:$PG_PORT"
    return 0
  fi
  if port_open "$HOST" "$PG_PORT"; then
    die "port $PG_PORT on $HOST is already in use by another process;" \
      "set AMBER_DR_PG_PORT to a free port (e.g. AMBER_DR_PG_PORT=$((PG_PORT + 1)) scripts/stack.sh up)"
  fi
  mkdir -p "$PG_DIR" "$PG_SOCK"
  if [[ "$(id -u)" == 0 ]] && ! runuser -u postgres -- test -x "$PG_DIR" 2>/dev/null; then
    chmod o+x "$(dirname "$PG_DIR")" 2>/dev/null || true
    runuser -u postgres -- test -x "$PG_DIR" \
      || die "user postgres cannot reach $PG_DIR; set AMBER_DR_STACK_DIR to a directory it can enter"
  fi
  touch "$PG_LOG"
  if [[ "$(id -u)" == 0 ]]; then
    # The server runs as `postgres` and must write its log, socket and data here.
    chown postgres:postgres "$PG_DIR" "$PG_SOCK" "$PG_LOG"
  fi
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    local pw="$PG_DIR/.pwfile"
    (umask 077 && printf '%s\n' "$PG_PASSWORD" >"$pw")
    [[ "$(id -u)" == 0 ]] && chown postgres:postgres "$pw"
    log "pg: initdb in $PG_DATA"
    pg_as_owner "$bin/initdb" -D "$PG_DATA" -U postgres --pwfile="$pw" \
      --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >>"$PG_LOG" 2>&1 \
      || { tail -n 20 "$PG_LOG" >&2; die "initdb failed (log: $PG_LOG)"; }
    rm -f "$pw"
  fi
  local as_owner=()
  [[ "$(id -u)" == 0 ]] && as_owner=(runuser -u postgres --)
  # The server must not inherit our lock's descriptor (it would hold the stack lock forever).
  without_inherited_fds "${as_owner[@]}" "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
    -o "-p $PG_PORT -k $PG_SOCK -c listen_addresses=$HOST -c max_connections=100 -c fsync=off -c full_page_writes=off" \
    start >/dev/null \
    || { tail -n 30 "$PG_LOG" >&2; die "postgres did not start on port $PG_PORT (log: $PG_LOG)"; }
  log "pg: started PostgreSQL $("$bin/postgres" --version | awk '{print $3}') at $HOST:$PG_PORT, data in $PG_DATA"
}

svc_pg_stop() {
  local bin
  bin="$(pg_bindir)" || return 0
  if pg_running; then
    pg_as_owner "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
    log "pg: stopped"
  else
    log "pg: not running"
  fi
}

svc_pg_status() {
  if pg_running; then
    printf '%-8s %-8s %s\n' pg running "postgres://$HOST:$PG_PORT"
    return 0
  fi
  printf '%-8s %-8s %s\n' pg stopped "postgres://$HOST:$PG_PORT"
  return 1
}

svc_pg_env() {
  printf 'export AMBER_DR_PG_HOST=%q\n' "$HOST"
  printf 'export AMBER_DR_PG_PORT=%q\n' "$PG_PORT"
  printf 'export AMBER_DR_PG_USER=postgres\n'
  printf 'export AMBER_DR_PG_PASSWORD=%q\n' "$PG_PASSWORD"
  printf 'export AMBER_DR_PG_URL=%q\n' "postgres://postgres:$PG_PASSWORD@$HOST:$PG_PORT/postgres"
  printf 'export AMBER_DR_PG_BINDIR=%q\n' "$(pg_bindir)"
}

svc_pg_purge() {
  rm -rf -- "$PG_DIR"
}

# ================================================================ neo4j (Neo4j 5.26 Community)
# Neo4j embedded in a small Java launcher (scripts/neo4j-launcher), its jars fetched from Maven
# Central into the cache by Maven, APOC core on the classpath and in the plugin dir. One JVM
# runs two independent DBMSs (two Bolt ports) so that tests have two instances; Community has
# one user database per DBMS. Authentication is on (user neo4j).
NEO4J_PORT="${AMBER_DR_NEO4J_PORT:-39400}"
NEO4J_PORT_2="${AMBER_DR_NEO4J_PORT_2:-$((NEO4J_PORT + 1))}"
NEO4J_PASSWORD="${AMBER_DR_NEO4J_PASSWORD:-amberdr-neo4j}"
NEO4J_DIR="$STACK_DIR/neo4j"
NEO4J_PIDFILE="$NEO4J_DIR/neo4j.pid"
NEO4J_LOG="$NEO4J_DIR/neo4j.log"
NEO4J_CONFIG="$NEO4J_DIR/config"
NEO4J_LAUNCHER_SRC="$AMBER_DR_REPO_ROOT/scripts/neo4j-launcher"
NEO4J_MAIN=amberdr.Neo4jLauncher
# The official Python driver, for scripts/cypher.py (the demo's tool outside amber-dr).
NEO4J_PY_DRIVER=neo4j==6.4.1

# The launcher's build dir in the cache, keyed by the hash of its sources (a changed pom or
# launcher builds anew; an unchanged one is reused).
neo4j_build_dir() {
  local h
  h="$(cat "$NEO4J_LAUNCHER_SRC/pom.xml" "$NEO4J_LAUNCHER_SRC"/src/main/java/amberdr/*.java | sha256sum | cut -c1-16)"
  printf '%s/neo4j-launcher/%s\n' "$(amber_cache_dir)" "$h"
}

_neo4j_do_install() {
  local build cache
  build="$(neo4j_build_dir)"
  [[ -f "$build/ok" ]] && return 0
  cache="$(amber_cache_dir)"
  log "neo4j: fetching Neo4j and APOC from Maven Central into $cache/m2 (first time only)"
  local start=$SECONDS
  rm -rf -- "$build"
  mkdir -p "$build/classes" "$build/plugins"
  mvn -B -q -f "$NEO4J_LAUNCHER_SRC/pom.xml" -Dmaven.repo.local="$cache/m2" \
    dependency:build-classpath -Dmdep.outputFile="$build/classpath.txt" >&2 \
    || die "mvn could not resolve the Neo4j launcher's dependencies (see output above)"
  javac -nowarn -d "$build/classes" -cp "$(cat "$build/classpath.txt")" \
    "$NEO4J_LAUNCHER_SRC"/src/main/java/amberdr/*.java >&2 \
    || die "javac failed on the Neo4j launcher"
  local apoc
  apoc="$(tr ':' '\n' <"$build/classpath.txt" | grep '/apoc-core-' | head -n1)"
  [[ -f "$apoc" ]] || die "APOC core jar not found on the launcher's classpath"
  cp "$apoc" "$build/plugins/"
  touch "$build/ok"
  log "neo4j: launcher built in $((SECONDS - start))s ($build)"
}

neo4j_py_dir() {
  printf '%s/neo4j-py\n' "$(amber_cache_dir)"
}

_neo4j_py_install() {
  local venv
  venv="$(neo4j_py_dir)"
  [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import neo4j' 2>/dev/null && return 0
  if ! python3 -c 'import ensurepip' 2>/dev/null; then
    ensure_apt_pkg python3
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 python3-venv >&2 \
      || die "apt-get install python3-venv failed"
  fi
  log "neo4j: installing the Python driver ($NEO4J_PY_DRIVER) into $venv (first time only)"
  rm -rf -- "$venv"
  python3 -m venv "$venv" >&2 || die "python3 -m venv $venv failed"
  "$venv/bin/pip" install -q "$NEO4J_PY_DRIVER" >&2 || die "pip install $NEO4J_PY_DRIVER failed"
}

svc_neo4j_install() {
  ensure_apt_pkg java openjdk-17-jre-headless
  ensure_apt_pkg javac openjdk-17-jdk-headless
  ensure_apt_pkg mvn maven
  with_lock "$(amber_cache_dir)/.neo4j-py.install.lock" _neo4j_py_install
  [[ -f "$(neo4j_build_dir)/ok" ]] && return 0
  with_lock "$(amber_cache_dir)/.neo4j-launcher.install.lock" _neo4j_do_install
}

neo4j_load_running_config() {
  [[ -f "$NEO4J_CONFIG" ]] || return 1
  local port="" port2="" password=""
  # shellcheck disable=SC1090
  . "$NEO4J_CONFIG"
  RUN_NEO4J_PORT="$port"
  RUN_NEO4J_PORT_2="$port2"
  RUN_NEO4J_PASSWORD="$password"
}

neo4j_running_pid() {
  local pid
  pid="$(pidfile_alive "$NEO4J_PIDFILE" "$NEO4J_MAIN")" || return 1
  neo4j_load_running_config || return 1
  port_open "$HOST" "$RUN_NEO4J_PORT" || return 1
  port_open "$HOST" "$RUN_NEO4J_PORT_2" || return 1
  printf '%s\n' "$pid"
}

svc_neo4j_start() {
  local pid build
  if pid="$(neo4j_running_pid)"; then
    neo4j_load_running_config
    if [[ "$RUN_NEO4J_PORT" != "$NEO4J_PORT" || "$RUN_NEO4J_PORT_2" != "$NEO4J_PORT_2" \
      || "$RUN_NEO4J_PASSWORD" != "$NEO4J_PASSWORD" ]]; then
      die "neo4j is already running (pid $pid, ports $RUN_NEO4J_PORT/$RUN_NEO4J_PORT_2) with other" \
        "settings than requested (AMBER_DR_NEO4J_PORT/PORT_2/PASSWORD); run 'scripts/stack.sh down' first"
    fi
    log "neo4j: already running (pid $pid) at bolt://$HOST:$NEO4J_PORT and bolt://$HOST:$NEO4J_PORT_2"
    return 0
  fi
  if pidfile_alive "$NEO4J_PIDFILE" "$NEO4J_MAIN" >/dev/null; then
    warn "neo4j: pid $(pidfile_read "$NEO4J_PIDFILE") is alive but not answering; restarting it"
    stop_pidfile "$NEO4J_PIDFILE" "$NEO4J_MAIN" 30
  fi
  rm -f "$NEO4J_PIDFILE"
  local p
  for p in "$NEO4J_PORT" "$NEO4J_PORT_2"; do
    if port_open "$HOST" "$p"; then
      die "port $p on $HOST is already in use by another process;" \
        "set AMBER_DR_NEO4J_PORT (and AMBER_DR_NEO4J_PORT_2) to free ports"
    fi
  done
  build="$(neo4j_build_dir)"
  mkdir -p "$NEO4J_DIR"
  (
    umask 077
    printf 'port=%q\nport2=%q\npassword=%q\n' "$NEO4J_PORT" "$NEO4J_PORT_2" "$NEO4J_PASSWORD" >"$NEO4J_CONFIG"
  )
  NEO4J_LAUNCHER_PASSWORD="$NEO4J_PASSWORD" start_bg "$NEO4J_PIDFILE" "$NEO4J_LOG" \
    java -Xms256m -Xmx1g -XX:+UseSerialGC -Dapoc.export.file.enabled=true \
    -cp "$build/classes:$(cat "$build/classpath.txt")" "$NEO4J_MAIN" "$build/plugins" \
    "$NEO4J_DIR/a:$NEO4J_PORT" "$NEO4J_DIR/b:$NEO4J_PORT_2"
  pid="$(pidfile_read "$NEO4J_PIDFILE")"
  local deadline=$((SECONDS + 120)) ok=""
  while ((SECONDS < deadline)); do
    pid_alive "$pid" || break
    if port_open "$HOST" "$NEO4J_PORT" && port_open "$HOST" "$NEO4J_PORT_2" \
      && tail -n 5 "$NEO4J_LOG" | grep -q '^READY$'; then
      ok=1
      break
    fi
    sleep 0.5
  done
  if [[ -z "$ok" ]]; then
    local why="did not become ready within 120s"
    pid_alive "$pid" || why="exited"
    printf '%s\n' "----- last lines of $NEO4J_LOG -----" >&2
    tail -n 30 "$NEO4J_LOG" >&2 || true
    printf '%s\n' "-----" >&2
    stop_pidfile "$NEO4J_PIDFILE" "$NEO4J_MAIN" 30 || true
    die "neo4j $why on ports $NEO4J_PORT/$NEO4J_PORT_2 (AMBER_DR_NEO4J_PORT); log: $NEO4J_LOG"
  fi
  log "neo4j: started Neo4j (pid $pid) at bolt://$HOST:$NEO4J_PORT and bolt://$HOST:$NEO4J_PORT_2, data in $NEO4J_DIR"
}

svc_neo4j_stop() {
  local pid
  if pid="$(pidfile_alive "$NEO4J_PIDFILE" "$NEO4J_MAIN")"; then
    stop_pidfile "$NEO4J_PIDFILE" "$NEO4J_MAIN" 60
    log "neo4j: stopped (pid $pid)"
  else
    rm -f "$NEO4J_PIDFILE"
    log "neo4j: not running"
  fi
}

svc_neo4j_status() {
  local pid port="$NEO4J_PORT" port2="$NEO4J_PORT_2"
  if neo4j_load_running_config; then
    port="$RUN_NEO4J_PORT"
    port2="$RUN_NEO4J_PORT_2"
  fi
  if pid="$(neo4j_running_pid)"; then
    printf '%-8s %-8s %s (pid %s)\n' neo4j running "bolt://$HOST:$port bolt://$HOST:$port2" "$pid"
    return 0
  fi
  printf '%-8s %-8s %s\n' neo4j stopped "bolt://$HOST:$port bolt://$HOST:$port2"
  return 1
}

svc_neo4j_env() {
  printf 'export AMBER_DR_NEO4J_URI=%q\n' "bolt://$HOST:$NEO4J_PORT"
  printf 'export AMBER_DR_NEO4J_URI_2=%q\n' "bolt://$HOST:$NEO4J_PORT_2"
  printf 'export AMBER_DR_NEO4J_USER=neo4j\n'
  printf 'export AMBER_DR_NEO4J_PASSWORD=%q\n' "$NEO4J_PASSWORD"
  printf 'export AMBER_DR_NEO4J_PYTHON=%q\n' "$(neo4j_py_dir)/bin/python"
}

svc_neo4j_purge() {
  rm -rf -- "$NEO4J_DIR"
}

# ================================================================ moto (S3 edge cases)
# moto's server (Apache-2.0, PyPI) answers S3 without s3s-fs's key limits (keys over ~150
# bytes, keys ending in `/`). It accepts any signature and keeps data in memory: tests use
# it for key and header edge cases only, never for authentication or durability.
MOTO_VERSION=5.1.22
MOTO_PORT="${AMBER_DR_MOTO_PORT:-39300}"
MOTO_DIR="$STACK_DIR/moto"
MOTO_PIDFILE="$MOTO_DIR/moto.pid"
MOTO_CHILDREN="$MOTO_DIR/moto.children" # pids of the server's children, for stop
MOTO_LOG="$MOTO_DIR/moto.log"

moto_venv() {
  printf '%s/moto-venv\n' "$(amber_cache_dir)"
}

moto_endpoint() {
  printf 'http://%s:%s\n' "$HOST" "$MOTO_PORT"
}

moto_installed() {
  local venv
  venv="$(moto_venv)"
  [[ -x "$venv/bin/moto_server" && "$(cat "$venv/.amber-dr-moto-version" 2>/dev/null)" == "$MOTO_VERSION" ]]
}

_moto_do_install() {
  moto_installed && return 0
  local venv
  venv="$(moto_venv)"
  log "installing moto[server] $MOTO_VERSION into $venv (first time only)"
  rm -rf -- "$venv"
  python3 -m venv "$venv" >&2 || die "python3 -m venv $venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install -q "moto[server]==$MOTO_VERSION" >&2 \
    || die "pip install moto[server]==$MOTO_VERSION failed (see output above)"
  [[ -x "$venv/bin/moto_server" ]] || die "moto installed but $venv/bin/moto_server is missing"
  printf '%s\n' "$MOTO_VERSION" >"$venv/.amber-dr-moto-version"
}

svc_moto_install() {
  ensure_apt_pkg curl
  moto_installed && return 0
  ensure_apt_pkg python3
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    # Debian ships venv/ensurepip in a package of its own.
    need_cmd apt-get || die "python3's venv module is missing; install python3-venv by hand"
    local sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    log "installing Debian package 'python3-venv' (for moto's virtualenv)"
    $sudo apt-get update -qq -o DPkg::Lock::Timeout=600 >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=600 python3-venv >&2 \
      || die "apt-get install python3-venv failed"
  fi
  with_lock "$(amber_cache_dir)/.moto.install.lock" _moto_do_install
}

# Pids whose parent is $1 (from /proc; no procps needed).
child_pids() {
  local stat rest _state ppid f
  for f in /proc/[0-9]*/stat; do
    stat="$(cat "$f" 2>/dev/null)" || continue
    rest="${stat##*) }"
    read -r _state ppid _ <<<"$rest"
    if [[ "$ppid" == "$1" ]]; then
      f="${f#/proc/}"
      printf '%s\n' "${f%/stat}"
    fi
  done
}

moto_running_pid() {
  local pid
  pid="$(pidfile_alive "$MOTO_PIDFILE" moto_server)" || return 1
  port_open "$HOST" "$MOTO_PORT" || return 1
  printf '%s\n' "$pid"
}

svc_moto_start() {
  local pid
  if pid="$(moto_running_pid)"; then
    log "moto: already running (pid $pid) at $(moto_endpoint)"
    return 0
  fi
  if pidfile_alive "$MOTO_PIDFILE" moto_server >/dev/null; then
    warn "moto: pid $(pidfile_read "$MOTO_PIDFILE") is alive but not answering; restarting it"
    svc_moto_stop
  fi
  rm -f "$MOTO_PIDFILE" "$MOTO_CHILDREN"
  if port_open "$HOST" "$MOTO_PORT"; then
    die "port $MOTO_PORT on $HOST is already in use by another process;" \
      "set AMBER_DR_MOTO_PORT to a free port (e.g. AMBER_DR_MOTO_PORT=$((MOTO_PORT + 1)) scripts/stack.sh up)"
  fi
  mkdir -p "$MOTO_DIR"
  start_bg "$MOTO_PIDFILE" "$MOTO_LOG" "$(moto_venv)/bin/moto_server" -H "$HOST" -p "$MOTO_PORT"
  pid="$(pidfile_read "$MOTO_PIDFILE")"
  if ! http_wait "$(moto_endpoint)/" 30 || ! pid_alive "$pid" moto_server; then
    printf '%s\n' "----- last lines of $MOTO_LOG -----" >&2
    tail -n 30 "$MOTO_LOG" >&2 || true
    printf '%s\n' "-----" >&2
    svc_moto_stop || true
    die "moto did not answer within 30s on port $MOTO_PORT (AMBER_DR_MOTO_PORT); log: $MOTO_LOG"
  fi
  child_pids "$pid" >"$MOTO_CHILDREN" || true
  log "moto: started moto_server $MOTO_VERSION (pid $pid) at $(moto_endpoint) (in memory)"
}

svc_moto_stop() {
  local pid child children=()
  if pid="$(pidfile_alive "$MOTO_PIDFILE" moto_server)"; then
    # The server may serve from a child process (a reloader's worker); remember the children
    # now (they are re-parented once the server exits), then stop the process group.
    mapfile -t children < <(child_pids "$pid"; cat "$MOTO_CHILDREN" 2>/dev/null || true)
    stop_pidfile "$MOTO_PIDFILE" moto_server 10
    for child in "${children[@]}"; do
      [[ "$child" =~ ^[0-9]+$ ]] || continue
      if pid_alive "$child" moto; then
        kill -TERM "$child" 2>/dev/null || true
        sleep 0.5
        if pid_alive "$child" moto; then kill -KILL "$child" 2>/dev/null || true; fi
      fi
    done
    log "moto: stopped moto_server (pid $pid)"
  else
    rm -f "$MOTO_PIDFILE"
    log "moto: not running"
  fi
  rm -f "$MOTO_CHILDREN"
}

svc_moto_status() {
  local pid
  if pid="$(moto_running_pid)"; then
    printf '%-8s %-8s %s (pid %s)\n' moto running "$(moto_endpoint)" "$pid"
    return 0
  fi
  printf '%-8s %-8s %s\n' moto stopped "$(moto_endpoint)"
  return 1
}

svc_moto_env() {
  printf 'export AMBER_DR_MOTO_ENDPOINT=%q\n' "$(moto_endpoint)"
  # A Python with boto3 (moto's dependency): the S3 tests check restores with it, a client
  # independent of the driver.
  printf 'export AMBER_DR_S3_PYTHON=%q\n' "$(moto_venv)/bin/python"
}

svc_moto_purge() {
  # Data lives in memory; only logs and pidfiles are here. The venv cache stays.
  rm -rf -- "$MOTO_DIR"
}

# ================================================================ etcd (Debian etcd-server 3.4)
# A single-member etcd with its data in the state dir; no auth, plain HTTP on 127.0.0.1.
ETCD_PORT="${AMBER_DR_ETCD_PORT:-39500}"
ETCD_PEER_PORT="$((ETCD_PORT + 1))"
ETCD_DIR="$STACK_DIR/etcd"
ETCD_PIDFILE="$ETCD_DIR/etcd.pid"
ETCD_LOG="$ETCD_DIR/etcd.log"
ETCD_CONFIG="$ETCD_DIR/config"

etcd_endpoint() {
  printf 'http://%s:%s\n' "$HOST" "$ETCD_PORT"
}

svc_etcd_install() {
  ensure_apt_pkg curl
  ensure_apt_pkg etcd etcd-server
  ensure_apt_pkg etcdctl etcd-client # the tests check the data with it, independently of the driver
}

# Port of the running etcd of this stack dir (from its config file).
etcd_running_port() {
  local port=""
  [[ -f "$ETCD_CONFIG" ]] || return 1
  # shellcheck disable=SC1090
  . "$ETCD_CONFIG"
  printf '%s\n' "$port"
}

etcd_healthy() {
  curl -fsS --max-time 2 "http://$HOST:$1/health" 2>/dev/null | grep -q '"health":"true"'
}

svc_etcd_start() {
  local pid port
  if pid="$(pidfile_alive "$ETCD_PIDFILE" etcd)"; then
    port="$(etcd_running_port || true)"
    if [[ -n "$port" && "$port" != "$ETCD_PORT" ]]; then
      die "etcd is already running (pid $pid, port $port) with another port than AMBER_DR_ETCD_PORT=$ETCD_PORT;" \
        "run 'scripts/stack.sh down' first"
    fi
    if etcd_healthy "$ETCD_PORT"; then
      log "etcd: already running (pid $pid) at $(etcd_endpoint)"
      return 0
    fi
    warn "etcd: pid $pid is alive but not healthy; restarting it"
    stop_pidfile "$ETCD_PIDFILE" etcd 10
  fi
  rm -f "$ETCD_PIDFILE"
  local p
  for p in "$ETCD_PORT" "$ETCD_PEER_PORT"; do
    if port_open "$HOST" "$p"; then
      die "port $p on $HOST is already in use by another process;" \
        "set AMBER_DR_ETCD_PORT to a free port (client port; the peer port is the next one)"
    fi
  done
  mkdir -p "$ETCD_DIR"
  printf 'port=%q\n' "$ETCD_PORT" >"$ETCD_CONFIG"
  start_bg "$ETCD_PIDFILE" "$ETCD_LOG" etcd --name amber-dr \
    --data-dir "$ETCD_DIR/data" \
    --listen-client-urls "http://$HOST:$ETCD_PORT" --advertise-client-urls "http://$HOST:$ETCD_PORT" \
    --listen-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
    --initial-cluster "amber-dr=http://$HOST:$ETCD_PEER_PORT"
  pid="$(pidfile_read "$ETCD_PIDFILE")"
  local deadline=$((SECONDS + 30)) ok=""
  while ((SECONDS < deadline)); do
    pid_alive "$pid" || break
    if etcd_healthy "$ETCD_PORT"; then
      ok=1
      break
    fi
    sleep 0.25
  done
  if [[ -z "$ok" ]]; then
    tail -n 30 "$ETCD_LOG" >&2 || true
    stop_pidfile "$ETCD_PIDFILE" etcd 5 || true
    die "etcd did not become healthy on port $ETCD_PORT (AMBER_DR_ETCD_PORT); log: $ETCD_LOG"
  fi
  log "etcd: started $(etcd --version 2>/dev/null | head -n1) (pid $pid) at $(etcd_endpoint), data in $ETCD_DIR/data"
}

svc_etcd_stop() {
  local pid
  if pid="$(pidfile_alive "$ETCD_PIDFILE" etcd)"; then
    stop_pidfile "$ETCD_PIDFILE" etcd 10
    log "etcd: stopped (pid $pid)"
  else
    rm -f "$ETCD_PIDFILE"
    log "etcd: not running"
  fi
}

svc_etcd_status() {
  local pid
  if pid="$(pidfile_alive "$ETCD_PIDFILE" etcd)" && etcd_healthy "$ETCD_PORT"; then
    printf '%-8s %-8s %s (pid %s)\n' etcd running "$(etcd_endpoint)" "$pid"
    return 0
  fi
  printf '%-8s %-8s %s\n' etcd stopped "$(etcd_endpoint)"
  return 1
}

svc_etcd_env() {
  printf 'export AMBER_DR_ETCD_ENDPOINT=%q\n' "$(etcd_endpoint)"
}

svc_etcd_purge() {
  rm -rf -- "$ETCD_DIR"
}

# ================================================================ milvus (PyPI wheel milvus==2.3.5)
# A real Milvus 2.3.5 standalone binary (the `milvus` wheel) in a cached venv, with its
# metadata in the stack's etcd (root path `by-dev`) and its segments in the stack's S3 server
# (bucket `milvus-bucket`): Amber's topology. SIGTERM does not stop it: stop = SIGKILL.
MILVUS_VERSION=2.3.5
MILVUS_PORT="${AMBER_DR_MILVUS_PORT:-39530}"
MILVUS_BUCKET=milvus-bucket
MILVUS_ROOT_PATH=by-dev
MILVUS_DIR="$STACK_DIR/milvus"
MILVUS_PIDFILE="$MILVUS_DIR/milvus.pid"
MILVUS_LOG="$MILVUS_DIR/milvus.log"
MILVUS_CONFIG="$MILVUS_DIR/config"

milvus_venv() {
  printf '%s/milvus-%s-venv\n' "$(amber_cache_dir)" "$MILVUS_VERSION"
}

_milvus_do_install() {
  local v
  v="$(milvus_venv)"
  [[ -x "$v/bin/milvus-server" && -x "$v/bin/python" ]] && "$v/bin/python" -c 'import pymilvus' 2>/dev/null && return 0
  log "installing milvus==$MILVUS_VERSION and pymilvus into $v (first time only)"
  rm -rf -- "$v"
  python3 -m venv "$v" || die "python3 -m venv failed (install python3-venv)"
  # pymilvus: the tests' independent client, and the server's readiness check.
  # (pymilvus 2.3 needs pkg_resources, marshmallow 3 and protobuf 4: pinned.)
  "$v/bin/pip" install -q "milvus==$MILVUS_VERSION" "pymilvus==2.3.7" "setuptools<70" "marshmallow<3.20" "protobuf<5" >&2 \
    || { rm -rf -- "$v"; die "pip install milvus==$MILVUS_VERSION failed"; }
}

svc_milvus_install() {
  ensure_apt_pkg python3
  with_lock "$(amber_cache_dir)/.milvus.install.lock" _milvus_do_install
}

# Is Milvus answering on PORT? (pymilvus asks for the server version.)
milvus_ready() {
  "$(milvus_venv)/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys
from pymilvus import connections, utility
connections.connect(host="127.0.0.1", port=sys.argv[1], timeout=3)
utility.get_server_version()
PY
}

svc_milvus_start() {
  local pid port=""
  if pid="$(pidfile_alive "$MILVUS_PIDFILE" milvus)"; then
    [[ -f "$MILVUS_CONFIG" ]] && port="$(sed -n 's/^port=//p' "$MILVUS_CONFIG")"
    if [[ -n "$port" && "$port" != "$MILVUS_PORT" ]]; then
      die "milvus is already running (pid $pid, port $port) with another port than AMBER_DR_MILVUS_PORT=$MILVUS_PORT;" \
        "run 'scripts/stack.sh down' first"
    fi
    if milvus_ready "$MILVUS_PORT"; then
      log "milvus: already running (pid $pid) at $HOST:$MILVUS_PORT"
      return 0
    fi
    warn "milvus: pid $pid is alive but not answering; restarting it"
    svc_milvus_stop
  fi
  rm -f "$MILVUS_PIDFILE"
  local p
  for ((p = MILVUS_PORT; p <= MILVUS_PORT + 8; p++)); do
    if port_open "$HOST" "$p"; then
      die "port $p on $HOST is already in use by another process; Milvus needs AMBER_DR_MILVUS_PORT" \
        "and the eight ports after it: set AMBER_DR_MILVUS_PORT to a free range"
    fi
  done
  mkdir -p "$MILVUS_DIR/data"
  printf 'port=%q\n' "$MILVUS_PORT" >"$MILVUS_CONFIG"
  start_bg "$MILVUS_PIDFILE" "$MILVUS_LOG" "$(milvus_venv)/bin/milvus-server" \
    --data "$MILVUS_DIR/data" \
    --proxy-port "$MILVUS_PORT" --proxy-internal-port "$((MILVUS_PORT + 1))" \
    --root-coord-port "$((MILVUS_PORT + 2))" --query-coord-port "$((MILVUS_PORT + 3))" \
    --query-node-port "$((MILVUS_PORT + 4))" --index-coord-port "$((MILVUS_PORT + 5))" \
    --index-node-port "$((MILVUS_PORT + 6))" --data-coord-port "$((MILVUS_PORT + 7))" \
    --data-node-port "$((MILVUS_PORT + 8))" \
    --extra-config etcd.use.embed=false --extra-config "etcd.endpoints=$HOST:$ETCD_PORT" \
    --extra-config "etcd.rootPath=$MILVUS_ROOT_PATH" \
    --extra-config common.storageType=minio --extra-config "minio.address=$HOST" \
    --extra-config "minio.port=$S3_PORT" --extra-config "minio.accessKeyID=$S3_ACCESS_KEY" \
    --extra-config "minio.secretAccessKey=$S3_SECRET_KEY" \
    --extra-config "minio.bucketName=$MILVUS_BUCKET"
  pid="$(pidfile_read "$MILVUS_PIDFILE")"
  # Recovering collections after an unclean stop can take minutes on a loaded machine.
  local deadline=$((SECONDS + 300)) ok=""
  while ((SECONDS < deadline)); do
    pid_alive "$pid" || break
    if milvus_ready "$MILVUS_PORT"; then
      ok=1
      break
    fi
    sleep 1
  done
  if [[ -z "$ok" ]]; then
    tail -n 30 "$MILVUS_LOG" >&2 || true
    svc_milvus_stop || true
    die "milvus did not answer on port $MILVUS_PORT within 300s (AMBER_DR_MILVUS_PORT); log: $MILVUS_LOG"
  fi
  log "milvus: started $MILVUS_VERSION (pid $pid) at $HOST:$MILVUS_PORT (etcd root path $MILVUS_ROOT_PATH, bucket $MILVUS_BUCKET)"
}

# SIGKILL the wrapper's whole process group (Milvus ignores SIGTERM).
svc_milvus_stop() {
  local pid pgid
  if pid="$(pidfile_alive "$MILVUS_PIDFILE" milvus)"; then
    pgid="$(pid_pgid "$pid" || true)"
    if [[ "$pgid" == "$pid" ]]; then
      kill -KILL -- "-$pid" 2>/dev/null || true
    else
      kill -KILL -- "$pid" 2>/dev/null || true
    fi
    local deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)) && kill -0 "$pid" 2>/dev/null; do
      sleep 0.1
    done
    rm -f "$MILVUS_PIDFILE"
    log "milvus: stopped (pid $pid)"
  else
    rm -f "$MILVUS_PIDFILE"
    log "milvus: not running"
  fi
}

svc_milvus_status() {
  local pid
  if pid="$(pidfile_alive "$MILVUS_PIDFILE" milvus)" && milvus_ready "$MILVUS_PORT"; then
    printf '%-8s %-8s %s (pid %s)\n' milvus running "http://$HOST:$MILVUS_PORT" "$pid"
    return 0
  fi
  printf '%-8s %-8s %s\n' milvus stopped "http://$HOST:$MILVUS_PORT"
  return 1
}

svc_milvus_env() {
  printf 'export AMBER_DR_MILVUS_ENDPOINT=%q\n' "http://$HOST:$MILVUS_PORT"
  printf 'export AMBER_DR_MILVUS_PYTHON=%q\n' "$(milvus_venv)/bin/python"
  printf 'export AMBER_DR_MILVUS_ETCD_ROOT=%q\n' "$MILVUS_ROOT_PATH"
  printf 'export AMBER_DR_MILVUS_BUCKET=%q\n' "$MILVUS_BUCKET"
}

svc_milvus_purge() {
  rm -rf -- "$MILVUS_DIR"
}

# ================================================================ docker (private dockerd)
DOCKER_DIR="$STACK_DIR/docker"
DOCKER_SOCK="$DOCKER_DIR/docker.sock"
DOCKER_PIDFILE="$DOCKER_DIR/dockerd.pid"
DOCKER_LOG="$DOCKER_DIR/dockerd.log"
DOCKER_IMAGE=amber-dr-busybox:latest

docker_cli() {
  docker -H "unix://$DOCKER_SOCK" "$@"
}

svc_docker_install() {
  [[ "$(id -u)" == 0 ]] || die "docker: the private dockerd needs root (or set AMBER_DR_DOCKER=0)"
  ensure_apt_pkg dockerd docker.io
  ensure_apt_pkg busybox busybox-static
  # docker.io's postinst may start the system daemon on /var/run/docker.sock: not ours, leave it.
}

docker_running() {
  pidfile_alive "$DOCKER_PIDFILE" dockerd >/dev/null && docker_cli version >/dev/null 2>&1
}

# The busybox image the tests' containers run: /bin/busybox plus its applet links, imported
# from a tar (no registry needed).
docker_image() {
  docker_cli image inspect "$DOCKER_IMAGE" >/dev/null 2>&1 && return 0
  local root tar bb
  # busybox-static's binary: it runs in an image that has nothing else.
  bb=/bin/busybox
  [[ -x "$bb" ]] || bb="$(command -v busybox)"
  root="$(mktemp -d)"
  tar="$root.tar"
  mkdir -p "$root/bin" "$root/tmp" "$root/data"
  cp "$bb" "$root/bin/busybox"
  local applet
  for applet in sh ls cat echo sleep date mkdir mv cp rm env true false seq wc tail head; do
    ln -s busybox "$root/bin/$applet"
  done
  tar -C "$root" -cf "$tar" .
  docker_cli import "$tar" "$DOCKER_IMAGE" >/dev/null || die "docker: import of $DOCKER_IMAGE failed"
  rm -rf -- "$root" "$tar"
  log "docker: imported image $DOCKER_IMAGE"
}

svc_docker_start() {
  if docker_running; then
    log "docker: already running at unix://$DOCKER_SOCK"
    docker_image
    return 0
  fi
  mkdir -p "$DOCKER_DIR/data" "$DOCKER_DIR/exec"
  stop_pidfile "$DOCKER_PIDFILE" dockerd
  rm -f "$DOCKER_SOCK"
  start_bg "$DOCKER_PIDFILE" "$DOCKER_LOG" dockerd \
    --data-root "$DOCKER_DIR/data" --exec-root "$DOCKER_DIR/exec" \
    --pidfile "$DOCKER_DIR/dockerd.self.pid" -H "unix://$DOCKER_SOCK" \
    --iptables=false --ip-masq=false --bridge=none
  local deadline=$((SECONDS + 60))
  until docker_cli version >/dev/null 2>&1; do
    if ((SECONDS >= deadline)) || ! pidfile_alive "$DOCKER_PIDFILE" dockerd >/dev/null; then
      tail -n 30 "$DOCKER_LOG" >&2
      die "docker: dockerd did not come up on unix://$DOCKER_SOCK (log: $DOCKER_LOG)"
    fi
    sleep 0.3
  done
  log "docker: started dockerd $(docker_cli version -f '{{.Server.Version}}') at unix://$DOCKER_SOCK"
  docker_image
}

svc_docker_stop() {
  if pidfile_alive "$DOCKER_PIDFILE" dockerd >/dev/null; then
    # Containers first, so that none outlives its daemon.
    local ids
    ids="$(docker_cli ps -aq 2>/dev/null || true)"
    if [[ -n "$ids" ]]; then
      # shellcheck disable=SC2086
      docker_cli rm -f $ids >/dev/null 2>&1 || true
    fi
    stop_pidfile "$DOCKER_PIDFILE" dockerd 30
    log "docker: stopped"
  else
    rm -f "$DOCKER_PIDFILE"
    log "docker: not running"
  fi
}

svc_docker_status() {
  if docker_running; then
    printf '%-8s %-8s %s\n' docker running "unix://$DOCKER_SOCK"
    return 0
  fi
  printf '%-8s %-8s %s\n' docker stopped "unix://$DOCKER_SOCK"
  return 1
}

svc_docker_env() {
  printf 'export AMBER_DR_DOCKER_HOST=%q\n' "unix://$DOCKER_SOCK"
  printf 'export AMBER_DR_DOCKER_IMAGE=%q\n' "$DOCKER_IMAGE"
}

svc_docker_purge() {
  rm -rf -- "$DOCKER_DIR"
}

# ================================================================ driver

write_env_file() {
  local tmp="$ENV_FILE.tmp.$$" svc
  {
    printf '# Generated by scripts/stack.sh up on %s; do not edit.\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    # shellcheck disable=SC2016 # literal text
    printf '# Load with: eval "$(scripts/stack.sh env)"  or  . %q\n' "$ENV_FILE"
    printf 'export AMBER_DR_STACK_ENV=%q\n' "$ENV_FILE"
    for svc in "${SERVICES[@]}"; do
      "svc_${svc}_env"
    done
  } >"$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$ENV_FILE"
}

ensure_state_dir() {
  mkdir -p "$STACK_DIR"
  if [[ "$STACK_DIR" == "$AMBER_DR_REPO_ROOT/.stack" ]]; then
    ensure_gitignore_lines "$AMBER_DR_REPO_ROOT/.gitignore" /target /.stack /backups /demo-work
  fi
}

_cmd_up() {
  local svc
  for svc in "${SERVICES[@]}"; do
    "svc_${svc}_install"
  done
  for svc in "${SERVICES[@]}"; do
    "svc_${svc}_start"
  done
  write_env_file
  log "stack is up; env file: $ENV_FILE  (eval \"\$(scripts/stack.sh env)\")"
}

_cmd_down() {
  local purge="$1" i svc
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    svc="${SERVICES[i]}"
    "svc_${svc}_stop"
    if [[ "$purge" == 1 ]]; then
      if declare -F "svc_${svc}_purge" >/dev/null; then
        "svc_${svc}_purge"
      fi
      log "$svc: data purged"
    fi
  done
  if [[ "$purge" == 1 ]]; then
    rm -f "$ENV_FILE"
  fi
}

cmd_up() {
  ensure_state_dir
  with_lock "$LOCK_FILE" _cmd_up
}

cmd_down() {
  local purge=0
  case "${1:-}" in
    "") ;;
    --purge) purge=1 ;;
    *) die "unknown option for down: $1 (expected --purge)" ;;
  esac
  if [[ ! -d "$STACK_DIR" ]]; then
    log "nothing to stop: $STACK_DIR does not exist"
    return 0
  fi
  with_lock "$LOCK_FILE" _cmd_down "$purge"
}

cmd_status() {
  local svc rc=0
  for svc in "${SERVICES[@]}"; do
    "svc_${svc}_status" || rc=3
  done
  return "$rc"
}

cmd_env() {
  [[ -f "$ENV_FILE" ]] || die "no env file at $ENV_FILE: run 'scripts/stack.sh up' first"
  cat "$ENV_FILE"
}

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    env) cmd_env "$@" ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
