#!/usr/bin/env bash
# Benchmark: a whole-stack restore of the demo data set (Postgres, Neo4j, the documents bucket,
# Milvus, uploads; with its safety backup) by amber-dr at two commits, in the same run,
# alternating: BEFORE (default 427a9d4, the last commit without the prepare phase) and the
# working tree. Issue 12's bound: the prepare phase must not make the restore more than 1.3x
# slower. Reports each run and the medians.
#
# Usage: scripts/bench-stack-restore.sh [--runs N] [--before REV]
# Needs the demo's configuration and backup: runs scripts/demo.sh first unless
# demo-work/amber-dr.toml exists. Work directory (worktree of BEFORE, release builds):
# AMBER_DR_BENCH_DIR/stack-restore if set, else ~/.cache/amber-dr/bench-stack-restore.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$AMBER_DR_REPO_ROOT"

RUNS=3
BEFORE=427a9d4
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --before) BEFORE="$2"; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done

ensure_cargo
ensure_apt_pkg /usr/bin/time time
if [[ ! -f demo-work/amber-dr.toml ]]; then
  log "no demo data yet: running scripts/demo.sh"
  scripts/demo.sh >&2
fi
scripts/stack.sh up
eval "$(scripts/stack.sh env)"

WORK="${AMBER_DR_BENCH_DIR:+$AMBER_DR_BENCH_DIR/stack-restore}"
WORK="${WORK:-$(amber_cache_dir)/bench-stack-restore}"
mkdir -p "$WORK"
export CARGO_TARGET_DIR="$WORK/target"
if [[ ! -d "$WORK/before" ]]; then
  git worktree add --detach "$WORK/before" "$BEFORE" >&2
else
  git -C "$WORK/before" checkout -q --detach "$BEFORE"
fi
log "building amber-dr (release) at $BEFORE"
(cd "$WORK/before" && cargo build --release --locked -p amber-dr-cli >&2)
cp "$CARGO_TARGET_DIR/release/amber-dr" "$WORK/amber-dr-before"
log "building amber-dr (release) from the working tree"
AFTER="$(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes')"
cargo build --release --locked -p amber-dr-cli >&2
cp "$CARGO_TARGET_DIR/release/amber-dr" "$WORK/amber-dr-after"

cd demo-work
ID=$("$WORK/amber-dr-after" list --json | python3 -c '
import json, sys
backups = [b for b in json.load(sys.stdin) if b.get("purpose", "backup") == "backup" and b.get("status") == "complete"]
print(backups[-1]["id"])')
log "restoring demo backup $ID"

before=(); after=()
run_one() {
  local which="$1"
  time_cmd "$WORK/t" "$WORK/amber-dr-$which" -q restore "$ID" --yes >"$WORK/out-$which" 2>&1 \
    || { cat "$WORK/out-$which" >&2; die "the restore by the $which binary failed"; }
  local t
  t=$(cut -d' ' -f1 "$WORK/t")
  log "  $which: $t s"
  if [[ "$which" == before ]]; then before+=("$t"); else after+=("$t"); fi
}
for run in $(seq 1 "$RUNS"); do
  log "run $run/$RUNS"
  # Alternate who goes first, so that neither always meets a warmer cache.
  if (( run % 2 )); then run_one before; run_one after; else run_one after; run_one before; fi
done

bm=$(printf '%s\n' "${before[@]}" | median)
am=$(printf '%s\n' "${after[@]}" | median)
cat <<EOF2
Whole-stack restore of the demo data set (backup $ID, safety backup included), $(nproc) cores, $RUNS runs each, alternating.

| binary | runs (s) | median (s) |
|---|---|---|
| before ($BEFORE: artifacts read through, hashes only) | ${before[*]} | $bm |
| after ($AFTER: prepare + commit) | ${after[*]} | $am |

after / before (medians): $(ratio "$am" "$bm") (bound: 1.30)
EOF2
