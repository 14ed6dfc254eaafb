#!/usr/bin/env bash
# Run every test of amber-dr: start the local stack (installing it on first use), check
# formatting and lints, then run the whole workspace's tests against the real servers.
#
# Usage: scripts/test.sh [extra cargo test args]
# Without arguments the test binaries run in parallel lanes (scripts/test-lanes.py); with
# arguments, or AMBER_DR_TEST_LANES=0, it is one plain `cargo test --workspace ARGS`.
# CI runs it with AMBER_DR_REQUIRE_SERVICES=1: a missing server fails the run.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$AMBER_DR_REPO_ROOT"

ensure_cargo
# A minimal rustup profile lacks the linters.
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >&2
  done
fi

log "disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free where target/ is built (a cold build of every test needs ~8 GB)"
# The drill's HTML report and the history page are opened in a real browser by a test.
# Installed before the stack starts, so that the two never wait for apt's lock together.
ensure_apt_pkg chromium

# The stack starts (installing itself on first use) in the background while the code is
# checked and built; the tests wait for it.
mkdir -p target
log "starting the local stack in the background (log: target/stack-up.log)"
scripts/stack.sh up >target/stack-up.log 2>&1 &
stack_pid=$!
stack_ready() {
  if [[ -n "${stack_pid:-}" ]]; then
    if ! wait "$stack_pid"; then
      tail -n 60 target/stack-up.log >&2
      die "the local stack did not start (whole log: target/stack-up.log)"
    fi
    stack_pid=""
    log "the local stack is up"
  fi
  eval "$(scripts/stack.sh env)"
}
trap '[[ -n "${stack_pid:-}" ]] && kill "$stack_pid" 2>/dev/null; true' EXIT

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

if [[ $# -gt 0 || "${AMBER_DR_TEST_LANES:-1}" == 0 ]]; then
  stack_ready
  log "cargo test"
  cargo test --workspace --all-features --locked "$@"
else
  # The same tests as `cargo test --workspace`, with the test binaries run in parallel lanes
  # (binaries sharing a server run one after another; see scripts/test-lanes.py).
  log "cargo test: building the test binaries"
  build_json=$(mktemp)
  trap 'rm -f "$build_json"; [[ -n "${stack_pid:-}" ]] && kill "$stack_pid" 2>/dev/null; true' EXIT
  cargo test --workspace --all-features --locked --no-run --message-format=json-render-diagnostics >"$build_json"
  stack_ready
  log "cargo test: running the test binaries in parallel lanes"
  python3 scripts/test-lanes.py <"$build_json"
fi

( ensure_apt_pkg shellcheck ) || warn "shellcheck could not be installed; the shell scripts are not linted"
if need_cmd shellcheck; then
  log "shellcheck"
  shellcheck -x scripts/*.sh .ci/run
fi
log "all tests passed"
