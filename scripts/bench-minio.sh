#!/usr/bin/env bash
# Benchmark: `amber-dr backup --only minio` of one bucket on the stack's S3 server (s3s-fs):
# N objects from 1 KB to 5 MB (default 10,000, about 2 GB), against `rclone copy` (Debian's
# rclone) of the same bucket to a local folder, in the same run; then a second backup after
# changing 1% of the objects; then restore into a new bucket against `rclone copy` back.
# Reports wall times (median of N runs) and amber-dr's peak RSS.
#
# Usage: scripts/bench-minio.sh [--runs N] [--objects N]
#
# The S3 server is the one of `scripts/stack.sh up` (started if needed), unless
# AMBER_DR_S3_ENDPOINT, AMBER_DR_S3_ACCESS_KEY, AMBER_DR_S3_SECRET_KEY and AMBER_DR_S3_PYTHON
# (a Python with boto3) are already set: then that server is used as it is.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$AMBER_DR_REPO_ROOT"

RUNS=1
OBJECTS=10000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --objects) OBJECTS="$2"; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done

ensure_cargo
ensure_apt_pkg /usr/bin/time time
ensure_apt_pkg rclone
if [[ -z "${AMBER_DR_S3_ENDPOINT:-}" || -z "${AMBER_DR_S3_PYTHON:-}" ]]; then
  scripts/stack.sh up
  eval "$(scripts/stack.sh env)"
fi
AMBER_DR_S3_REGION="${AMBER_DR_S3_REGION:-us-east-1}"
PY="$AMBER_DR_S3_PYTHON"
BUCKET="bench-minio-$OBJECTS"

# rclone's remote `s3:` from the environment (no config file). rclone runs without
# AWS_CA_BUNDLE: its SDK refuses a custom CA bundle with its own HTTP transport.
export RCLONE_CONFIG_S3_TYPE=s3 RCLONE_CONFIG_S3_PROVIDER=Other
export RCLONE_CONFIG_S3_ENDPOINT="$AMBER_DR_S3_ENDPOINT" RCLONE_CONFIG_S3_REGION="$AMBER_DR_S3_REGION"
export RCLONE_CONFIG_S3_ACCESS_KEY_ID="$AMBER_DR_S3_ACCESS_KEY"
export RCLONE_CONFIG_S3_SECRET_ACCESS_KEY="$AMBER_DR_S3_SECRET_KEY"

# s3py COMMAND ARGS: bucket chores with boto3 (fill, change 1%, empty, count).
s3py() {
  "$PY" - "$@" <<'PY'
import os, random, sys
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["AMBER_DR_S3_ENDPOINT"],
    aws_access_key_id=os.environ["AMBER_DR_S3_ACCESS_KEY"],
    aws_secret_access_key=os.environ["AMBER_DR_S3_SECRET_KEY"], region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, max_pool_connections=16,
                  request_checksum_calculation="when_required"))
cmd, bucket = sys.argv[1], sys.argv[2]
def keys():
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            yield o["Key"], o["Size"]
def size_of(i):
    r = random.Random(i)
    # 97% from 1 KB to 256 KB, 3% from 1 MB to 5 MB: about 2 GB for 10,000 objects.
    return r.randint(1024, 256 * 1024) if i % 33 else r.randint(1 << 20, 5 << 20)
def body(n):
    # Half random (media), half text-like (compressible), like a document store.
    return os.urandom(n // 2) + (b"amber document line\n" * (n // 40 + 1))[: n - n // 2]
if cmd == "count":
    try:
        ks = list(keys()); print(len(ks), sum(s for _, s in ks))
    except Exception:
        print(0, 0)
elif cmd == "fill":
    n = int(sys.argv[3])
    try: s3.create_bucket(Bucket=bucket)
    except Exception: pass
    with ThreadPoolExecutor(8) as p:
        list(p.map(lambda i: s3.put_object(Bucket=bucket, Key=f"docs/{i % 100:02}/{i:06}.bin", Body=body(size_of(i))), range(n)))
elif cmd == "change":
    ks = sorted(k for k, _ in keys())[::100]
    with ThreadPoolExecutor(8) as p:
        list(p.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=body(50_000)), ks))
    print(len(ks))
elif cmd == "drop":
    try: ks = [k for k, _ in keys()]
    except Exception: sys.exit(0)
    for i in range(0, len(ks), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in ks[i:i + 1000]]})
    s3.delete_bucket(Bucket=bucket)
PY
}

# timed WHAT CMD...: time_cmd into $WORK/t, and log the wall time and peak RSS at once (so
# that an interrupted run still shows its figures).
timed() {
  local what="$1"
  shift
  time_cmd "$WORK/t" "$@"
  log "$what: $(cut -d' ' -f1 "$WORK/t") s, peak RSS $(cut -d' ' -f2 "$WORK/t") KiB"
}

read -r have _ < <(s3py count "$BUCKET")
if [[ "$have" != "$OBJECTS" ]]; then
  log "filling s3://$BUCKET with $OBJECTS objects (first time only)"
  s3py drop "$BUCKET"
  s3py fill "$BUCKET" "$OBJECTS"
fi
read -r _ SIZE < <(s3py count "$BUCKET")

log "building amber-dr (release)"
cargo build --release --locked -p amber-dr-cli >&2
BIN="$AMBER_DR_REPO_ROOT/target/release/amber-dr"

WORK="$(amber_cache_dir)/bench-minio"
mkdir -p "$WORK"
CFG="$WORK/amber-dr.toml"
cat >"$CFG" <<TOML
[repository]
url = "$WORK/repo"

[components.minio]
kind = "minio"
endpoint = "$AMBER_DR_S3_ENDPOINT"
access_key = "\${AMBER_DR_S3_ACCESS_KEY}"
secret_key = "\${AMBER_DR_S3_SECRET_KEY}"
buckets = ["$BUCKET"]
TOML

peer_b=(); ours_b=(); ours_rss=(); ours_i=(); ours_irss=(); peer_r=(); ours_r=(); ours_rrss=()
for run in $(seq 1 "$RUNS"); do
  log "run $run/$RUNS: rclone copy s3:$BUCKET DIR"
  rm -rf "$WORK/rclone"
  timed "rclone backup" env -u AWS_CA_BUNDLE rclone copy --transfers 8 --checkers 16 "s3:$BUCKET" "$WORK/rclone"
  peer_b+=("$(cut -d' ' -f1 "$WORK/t")")

  log "run $run/$RUNS: amber-dr backup --only minio"
  rm -rf "$WORK/repo"
  timed "amber-dr backup" "$BIN" -q --config "$CFG" backup --only minio >/dev/null
  ours_b+=("$(cut -d' ' -f1 "$WORK/t")"); ours_rss+=("$(cut -d' ' -f2 "$WORK/t")")

  log "run $run/$RUNS: change 1% of the objects, amber-dr backup again"
  s3py change "$BUCKET" >/dev/null
  timed "amber-dr second backup" "$BIN" -q --config "$CFG" backup --only minio >/dev/null
  ours_i+=("$(cut -d' ' -f1 "$WORK/t")"); ours_irss+=("$(cut -d' ' -f2 "$WORK/t")")

  log "run $run/$RUNS: rclone copy DIR s3:NEW-BUCKET"
  s3py drop "$BUCKET-peer"
  timed "rclone restore" env -u AWS_CA_BUNDLE rclone copy --transfers 8 --checkers 16 "$WORK/rclone" "s3:$BUCKET-peer"
  peer_r+=("$(cut -d' ' -f1 "$WORK/t")")
  s3py drop "$BUCKET-peer"

  log "run $run/$RUNS: amber-dr restore (into a new bucket)"
  s3py drop "$BUCKET-ours"
  timed "amber-dr restore" "$BIN" -q --config "$CFG" restore latest --yes --no-safety-backup --target "minio=$BUCKET-ours" >/dev/null
  ours_r+=("$(cut -d' ' -f1 "$WORK/t")"); ours_rrss+=("$(cut -d' ' -f2 "$WORK/t")")
  read -r got _ < <(s3py count "$BUCKET-ours")
  [[ "$got" == "$OBJECTS" ]] || die "restored bucket has $got objects, expected $OBJECTS"
  s3py drop "$BUCKET-ours"
done

PEER_SIZE=$(du -sb "$WORK/rclone" | cut -f1)
OURS_SIZE=$(find "$WORK/repo" -name '*.zst' -printf '%s\n' | awk '{s+=$1} END {print s}')
rm -rf "$WORK/rclone"

# shellcheck disable=SC2016 # markdown code spans, not shell
PEER_BACKUP='`rclone copy s3:BUCKET DIR`' PEER_RESTORE='`rclone copy DIR s3:BUCKET`'

cat <<EOF2
Data set: one bucket of $OBJECTS objects, $SIZE bytes (97% of 1-256 KB, 3% of 1-5 MB; half random, half text) on s3s-fs; $(nproc) cores; $RUNS runs, median wall time; peak RSS is the maximum over runs.

$(bench_header)
$(bench_row "backup (first)" "$PEER_BACKUP" "${peer_b[*]}" "${ours_b[*]}" "${ours_rss[*]}" "$PEER_SIZE / $OURS_SIZE")
$(bench_row "backup after changing 1%" '(first backup)' "${ours_b[*]}" "${ours_i[*]}" "${ours_irss[*]}")
$(bench_row "restore (new bucket)" "$PEER_RESTORE" "${peer_r[*]}" "${ours_r[*]}" "${ours_rrss[*]}")

All runs: backup peer ${peer_b[*]} / amber-dr ${ours_b[*]}; second backup ${ours_i[*]}; restore peer ${peer_r[*]} / amber-dr ${ours_r[*]}.
EOF2
