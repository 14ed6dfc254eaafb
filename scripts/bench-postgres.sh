#!/usr/bin/env bash
# Benchmark: `amber-dr backup --only postgres` of a pgbench database (scale 50, ~750 MB)
# against `pg_dump -Fc -f FILE`, and restore against `pg_restore -j2` into a fresh database,
# in the same run. Reports wall times (median of N runs) and amber-dr's peak RSS.
#
# Usage: scripts/bench-postgres.sh [--runs N] [--scale S] [--jobs J] [--encrypt]
#   --jobs: amber-dr's restore_jobs.
# Work directory: AMBER_DR_BENCH_DIR/pg if set (e.g. under your worktree, so that parallel
# runs do not collide), else ~/.cache/amber-dr/bench-pg. The binary is
# ${CARGO_TARGET_DIR:-target}/release/amber-dr.
#   --encrypt: an encrypted repository (`[repository.encryption] passphrase`, from
#              AMBER_DR_BENCH_PASSPHRASE, set to a fixed benchmark value if unset).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$AMBER_DR_REPO_ROOT"

RUNS=3
SCALE=50
JOBS=1
ENCRYPT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --scale) SCALE="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --encrypt) ENCRYPT=1; shift ;;
    *) die "unknown argument: $1" ;;
  esac
done

ensure_cargo
ensure_apt_pkg /usr/bin/time time
scripts/stack.sh up
eval "$(scripts/stack.sh env)"
BIN_DIR="$AMBER_DR_PG_BINDIR"
export PGHOST="$AMBER_DR_PG_HOST" PGPORT="$AMBER_DR_PG_PORT" PGUSER=postgres PGPASSWORD="$AMBER_DR_PG_PASSWORD"
DB="bench_pgbench_s$SCALE"
psql_q() { "$BIN_DIR/psql" -X -q -At -d postgres -c "$1"; }

rows=$("$BIN_DIR/psql" -X -At -d "$DB" -c 'SELECT count(*) FROM pgbench_accounts' 2>/dev/null || echo 0)
if [[ "$rows" != "$((SCALE * 100000))" ]]; then
  log "creating $DB with pgbench -i -s $SCALE"
  psql_q "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
  psql_q "CREATE DATABASE $DB"
  "$BIN_DIR/pgbench" -i -q -s "$SCALE" "$DB" >&2
fi
SIZE=$(psql_q "SELECT pg_database_size('$DB')")

log "building amber-dr (release)"
cargo build --release --locked -p amber-dr-cli >&2
BIN="${CARGO_TARGET_DIR:-$AMBER_DR_REPO_ROOT/target}/release/amber-dr"

WORK="${AMBER_DR_BENCH_DIR:+$AMBER_DR_BENCH_DIR/pg}"
WORK="${WORK:-$(amber_cache_dir)/bench-pg}"
mkdir -p "$WORK"
CFG="$WORK/amber-dr.toml"
bench_encryption_env "$ENCRYPT"
cat >"$CFG" <<TOML
[repository]
url = "$WORK/repo"
$(bench_encryption_toml "$ENCRYPT")

[components.postgres]
kind = "postgres"
url = "postgres://postgres:\${AMBER_DR_PG_PASSWORD}@$PGHOST:$PGPORT/postgres"
databases = ["$DB"]
bin_dir = "$BIN_DIR"
restore_jobs = $JOBS
TOML

peer_b=(); ours_b=(); ours_rss=(); peer_r=(); ours_r=(); ours_rrss=()
for run in $(seq 1 "$RUNS"); do
  log "run $run/$RUNS: pg_dump -Fc -f FILE"
  rm -f "$WORK/peer.dump"
  time_cmd "$WORK/t" "$BIN_DIR/pg_dump" -Fc -f "$WORK/peer.dump" -d "$DB"
  peer_b+=("$(cut -d' ' -f1 "$WORK/t")")

  log "run $run/$RUNS: amber-dr backup --only postgres"
  rm -rf "$WORK/repo"
  time_cmd "$WORK/t" "$BIN" -q --config "$CFG" backup --only postgres >/dev/null
  ours_b+=("$(cut -d' ' -f1 "$WORK/t")"); ours_rss+=("$(cut -d' ' -f2 "$WORK/t")")

  log "run $run/$RUNS: createdb + pg_restore -j2"
  psql_q "DROP DATABASE IF EXISTS bench_peer_restore WITH (FORCE)"
  time_cmd "$WORK/t" bash -c "'$BIN_DIR/createdb' bench_peer_restore && '$BIN_DIR/pg_restore' -j2 -d bench_peer_restore '$WORK/peer.dump'"
  peer_r+=("$(cut -d' ' -f1 "$WORK/t")")
  psql_q "DROP DATABASE IF EXISTS bench_peer_restore WITH (FORCE)"

  log "run $run/$RUNS: amber-dr restore (into a new database)"
  psql_q "DROP DATABASE IF EXISTS bench_ours_restore WITH (FORCE)"
  time_cmd "$WORK/t" "$BIN" -q --config "$CFG" restore latest --yes --no-safety-backup --target postgres=bench_ours_restore >/dev/null
  ours_r+=("$(cut -d' ' -f1 "$WORK/t")"); ours_rrss+=("$(cut -d' ' -f2 "$WORK/t")")
  got=$("$BIN_DIR/psql" -X -At -d bench_ours_restore -c 'SELECT count(*) FROM pgbench_accounts')
  [[ "$got" == "$((SCALE * 100000))" ]] || die "restored database has $got accounts"
  psql_q "DROP DATABASE IF EXISTS bench_ours_restore WITH (FORCE)"
done

PEER_SIZE=$(stat -c %s "$WORK/peer.dump")
# shellcheck disable=SC2016 # markdown code spans, not shell
PEER_BACKUP='`pg_dump -Fc -f FILE`' PEER_RESTORE='`createdb` + `pg_restore -j2`'
OURS_SIZE=$(find "$WORK/repo" -name '*.zst' -printf '%s\n' | awk '{s+=$1} END {print s}')

cat <<EOF2
Data set: pgbench scale $SCALE ($((SCALE * 100000)) accounts), database size $SIZE bytes; PostgreSQL $("$BIN_DIR/postgres" --version | awk '{print $3}'); $(nproc) cores; $RUNS runs, median wall time; repository: $(bench_encryption_label "$ENCRYPT"); peak RSS is the maximum over runs.

$(bench_header)
$(bench_row backup "$PEER_BACKUP" "${peer_b[*]}" "${ours_b[*]}" "${ours_rss[*]}" "$PEER_SIZE / $OURS_SIZE")
$(bench_row "restore (restore_jobs = $JOBS)" "$PEER_RESTORE" "${peer_r[*]}" "${ours_r[*]}" "${ours_rrss[*]}")

All runs: backup peer ${peer_b[*]} / amber-dr ${ours_b[*]}; restore peer ${peer_r[*]} / amber-dr ${ours_r[*]}.
EOF2
rm -f "$WORK/peer.dump"
