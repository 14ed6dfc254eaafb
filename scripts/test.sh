#!/usr/bin/env bash
# Run every test of amber-dr: start the local stack (installing it on first use), check
# formatting and lints, then run the whole workspace's tests against the real servers.
#
# Usage: scripts/test.sh [extra cargo test args]
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
eval "$(scripts/stack.sh env)"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

log "cargo test"
cargo test --workspace --all-features --locked "$@"

if command -v shellcheck >/dev/null 2>&1; then
  log "shellcheck"
  shellcheck -x scripts/*.sh .ci/run
fi
log "all tests passed"
