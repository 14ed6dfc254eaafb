#!/usr/bin/env bash
# Benchmark: checking N references (default 1,000,000) from Postgres rows to the files of a
# directory, by `amber-dr verify --references` (the key sets read from the backup's artifacts,
# sorted in bounded memory, merged) against the peer: a psql SELECT of the same keys plus a
# listing of the directory (`find`). Issue 13's bound: under 2x the peer, bounded RSS.
# Reports each run, the medians and amber-dr's maximum RSS.
#
# Why a directory and not a bucket: the stack's S3 stand-in (s3s-fs) lists a bucket in time
# quadratic in its size (100,000 objects took 6.4 min to list with boto3), so a bucket of a
# million objects cannot be built or listed here. The check itself is the same for both (the
# S3 key set is read from the backup's index artifact as the directory's from its paths index).
#
# Usage: scripts/bench-references.sh [--n N] [--runs R]
# Work directory: AMBER_DR_BENCH_DIR/references if set, else ~/.cache/amber-dr/bench-references
# (the directory of N empty files and the repository stay there between runs).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$AMBER_DR_REPO_ROOT"

N=1000000
RUNS=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --n) N="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done

ensure_cargo
ensure_apt_pkg /usr/bin/time time
scripts/stack.sh up
eval "$(scripts/stack.sh env)"

WORK="${AMBER_DR_BENCH_DIR:+$AMBER_DR_BENCH_DIR/references}"
WORK="${WORK:-$(amber_cache_dir)/bench-references}"
mkdir -p "$WORK"
CARGO_TARGET_DIR="$(amber_cache_dir)/bench-target"
export CARGO_TARGET_DIR
log "building amber-dr (release)"
cargo build --release --locked -p amber-dr-cli >&2
AMBER="$CARGO_TARGET_DIR/release/amber-dr"

export PGHOST="$AMBER_DR_PG_HOST" PGPORT="$AMBER_DR_PG_PORT" PGUSER=postgres PGPASSWORD="$AMBER_DR_PG_PASSWORD"
PSQL=("$AMBER_DR_PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1)
DB=amber_bench_refs
cd "$WORK"
if [[ "$(cat n 2>/dev/null)" != "$N" ]]; then
  log "data: $N rows in $DB.docs, $N empty files in uploads/ (1,000 per directory)"
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  "${PSQL[@]}" -d "$DB" -c "CREATE TABLE docs AS SELECT i AS id, 'd' || (i / 1000) || '/' || i || '.pdf' AS upload_path FROM generate_series(1, $N) i"
  rm -rf uploads repo
  python3 - "$N" <<'PY'
import os, sys
n = int(sys.argv[1])
for i in range(1, n + 1):
    d = "uploads/d%d" % (i // 1000)
    if i == 1 or i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    open("%s/%d.pdf" % (d, i), "w").close()
PY
  echo "$N" > n
fi
cat > amber-dr.toml <<TOML
[repository]
url = "./repo"

[components.postgres]
kind = "postgres"
url = "postgres://postgres:\${AMBER_DR_PG_PASSWORD}@$AMBER_DR_PG_HOST:$AMBER_DR_PG_PORT/postgres"
databases = ["$DB"]

[components.uploads]
kind = "files"
path = "./uploads"

[[references]]
name = "document files"
from = { component = "postgres", database = "$DB", query = "SELECT upload_path FROM docs" }
to = { component = "uploads" }
TOML
log "backup (its own check included)"
ID=$("$AMBER" backup | tail -1)

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
: > amber.times; : > peer.times; : > amber.rss
for r in $(seq "$RUNS"); do
  /usr/bin/time -f '%e %M' -o t.out "$AMBER" verify --references "$ID" > verify.out
  grep -q "1 declared, all resolve" verify.out || die "the check did not resolve: $(cat verify.out)"
  read -r secs rss < t.out
  echo "$secs" >> amber.times; echo "$rss" >> amber.rss
  t0=$(now)
  "${PSQL[@]}" -At -d "$DB" -c "SELECT upload_path FROM docs" > /dev/null
  find uploads -type f > /dev/null
  t1=$(now)
  peer=$(python3 -c "print(round($t1 - $t0, 2))")
  echo "$peer" >> peer.times
  log "run $r: amber-dr verify --references ${secs} s (max RSS ${rss} KiB); SELECT + find ${peer} s"
done
a=$(median < amber.times); p=$(median < peer.times); m=$(sort -n amber.rss | tail -1)
printf 'N=%s  amber-dr verify --references: %s s median (max RSS %s MiB)  |  psql SELECT + find: %s s median  |  ratio %.2f\n' \
  "$N" "$a" "$((m / 1024))" "$p" "$(python3 -c "print($a / $p)")"
