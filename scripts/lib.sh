#!/usr/bin/env bash
# Shared helpers for amber-dr's shell scripts (scripts/stack.sh, CI, demo).
# Source it; do not execute it:
#   # shellcheck source=scripts/lib.sh
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Provides:
#   log / warn / die                 messages on stderr, prefixed with the script name
#   AMBER_DR_REPO_ROOT               the repository root (parent of scripts/)
#   amber_cache_dir                  ${AMBER_DR_CACHE:-$HOME/.cache/amber-dr}, created on demand
#   need_cmd / ensure_apt_pkg        check for / install a tool
#   ensure_cargo                     put cargo on PATH or fail with a clear message
#   port_open / port_wait            TCP probe of HOST:PORT, bounded wait
#   http_wait                        bounded curl loop until a URL answers
#   pidfile_read / pid_alive / pidfile_alive / start_bg / stop_pidfile
#   with_lock                        run a command under flock(1) on a lock file
#   ensure_gitignore_lines           add missing lines to a .gitignore

if [[ -n "${AMBER_DR_LIB_LOADED:-}" ]]; then
  return 0
fi
AMBER_DR_LIB_LOADED=1

AMBER_DR_SCRIPT_NAME="$(basename "${0:-amber-dr}")"
AMBER_DR_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AMBER_DR_REPO_ROOT

# ---------------------------------------------------------------- messages

log() {
  printf '[%s] %s\n' "$AMBER_DR_SCRIPT_NAME" "$*" >&2
}

warn() {
  printf '[%s] WARNING: %s\n' "$AMBER_DR_SCRIPT_NAME" "$*" >&2
}

die() {
  printf '[%s] ERROR: %s\n' "$AMBER_DR_SCRIPT_NAME" "$*" >&2
  exit 1
}

# ---------------------------------------------------------------- dirs

# Cache for installed tools; lives outside the repository.
amber_cache_dir() {
  local dir="${AMBER_DR_CACHE:-${HOME:-/root}/.cache/amber-dr}"
  mkdir -p "$dir" || die "cannot create cache dir $dir (set AMBER_DR_CACHE)"
  printf '%s\n' "$dir"
}

# ---------------------------------------------------------------- tools

need_cmd() {
  command -v "$1" >/dev/null 2>&1
}

_APT_UPDATED=""
# ensure_apt_pkg CMD [PKG]: install Debian package PKG (default CMD) if CMD is missing.
ensure_apt_pkg() {
  local cmd="$1" pkg="${2:-$1}"
  need_cmd "$cmd" && return 0
  need_cmd apt-get || die "'$cmd' is missing and apt-get is not available; install '$pkg' by hand"
  local sudo=""
  if [[ "$(id -u)" != 0 ]]; then
    need_cmd sudo || die "'$cmd' is missing; run as root or install '$pkg' by hand"
    sudo="sudo"
  fi
  log "installing Debian package '$pkg' (for '$cmd')"
  if [[ -z "$_APT_UPDATED" ]]; then
    $sudo apt-get update -qq -o DPkg::Lock::Timeout=600 >&2 || die "apt-get update failed"
    _APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=600 "$pkg" >&2 \
    || die "apt-get install $pkg failed"
  need_cmd "$cmd" || die "installed '$pkg' but '$cmd' is still not on PATH"
}

# ensure_cargo: make sure `cargo` is runnable (looks in ~/.cargo/bin too).
ensure_cargo() {
  if ! need_cmd cargo && [[ -x "${CARGO_HOME:-${HOME:-/root}/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin:$PATH"
    export PATH
  fi
  need_cmd cargo || die "cargo not found: install a Rust toolchain (rustup, or ~/.cargo/bin on PATH)"
}

# ---------------------------------------------------------------- network

# port_open HOST PORT: true if something accepts TCP connections there.
port_open() {
  local host="$1" port="$2"
  # shellcheck disable=SC2016 # expanded by the inner shell
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
}

# port_wait HOST PORT TIMEOUT_SECONDS: wait until the port accepts connections.
port_wait() {
  local host="$1" port="$2" timeout_s="${3:-20}"
  local deadline=$((SECONDS + timeout_s))
  while ((SECONDS < deadline)); do
    port_open "$host" "$port" && return 0
    sleep 0.2
  done
  return 1
}

# http_wait URL TIMEOUT_SECONDS [extra curl args...]:
# wait until curl gets an HTTP response with a 2xx status from URL.
http_wait() {
  local url="$1" timeout_s="${2:-20}"
  shift 2 || shift $#
  local deadline=$((SECONDS + timeout_s))
  while ((SECONDS < deadline)); do
    if curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.25
  done
  return 1
}

# ---------------------------------------------------------------- processes

# pidfile_read PIDFILE: print the pid stored there (nothing if absent/garbage).
pidfile_read() {
  local f="$1" pid=""
  [[ -f "$f" ]] || return 1
  read -r pid <"$f" || true
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  printf '%s\n' "$pid"
}

# pid_alive PID [EXPECTED_SUBSTRING]: process exists (and, if given, its
# command line contains EXPECTED_SUBSTRING, to guard against pid reuse).
pid_alive() {
  local pid="$1" expect="${2:-}"
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -n "$expect" && -r "/proc/$pid/cmdline" ]]; then
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmdline" == *"$expect"* ]] || return 1
  fi
  return 0
}

# pidfile_alive PIDFILE [EXPECTED_SUBSTRING]: prints the pid if it is alive.
pidfile_alive() {
  local pid
  pid="$(pidfile_read "$1")" || return 1
  pid_alive "$pid" "${2:-}" || return 1
  printf '%s\n' "$pid"
}

# without_inherited_fds CMD [ARGS...]: run CMD with every descriptor above 2 closed, so that a
# daemon it starts cannot keep a lock of ours (with_lock's flock) open forever.
without_inherited_fds() {
  # shellcheck disable=SC2016
  bash -c '
    fds=()
    for f in /proc/$$/fd/*; do fds+=("${f##*/}"); done
    for n in "${fds[@]}"; do
      if [[ $n =~ ^[0-9]+$ ]] && ((n > 2)) && [[ -e /proc/$$/fd/$n ]]; then eval "exec $n>&-"; fi
    done
    exec "$@"' _ "$@"
}

# start_bg PIDFILE LOGFILE CMD [ARGS...]: start CMD detached in its own session
# (so it survives the calling shell and can be stopped as a process group),
# stdout/stderr appended to LOGFILE, its pid written to PIDFILE.
start_bg() {
  local pidfile="$1" logfile="$2"
  shift 2
  rm -f "$pidfile"
  printf '\n=== %s starting: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" >>"$logfile"
  # The inner shell closes inherited descriptors above 2 (e.g. a flock held by
  # with_lock, which must not outlive this script), writes its own pid and
  # then execs CMD, so PIDFILE holds CMD's pid whether or not setsid forked.
  # shellcheck disable=SC2016
  # (No redirection on the closing loop: bash would park the saved stderr on
  # a high fd, the loop would close it, and stderr would end up lost.)
  setsid bash -c '
    fds=()
    for f in /proc/$$/fd/*; do fds+=("${f##*/}"); done
    for n in "${fds[@]}"; do
      if [[ $n =~ ^[0-9]+$ ]] && ((n > 2)) && [[ -e /proc/$$/fd/$n ]]; then eval "exec $n>&-"; fi
    done
    echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" "$@" \
    </dev/null >>"$logfile" 2>&1 &
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s "$pidfile" ]] && return 0
    sleep 0.05
  done
  die "process did not write its pidfile $pidfile (see $logfile)"
}

# pid_pgid PID: print the process group id of PID (from /proc; no procps needed).
pid_pgid() {
  local stat rest _state _ppid pgrp
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  rest="${stat##*) }"
  read -r _state _ppid pgrp _ <<<"$rest"
  printf '%s\n' "$pgrp"
}

# stop_pidfile PIDFILE [EXPECTED_SUBSTRING] [TIMEOUT_SECONDS]:
# SIGTERM the process (and its process group if it leads one), wait for it to
# exit, SIGKILL after the timeout, remove PIDFILE. Never touches a pid whose
# command line does not match EXPECTED_SUBSTRING.
stop_pidfile() {
  local pidfile="$1" expect="${2:-}" timeout_s="${3:-10}" pid
  if ! pid="$(pidfile_read "$pidfile")"; then
    rm -f "$pidfile"
    return 0
  fi
  if ! pid_alive "$pid" "$expect"; then
    rm -f "$pidfile"
    return 0
  fi
  local target="$pid" pgid
  pgid="$(pid_pgid "$pid" || true)"
  [[ "$pgid" == "$pid" ]] && target="-$pid"
  kill -TERM -- "$target" 2>/dev/null || true
  local deadline=$((SECONDS + timeout_s))
  while ((SECONDS < deadline)) && kill -0 "$pid" 2>/dev/null; do
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "pid $pid did not exit after SIGTERM within ${timeout_s}s; sending SIGKILL"
    kill -KILL -- "$target" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)) && kill -0 "$pid" 2>/dev/null; do
      sleep 0.1
    done
  fi
  kill -0 "$pid" 2>/dev/null && die "could not stop pid $pid"
  rm -f "$pidfile"
}

# ---------------------------------------------------------------- misc

# with_lock LOCKFILE CMD [ARGS...]: run CMD (a shell function is fine) while
# holding an exclusive flock on LOCKFILE; waits up to 15 minutes for the lock.
with_lock() {
  local lockfile="$1"
  shift
  if ! need_cmd flock; then
    "$@"
    return
  fi
  mkdir -p "$(dirname "$lockfile")"
  local fd
  exec {fd}>"$lockfile"
  if ! flock -w 900 "$fd"; then
    exec {fd}>&-
    die "timed out waiting for lock $lockfile"
  fi
  local rc=0
  "$@" || rc=$?
  exec {fd}>&-
  return "$rc"
}

# ensure_gitignore_lines FILE LINE...: create FILE or append the missing lines.
ensure_gitignore_lines() {
  local file="$1" line
  shift
  if [[ ! -f "$file" ]]; then
    printf '%s\n' "$@" >"$file"
    return 0
  fi
  # make sure the file ends with a newline before appending
  if [[ -s "$file" && "$(tail -c1 "$file" | od -An -c | tr -d ' ')" != '\n' ]]; then
    printf '\n' >>"$file"
  fi
  for line in "$@"; do
    grep -qxF -- "$line" "$file" || printf '%s\n' "$line" >>"$file"
  done
}

# ---------------------------------------------------------------- benchmarks

# time_cmd OUT CMD...: run CMD under /usr/bin/time, write "wall_s max_rss_kb" to OUT.
time_cmd() {
  local out="$1"
  shift
  /usr/bin/time -f '%e %M' -o "$out" "$@"
}

# settle [PATH...]: before a timed command, write every dirty page back (so that the previous
# step's writeback does not run during the next one) and read each PATH (a directory or a file)
# once, so that every timed command reads its input from the page cache alike.
settle() {
  sync
  local p
  for p in "$@"; do
    if [[ -d "$p" ]]; then
      # Through a pipe: GNU tar does not read file contents when its output is /dev/null.
      tar -cf - -C "$p" . | cat >/dev/null
    elif [[ -e "$p" ]]; then
      cat -- "$p" >/dev/null
    fi
  done
}

# median: the median of the numbers on stdin, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ratio A B: A/B with two decimals.
ratio() { awk "BEGIN {printf \"%.2f\", $1/$2}"; }

# bench_header: the header of the benchmark table that bench_row fills.
bench_header() {
  printf '| operation | peer | peer wall (s) | amber-dr wall (s) | ratio | amber-dr peak RSS (MiB) | stored bytes peer / amber-dr |\n'
  printf '|---|---|---|---|---|---|---|\n'
}

# bench_row OPERATION PEER "PEER_TIMES" "OURS_TIMES" "OURS_RSS_KB" [STORED]: one table row with
# the median wall times, their ratio and the maximum RSS (times and RSS space-separated).
bench_row() {
  local op="$1" peer="$2" pt="$3" ot="$4" rss="$5" stored="${6:-}" pm om rmax
  pm=$(tr ' ' '\n' <<<"$pt" | median)
  om=$(tr ' ' '\n' <<<"$ot" | median)
  rmax=$(tr ' ' '\n' <<<"$rss" | sort -n | tail -1)
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$op" "$peer" "$pm" "$om" "$(ratio "$om" "$pm")" \
    "$(awk "BEGIN {printf \"%.1f\", $rmax/1024}")" "$stored"
}

# bench_encryption_toml ENCRYPT: if ENCRYPT is non-empty, print a `[repository.encryption]`
# table (to follow `[repository]`'s keys) whose passphrase is read from the variable
# AMBER_DR_BENCH_PASSPHRASE; otherwise print nothing. Call bench_encryption_env first (in the
# script's own shell, not in a command substitution, so that the export reaches amber-dr).
bench_encryption_toml() {
  [[ -n "${1:-}" ]] || return 0
  # shellcheck disable=SC2016 # amber-dr expands the variable, not the shell
  printf '\n[repository.encryption]\npassphrase = "${AMBER_DR_BENCH_PASSPHRASE}"\n'
}

# bench_encryption_env ENCRYPT: if ENCRYPT is non-empty, export AMBER_DR_BENCH_PASSPHRASE (a
# fixed benchmark value unless it is already set).
bench_encryption_env() {
  [[ -n "${1:-}" ]] || return 0
  export AMBER_DR_BENCH_PASSPHRASE="${AMBER_DR_BENCH_PASSPHRASE:-amber-dr benchmark passphrase}"
}

# bench_encryption_label ENCRYPT: "encrypted (passphrase)" or "plain", for the report.
bench_encryption_label() {
  if [[ -n "${1:-}" ]]; then echo "encrypted (passphrase)"; else echo "plain"; fi
}
