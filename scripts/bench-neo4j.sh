#!/usr/bin/env bash
# Benchmark: `amber-dr backup --only neo4j` of a generated graph (default 200k nodes with 3
# labels and 5 properties each, 500k relationships) against streaming
# `CALL apoc.export.json.all(null, {stream:true})` read by the same client (neo4rs), and
# `amber-dr restore` against replaying the graph's `apoc.export.cypher.all` export (default
# options) over Bolt, statement by statement (the runbook's restore path), in the same run.
# Reports wall times (median of N runs) and amber-dr's peak RSS. The backup peer must deliver
# one JSON line per node and relationship, or the benchmark fails (a peer that returns nothing
# is not a time). --backup-only skips the restores (the peer's replay takes about half an hour
# at full size).
#
# Usage: scripts/bench-neo4j.sh [--runs N] [--nodes N] [--rels N] [--backup-only]
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$AMBER_DR_REPO_ROOT"

RUNS=3
NODES=200000
RELS=500000
BACKUP_ONLY=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --nodes) NODES="$2"; shift 2 ;;
    --rels) RELS="$2"; shift 2 ;;
    --backup-only) BACKUP_ONLY=1; shift ;;
    *) die "unknown argument: $1" ;;
  esac
done

ensure_cargo
ensure_apt_pkg /usr/bin/time time
scripts/stack.sh up
eval "$(scripts/stack.sh env)"
URI="$AMBER_DR_NEO4J_URI"
cypher() { "$AMBER_DR_NEO4J_PYTHON" "$AMBER_DR_REPO_ROOT/scripts/cypher.py" "$URI" "$AMBER_DR_NEO4J_PASSWORD" 2>/dev/null; }
# Empty the database: data in batches, then every constraint and index (lookup ones stay).
wipe() {
  printf 'MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS\n' | cypher >/dev/null
  # shellcheck disable=SC2016 # Cypher backticks, not shell
  printf '%s\n;\n%s\n' \
    'SHOW CONSTRAINTS YIELD name RETURN "DROP CONSTRAINT `" + name + "`"' \
    'SHOW INDEXES YIELD name, type, owningConstraint WHERE type <> "LOOKUP" AND owningConstraint IS NULL RETURN "DROP INDEX `" + name + "`"' \
    | cypher | sed "s/^'//; s/'\$//" | awk '{print; print ";"}' | cypher >/dev/null
}

generate() {
  log "generating $NODES nodes and $RELS relationships"
  wipe
  cypher <<CYPHER
UNWIND range(0, $NODES - 1) AS k
WITH k WHERE k % 3 = 0
CALL { WITH k CREATE (:Person {k: k, name: 'node ' + k, score: k / 3.0, created: datetime({epochSeconds: 1600000000 + k}), active: k % 2 = 0}) } IN TRANSACTIONS OF 10000 ROWS
;
UNWIND range(0, $NODES - 1) AS k
WITH k WHERE k % 3 = 1
CALL { WITH k CREATE (:Company {k: k, name: 'node ' + k, score: k / 3.0, created: datetime({epochSeconds: 1600000000 + k}), active: k % 2 = 0}) } IN TRANSACTIONS OF 10000 ROWS
;
UNWIND range(0, $NODES - 1) AS k
WITH k WHERE k % 3 = 2
CALL { WITH k CREATE (:Document {k: k, name: 'node ' + k, score: k / 3.0, created: datetime({epochSeconds: 1600000000 + k}), active: k % 2 = 0}) } IN TRANSACTIONS OF 10000 ROWS
;
CREATE INDEX bench_person_k IF NOT EXISTS FOR (n:Person) ON (n.k)
;
CREATE INDEX bench_company_k IF NOT EXISTS FOR (n:Company) ON (n.k)
;
CREATE INDEX bench_document_k IF NOT EXISTS FOR (n:Document) ON (n.k)
;
CALL db.awaitIndexes(300)
;
UNWIND range(0, $RELS - 1) AS i
CALL { WITH i
  WITH i, i % $NODES AS ka, (i * 7919 + 13) % $NODES AS kb
  CALL { WITH ka MATCH (a:Person {k: ka}) RETURN a UNION WITH ka MATCH (a:Company {k: ka}) RETURN a
         UNION WITH ka MATCH (a:Document {k: ka}) RETURN a }
  CALL { WITH kb MATCH (b:Person {k: kb}) RETURN b UNION WITH kb MATCH (b:Company {k: kb}) RETURN b
         UNION WITH kb MATCH (b:Document {k: kb}) RETURN b }
  CREATE (a)-[:LINKS {w: i, since: date({year: 2000 + i % 25, month: 1 + i % 12, day: 1})}]->(b)
} IN TRANSACTIONS OF 10000 ROWS
CYPHER
}

count_graph() {
  printf 'MATCH (n) RETURN count(n)\n;\nMATCH ()-[r]->() RETURN count(r)\n' | cypher | tr '\n' ' '
}

log "building amber-dr and the peer client (release)"
cargo build --release --locked -p amber-dr-cli >&2
cargo build --release --locked -p amber-dr-neo4j --example neo4j_peer >&2
BIN="$AMBER_DR_REPO_ROOT/target/release/amber-dr"
PEER="$AMBER_DR_REPO_ROOT/target/release/examples/neo4j_peer"

WORK="$(amber_cache_dir)/bench-neo4j"
mkdir -p "$WORK"
CFG="$WORK/amber-dr.toml"
cat >"$CFG" <<TOML
[repository]
url = "$WORK/repo"

[components.neo4j]
kind = "neo4j"
uri = "$URI"
password = "\${AMBER_DR_NEO4J_PASSWORD}"
TOML

EXPECT="$NODES $RELS "
if [[ "$(count_graph)" != "$EXPECT" ]]; then generate; fi
[[ "$(count_graph)" == "$EXPECT" ]] || die "the generated graph has $(count_graph), expected $EXPECT"

peer_b=(); ours_b=(); ours_rss=(); peer_r=(); ours_r=(); ours_rrss=()
for run in $(seq 1 "$RUNS"); do
  # Alternate the order: the machine may be shared, so neither side always goes first.
  for side in $( ((run % 2)) && echo "peer ours" || echo "ours peer"); do
    if [[ "$side" == peer ]]; then
      log "run $run/$RUNS: apoc.export.json.all stream read by neo4rs"
      time_cmd "$WORK/t" "$PEER" json-export "$URI" "$AMBER_DR_NEO4J_PASSWORD" "$WORK/peer.json" 2>"$WORK/peer.log"
      cat "$WORK/peer.log" >&2
      lines=$(wc -l <"$WORK/peer.json")
      [[ "$lines" == "$((NODES + RELS))" ]] \
        || die "the APOC JSON stream delivered $lines lines, expected $((NODES + RELS)) (see $WORK/peer.log)"
      peer_b+=("$(cut -d' ' -f1 "$WORK/t")")
    else
      log "run $run/$RUNS: amber-dr backup --only neo4j"
      rm -rf "$WORK/repo"
      time_cmd "$WORK/t" "$BIN" -q --config "$CFG" backup --only neo4j >/dev/null
      ours_b+=("$(cut -d' ' -f1 "$WORK/t")"); ours_rss+=("$(cut -d' ' -f2 "$WORK/t")")
    fi
  done
  [[ "$BACKUP_ONLY" == 1 ]] && continue

  log "run $run/$RUNS: apoc.export.cypher.all (default options), then replay it over Bolt"
  "$PEER" cypher-export "$URI" "$AMBER_DR_NEO4J_PASSWORD" "$WORK/peer.cypher"
  wipe
  time_cmd "$WORK/t" "$PEER" cypher-replay "$URI" "$AMBER_DR_NEO4J_PASSWORD" "$WORK/peer.cypher"
  peer_r+=("$(cut -d' ' -f1 "$WORK/t")")
  [[ "$(count_graph)" == "$EXPECT" ]] || die "the replayed graph has $(count_graph), expected $EXPECT"

  log "run $run/$RUNS: amber-dr restore (over the replayed graph)"
  time_cmd "$WORK/t" "$BIN" -q --config "$CFG" restore latest --yes --no-safety-backup >/dev/null
  ours_r+=("$(cut -d' ' -f1 "$WORK/t")"); ours_rrss+=("$(cut -d' ' -f2 "$WORK/t")")
  [[ "$(count_graph)" == "$EXPECT" ]] || die "the restored graph has $(count_graph), expected $EXPECT"
done

PEER_SIZE=$(stat -c %s "$WORK/peer.json")
OURS_SIZE=$(find "$WORK/repo" -name '*.zst' -printf '%s\n' | awk '{s+=$1} END {print s}')
# shellcheck disable=SC2016 # markdown code spans, not shell
PEER_BACKUP='`apoc.export.json.all` stream (neo4rs)' PEER_RESTORE='replay of `apoc.export.cypher.all` over Bolt'

cat <<EOF2
Data set: $NODES nodes (3 labels, 5 properties each) and $RELS relationships (2 properties each); Neo4j 5.26.0 Community embedded (scripts/stack.sh); $(nproc) cores; $RUNS runs, median wall time; peak RSS is the maximum over runs. The peer's JSON is uncompressed.

$(bench_header)
$(bench_row backup "$PEER_BACKUP" "${peer_b[*]}" "${ours_b[*]}" "${ours_rss[*]}" "$PEER_SIZE / $OURS_SIZE")
$( ((BACKUP_ONLY)) || bench_row restore "$PEER_RESTORE" "${peer_r[*]}" "${ours_r[*]}" "${ours_rrss[*]}")

All runs: backup peer ${peer_b[*]} / amber-dr ${ours_b[*]}; restore peer ${peer_r[*]:-skipped} / amber-dr ${ours_r[*]:-skipped}.
EOF2
rm -f "$WORK/peer.json" "$WORK/peer.cypher"
