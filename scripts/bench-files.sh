#!/usr/bin/env bash
# Benchmark: `amber-dr backup` of a 1 GiB directory of mixed files against
# `tar -cf - DIR | zstd -3 -T0 > out` in the same run, plus restore against
# `zstd -d | tar -x`. Reports wall time (median of N runs) and amber-dr's peak RSS.
#
# Usage: scripts/bench-files.sh [--runs N] [--size-mib M] [--keep] [--encrypt]
#   --encrypt: an encrypted repository (`[repository.encryption] passphrase`, from
#              AMBER_DR_BENCH_PASSPHRASE, set to a fixed benchmark value if unset).
# Work directory (data set, repository): AMBER_DR_BENCH_DIR if set (e.g. under your
# worktree, so that parallel runs do not collide), else ~/.cache/amber-dr/bench. The binary
# is ${CARGO_TARGET_DIR:-target}/release/amber-dr.
# Prints a markdown table on stdout (paste it into docs/benchmarks.md).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$AMBER_DR_REPO_ROOT"

RUNS=3
SIZE_MIB=1024
KEEP=""
ENCRYPT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --size-mib) SIZE_MIB="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --encrypt) ENCRYPT=1; shift ;;
    *) die "unknown argument: $1" ;;
  esac
done

ensure_cargo
ensure_apt_pkg zstd zstd
ensure_apt_pkg /usr/bin/time time
need_cmd python3 || die "python3 is needed to generate the data set"

WORK="${AMBER_DR_BENCH_DIR:-$(amber_cache_dir)/bench}"
DATA="$WORK/data-${SIZE_MIB}m"
mkdir -p "$WORK"

if [[ ! -f "$DATA/.complete" ]]; then
  log "generating ${SIZE_MIB} MiB of mixed files in $DATA"
  rm -rf "$DATA"
  python3 - "$DATA" "$SIZE_MIB" <<'PY'
import os, random, sys
root, size_mib = sys.argv[1], int(sys.argv[2])
total = size_mib * 1024 * 1024
rnd = random.Random(42)
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 10))) for _ in range(5000)]
def text(n):
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rnd.choice(words) for _ in range(64)) + b"\n"
    return bytes(out[:n])
written = 0
# A few large files (40%): half incompressible (media), half text (logs, exports).
large = int(total * 0.4)
for i in range(4):
    d = os.path.join(root, "large")
    os.makedirs(d, exist_ok=True)
    n = large // 4
    with open(os.path.join(d, f"big-{i}.bin"), "wb") as f:
        left = n
        while left:
            c = min(left, 8 << 20)
            f.write(os.urandom(c) if i % 2 == 0 else text(c))
            left -= c
    written += n
# Many small files (60%): 1-128 KiB, 70% incompressible (PDFs, images), 30% text.
i = 0
while written < total:
    n = min(total - written, rnd.randint(1024, 128 * 1024))
    d = os.path.join(root, f"tenant-{i % 20:02d}", f"batch-{(i // 20) % 50:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"doc-{i:06d}.dat"), "wb") as f:
        f.write(os.urandom(n) if rnd.random() < 0.7 else text(n))
    written += n
    i += 1
open(os.path.join(root, ".complete"), "w").close()
print(f"{i} small files + 4 large, {written} bytes", file=sys.stderr)
PY
fi
rm -f "$DATA/.complete.tmp"
FILES=$(find "$DATA" -type f | wc -l)
BYTES=$(du -sb "$DATA" | cut -f1)

log "building amber-dr (release)"
cargo build --release --locked -p amber-dr-cli >&2
BIN="${CARGO_TARGET_DIR:-$AMBER_DR_REPO_ROOT/target}/release/amber-dr"

REPO="$WORK/repo"
CFG="$WORK/amber-dr.toml"
bench_encryption_env "$ENCRYPT"
cat >"$CFG" <<TOML
[repository]
url = "$REPO"
$(bench_encryption_toml "$ENCRYPT")

[components.uploads]
kind = "files"
path = "$DATA"
TOML

# Warm the page cache so that both tools read from memory alike.
tar -cf - -C "$DATA" . >/dev/null

peer_b=(); ours_b=(); ours_rss=(); peer_r=(); ours_r=(); ours_rrss=()
for run in $(seq 1 "$RUNS"); do
  log "run $run/$RUNS: tar | zstd -3 -T0"
  rm -f "$WORK/peer.tar.zst"
  time_cmd "$WORK/t" bash -c "tar -cf - -C '$DATA' . | zstd -3 -T0 -q -o '$WORK/peer.tar.zst'"
  peer_b+=("$(cut -d' ' -f1 "$WORK/t")")

  log "run $run/$RUNS: amber-dr backup"
  rm -rf "$REPO"
  time_cmd "$WORK/t" "$BIN" -q --config "$CFG" backup >/dev/null
  ours_b+=("$(cut -d' ' -f1 "$WORK/t")"); ours_rss+=("$(cut -d' ' -f2 "$WORK/t")")

  log "run $run/$RUNS: zstd -d | tar -x"
  rm -rf "$WORK/peer-restore" && mkdir -p "$WORK/peer-restore"
  time_cmd "$WORK/t" bash -c "zstd -d -q -c '$WORK/peer.tar.zst' | tar -xf - -C '$WORK/peer-restore'"
  peer_r+=("$(cut -d' ' -f1 "$WORK/t")")
  rm -rf "$WORK/peer-restore"

  log "run $run/$RUNS: amber-dr restore (into another directory)"
  rm -rf "$WORK/ours-restore"
  time_cmd "$WORK/t" "$BIN" -q --config "$CFG" restore latest --yes --no-safety-backup --target "uploads=$WORK/ours-restore" >/dev/null
  ours_r+=("$(cut -d' ' -f1 "$WORK/t")"); ours_rrss+=("$(cut -d' ' -f2 "$WORK/t")")
  diff -r "$DATA" "$WORK/ours-restore" >/dev/null || die "restored tree differs from the source"
  rm -rf "$WORK/ours-restore"
done

PEER_SIZE=$(stat -c %s "$WORK/peer.tar.zst")
# shellcheck disable=SC2016 # markdown code spans, not shell
PEER_BACKUP='`tar -cf - DIR \| zstd -3 -T0`' PEER_RESTORE='`zstd -d \| tar -x`'
OURS_SIZE=$(find "$REPO" -name '*.zst' -printf '%s\n' | awk '{s+=$1} END {print s}')

cat <<EOF2
Data set: $FILES files, $BYTES bytes ($(nproc) cores, $(uname -m)); $RUNS runs, median wall time; repository: $(bench_encryption_label "$ENCRYPT"); peak RSS is the maximum over runs.

$(bench_header)
$(bench_row backup "$PEER_BACKUP" "${peer_b[*]}" "${ours_b[*]}" "${ours_rss[*]}" "$PEER_SIZE / $OURS_SIZE")
$(bench_row restore "$PEER_RESTORE" "${peer_r[*]}" "${ours_r[*]}" "${ours_rrss[*]}")

All runs: backup peer ${peer_b[*]} / amber-dr ${ours_b[*]}; restore peer ${peer_r[*]} / amber-dr ${ours_r[*]}.
EOF2

if [[ -z "$KEEP" ]]; then
  rm -rf "$REPO" "$WORK/peer.tar.zst"
fi
