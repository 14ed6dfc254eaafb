#!/usr/bin/env bash
# Benchmark: the `milvus` driver on one collection of N entities (default 100,000) with an Int64
# primary key, a 768-dim float vector, a VarChar and a JSON field (FLAT index, loaded), against
# a pymilvus script that reads the collection with `query_iterator` and inserts every batch into
# a new collection, in the same run:
#   - `amber-dr backup --only milvus` against the peer's iterate phase (time spent in the
#     iterator's `next()`, i.e. the queries and pymilvus's decoding of the rows);
#   - `amber-dr restore --target milvus=NEW` against the peer's insert phase (creating the new
#     collection, every `insert()` and the final `flush()`).
# Reports wall times (median of N runs) and amber-dr's peak RSS (/usr/bin/time -f %M).
# The collection is generated once and kept in the stack's Milvus (regenerated when its size
# differs).
#
# Usage: scripts/bench-milvus.sh [--runs N] [--entities N] [--batch N] [--entities-path]
#                                [--work-dir DIR]
#   --batch: the peer's query_iterator batch (= its insert batch); default 1000, the driver's
#            default page_rows.
#   --entities-path: configure no `storage`, so the driver exports entities with queries
#            (the default configures Milvus's bucket: segment files and the backup import).
#   --work-dir: where the config and the repository go (default $AMBER_DR_BENCH_DIR, else
#            ~/.cache/amber-dr/bench-milvus); give each concurrent run its own.
# The binary is taken from $CARGO_TARGET_DIR (default <repo>/target)/release.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$AMBER_DR_REPO_ROOT"

RUNS=2
ENTITIES=100000
BATCH=1000
DIM=768
STORAGE=1
WORK="${AMBER_DR_BENCH_DIR:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --entities) ENTITIES="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --entities-path) STORAGE=""; shift ;;
    --work-dir) WORK="$2"; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done

ensure_cargo
ensure_apt_pkg /usr/bin/time time
scripts/stack.sh up
eval "$(scripts/stack.sh env)"
SRC=bench_milvus_src
PEER_DST=bench_milvus_peer
OURS_DST=bench_milvus_ours

# mpy COMMAND ARGS: collection chores and the peer, with pymilvus.
mpy() {
  "$AMBER_DR_MILVUS_PYTHON" - "$@" <<'PY'
import json, os, sys, time
import numpy as np
from pymilvus import (Collection, CollectionSchema, DataType, FieldSchema, connections,
                      utility)
ep = os.environ["AMBER_DR_MILVUS_ENDPOINT"].removeprefix("http://")
host, port = ep.rsplit(":", 1)
connections.connect(host=host, port=port, timeout=60)
cmd = sys.argv[1]

def schema(dim):
    return CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True, auto_id=False),
        FieldSchema("vec", DataType.FLOAT_VECTOR, dim=dim),
        FieldSchema("title", DataType.VARCHAR, max_length=512),
        FieldSchema("doc", DataType.JSON),
    ], description="amber-dr benchmark")

def drop(name):
    if utility.has_collection(name):
        utility.drop_collection(name)

if cmd == "count":
    name = sys.argv[2]
    if not utility.has_collection(name):
        print(-1)
    else:
        c = Collection(name)
        c.load()
        print(c.query("", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"])
elif cmd == "drop":
    drop(sys.argv[2])
elif cmd == "generate":
    name, n, dim = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    drop(name)
    c = Collection(name, schema(dim), consistency_level="Strong", shards_num=1)
    rng = np.random.default_rng(42)
    step = 2000
    for start in range(0, n, step):
        ids = list(range(start, min(n, start + step)))
        vecs = rng.random((len(ids), dim), dtype=np.float32).tolist()
        titles = [f"document {i}: " + "lorem ipsum dolor sit amet " * (i % 5 + 1) for i in ids]
        docs = [{"n": i, "tags": ["a", "b", str(i % 7)], "source": "bench", "score": i / 3}
                for i in ids]
        c.insert([ids, vecs, titles, docs])
    c.flush()
    c.create_index("vec", {"index_type": "FLAT", "metric_type": "L2", "params": {}},
                   index_name="vec_idx")
    c.load()
elif cmd == "peer":
    # query_iterator over SRC, every batch inserted into DST; time per phase.
    src, dst, batch = sys.argv[2], sys.argv[3], int(sys.argv[4])
    drop(dst)
    s = Collection(src)
    t_insert = 0.0
    t0 = time.monotonic()
    d = Collection(dst, s.schema, consistency_level="Strong", shards_num=1)
    t_insert += time.monotonic() - t0
    it = s.query_iterator(batch_size=batch, output_fields=["id", "vec", "title", "doc"])
    t_iter, rows = 0.0, 0
    while True:
        t0 = time.monotonic()
        page = it.next()
        t_iter += time.monotonic() - t0
        if not page:
            break
        t0 = time.monotonic()
        d.insert(page)
        t_insert += time.monotonic() - t0
        rows += len(page)
    it.close()
    t0 = time.monotonic()
    d.flush()
    t_insert += time.monotonic() - t0
    print(f"{t_iter:.2f} {t_insert:.2f} {rows}")
elif cmd == "same":
    # B holds exactly A's ids, and every field of every 10th entity equals A's.
    a, b = Collection(sys.argv[2]), Collection(sys.argv[3])
    for c in (a, b):
        c.load()
    def ids(c):
        out = []
        for page in iter(c.query_iterator(batch_size=16384, output_fields=["id"]).next, []):
            out.extend(r["id"] for r in page)
        return sorted(out)
    ia = ids(a)
    if ia != ids(b):
        sys.exit(f"{sys.argv[3]} does not hold the ids of {sys.argv[2]}")
    sample = ia[::10]
    for k in range(0, len(sample), 500):
        expr = f"id in {sample[k:k + 500]}"
        ra = sorted(a.query(expr, output_fields=["*"]), key=lambda r: r["id"])
        rb = sorted(b.query(expr, output_fields=["*"]), key=lambda r: r["id"])
        if ra != rb or len(ra) != len(sample[k:k + 500]):
            sys.exit(f"{sys.argv[3]} differs from {sys.argv[2]} in ids {sample[k]}..")
    print(len(ia))
else:
    sys.exit(f"unknown command {cmd}")
PY
}

if [[ "$(mpy count "$SRC")" != "$ENTITIES" ]]; then
  log "generating $SRC: $ENTITIES entities, ${DIM}-dim float vector, VarChar, JSON (first time only)"
  t0=$SECONDS
  mpy generate "$SRC" "$ENTITIES" "$DIM"
  log "generated in $((SECONDS - t0)) s"
fi
[[ "$(mpy count "$SRC")" == "$ENTITIES" ]] || die "$SRC does not hold $ENTITIES entities"

log "building amber-dr (release)"
cargo build --release --locked -p amber-dr-cli >&2
BIN="${CARGO_TARGET_DIR:-$AMBER_DR_REPO_ROOT/target}/release/amber-dr"

[[ -n "$WORK" ]] || WORK="$(amber_cache_dir)/bench-milvus"
mkdir -p "$WORK"
CFG="$WORK/amber-dr.toml"
cat >"$CFG" <<TOML
[repository]
url = "$WORK/repo"

[components.milvus]
kind = "milvus"
endpoint = "$AMBER_DR_MILVUS_ENDPOINT"
collections = ["$SRC"]
TOML
if [[ -n "$STORAGE" ]]; then
  cat >>"$CFG" <<TOML

[components.milvus.storage]
endpoint = "$AMBER_DR_S3_ENDPOINT"
bucket = "$AMBER_DR_MILVUS_BUCKET"
access_key = "$AMBER_DR_S3_ACCESS_KEY"
secret_key = "\${AMBER_DR_S3_SECRET_KEY}"
TOML
fi

peer_b=(); ours_b=(); ours_rss=(); peer_r=(); ours_r=(); ours_rrss=()
for run in $(seq 1 "$RUNS"); do
  log "run $run/$RUNS: pymilvus query_iterator -> insert into $PEER_DST (batch $BATCH)"
  read -r it ins rows < <(mpy peer "$SRC" "$PEER_DST" "$BATCH")
  [[ "$rows" == "$ENTITIES" ]] || die "the peer copied $rows entities, expected $ENTITIES"
  peer_b+=("$it"); peer_r+=("$ins")
  mpy drop "$PEER_DST"

  log "run $run/$RUNS: amber-dr backup --only milvus"
  rm -rf "$WORK/repo"
  time_cmd "$WORK/t" "$BIN" -q --config "$CFG" backup --only milvus >/dev/null
  ours_b+=("$(cut -d' ' -f1 "$WORK/t")"); ours_rss+=("$(cut -d' ' -f2 "$WORK/t")")

  log "run $run/$RUNS: amber-dr restore --target milvus=$OURS_DST"
  mpy drop "$OURS_DST"
  time_cmd "$WORK/t" "$BIN" -q --config "$CFG" restore latest --yes --no-safety-backup --target "milvus=$OURS_DST" >/dev/null
  ours_r+=("$(cut -d' ' -f1 "$WORK/t")"); ours_rrss+=("$(cut -d' ' -f2 "$WORK/t")")
  if [[ "$run" == 1 ]]; then
    log "checking that $OURS_DST holds exactly the entities of $SRC (pymilvus)"
    [[ "$(mpy same "$SRC" "$OURS_DST")" == "$ENTITIES" ]] || die "$OURS_DST differs from $SRC"
  fi
  mpy drop "$OURS_DST"
done

OURS_SIZE=$(find "$WORK/repo" -name '*.zst' -printf '%s\n' | awk '{s+=$1} END {print s}')
# shellcheck disable=SC2016 # markdown code spans, not shell
PEER_BACKUP='pymilvus `query_iterator` (iterate phase)' PEER_RESTORE='pymilvus `insert` (insert phase)'

cat <<EOF2
Data set: collection $SRC, $ENTITIES entities (Int64 key, ${DIM}-dim float vector, VarChar, JSON), FLAT index, loaded; Milvus 2.3.5 standalone (scripts/stack.sh); $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $RUNS runs, median wall time; peak RSS is the maximum over runs. Peer batch: $BATCH. Driver path: $([[ -n "$STORAGE" ]] && echo "segment files (storage configured)" || echo "entities (no storage)").

$(bench_header)
$(bench_row "backup (export)" "$PEER_BACKUP" "${peer_b[*]}" "${ours_b[*]}" "${ours_rss[*]}" "- / $OURS_SIZE")
$(bench_row "restore (new collection)" "$PEER_RESTORE" "${peer_r[*]}" "${ours_r[*]}" "${ours_rrss[*]}")

All runs: backup peer ${peer_b[*]} / amber-dr ${ours_b[*]}; restore peer ${peer_r[*]} / amber-dr ${ours_r[*]}.
EOF2
