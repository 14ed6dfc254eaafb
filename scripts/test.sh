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

log "starting the local stack"
scripts/stack.sh up
# The drill's HTML report and the history page are opened in a real browser by a test.
ensure_apt_pkg chromium
eval "$(scripts/stack.sh env)"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

if [[ $# -gt 0 || "${AMBER_DR_TEST_LANES:-1}" == 0 ]]; then
  log "cargo test"
  cargo test --workspace --all-features --locked "$@"
else
  # The same tests as `cargo test --workspace`, with the test binaries run in parallel lanes
  # (binaries sharing a server run one after another; see scripts/test-lanes.py).
  log "cargo test: building the test binaries"
  build_json=$(mktemp)
  trap 'rm -f "$build_json"' EXIT
  cargo test --workspace --all-features --locked --no-run --message-format=json-render-diagnostics >"$build_json"
  log "cargo test: running the test binaries in parallel lanes"
  python3 scripts/test-lanes.py <"$build_json"
fi

( ensure_apt_pkg shellcheck ) || warn "shellcheck could not be installed; the shell scripts are not linted"
if need_cmd shellcheck; then
  log "shellcheck"
  shellcheck -x scripts/*.sh .ci/run
fi
log "all tests passed"
