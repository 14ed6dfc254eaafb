#!/usr/bin/env bash
# Benchmark: `amber-dr backup` of a 1 GiB directory of mixed files against
# `tar -cf - DIR | zstd -3 -T0 > out` in the same run, plus restore against
# `zstd -d | tar -x`; then a second backup after 1% of the files changed against restic's
# second `restic backup` (Debian's restic, installed if absent); then the same first backup
# and restore on a directory of 100,000 small files. Reports wall time (median of N runs),
# amber-dr's peak RSS and the bytes stored. The files component uses the chunked format (the
# default; AMBER_DR_BENCH_FILES_FORMAT=tar measures the tar format instead).
#
# Usage: scripts/bench-files.sh [--runs N] [--size-mib M] [--small-files N] [--keep] [--encrypt]
#   --small-files N: the size of the small-files data set (default 100000; 0 skips it).
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
SMALL=100000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --size-mib) SIZE_MIB="$2"; shift 2 ;;
    --small-files) SMALL="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --encrypt) ENCRYPT=1; shift ;;
    *) die "unknown argument: $1" ;;
  esac
done

ensure_cargo
ensure_apt_pkg zstd zstd
ensure_apt_pkg /usr/bin/time time
ensure_apt_pkg restic restic
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
SMALL_DATA="$WORK/data-small-$SMALL"
if [[ "$SMALL" -gt 0 && ! -f "$SMALL_DATA/.complete" ]]; then
  log "generating $SMALL small files in $SMALL_DATA"
  rm -rf "$SMALL_DATA"
  python3 - "$SMALL_DATA" "$SMALL" <<'PY'
import os, random, sys
root, count = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
for i in range(count):
    d = os.path.join(root, f"t{i % 100:02d}", f"b{(i // 100) % 100:02d}")
    os.makedirs(d, exist_ok=True)
    n = rnd.randint(512, 8192)
    with open(os.path.join(d, f"f{i:06d}.dat"), "wb") as f:
        f.write(os.urandom(n // 2) + b"x" * (n - n // 2))
open(os.path.join(root, ".complete"), "w").close()
PY
fi
FILES=$(find "$DATA" -type f | wc -l)
BYTES=$(du -sb "$DATA" | cut -f1)
SMALL_BYTES=$( [[ "$SMALL" -gt 0 ]] && du -sb "$SMALL_DATA" | cut -f1 || echo 0)

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
format = "${AMBER_DR_BENCH_FILES_FORMAT:-chunked}"
TOML

# Restored trees (and the repositories of the first backups): kept until the script ends.
# ext4 does not give a new file an inode deleted within the last minute (five while its
# inode table block is dirty): `recently_deleted()` in
# its inode allocator scans past each one, so the first 100,000 files created after 100,000
# were deleted cost ~0.4 ms of CPU each (measured: `tar -x` of the small set 1.4 s on a quiet
# file system, 47 s right after `rm -rf` of the previous copy; perf: find_get_block_common
# under recently_deleted). A restore timed after another's output was deleted measures that.
OUTS="$WORK/restored"
if [[ -e "$OUTS" ]]; then
  log "removing the restored trees of an earlier run, then waiting 65 s (ext4 inode reuse)"
  rm -rf "$OUTS"; sync; sleep 65
fi
mkdir -p "$OUTS"

# One data set: RUNS × (tar | zstd, amber-dr backup into a new repository, zstd -d | tar -x,
# amber-dr restore into another directory checked with diff -r). Prints the table rows.
bench_set() {
  local data="$1" label="$2" peer_size ours_size
  local peer_b=() ours_b=() ours_rss=() peer_r=() ours_r=() ours_rrss=() repo=""
  sed -i "s|^path = .*|path = \"$data\"|" "$CFG"
  # Every timed command is preceded by `settle` (lib.sh): dirty pages written back, its input
  # read once, so that both tools read from memory alike.
  for run in $(seq 1 "$RUNS"); do
    log "$label run $run/$RUNS: tar | zstd -3 -T0"
    rm -f "$WORK/peer.tar.zst"
    settle "$data"
    time_cmd "$WORK/t" bash -c "tar -cf - -C '$data' . | zstd -3 -T0 -q -o '$WORK/peer.tar.zst'"
    peer_b+=("$(cut -d' ' -f1 "$WORK/t")")

    log "$label run $run/$RUNS: amber-dr backup"
    # A new repository, the earlier ones kept until the end (as the restored trees, below:
    # creating files right after deleting many is slow on ext4, and would be timed here).
    local repo="$OUTS/repo-${label// /-}-$run"
    sed -i "s|^url = .*|url = \"$repo\"|" "$CFG"
    settle "$data"
    time_cmd "$WORK/t" "$BIN" -q --config "$CFG" backup >/dev/null
    ours_b+=("$(cut -d' ' -f1 "$WORK/t")"); ours_rss+=("$(cut -d' ' -f2 "$WORK/t")")

    # Restored trees are kept until the end (under $OUTS): no large deletion comes
    # before a timed restore.
    local peer_out="$OUTS/${label// /-}-$run-peer" ours_out="$OUTS/${label// /-}-$run-amber-dr"
    log "$label run $run/$RUNS: zstd -d | tar -x"
    mkdir -p "$peer_out"
    settle "$WORK/peer.tar.zst"
    time_cmd "$WORK/t" bash -c "zstd -d -q -c '$WORK/peer.tar.zst' | tar -xf - -C '$peer_out'"
    peer_r+=("$(cut -d' ' -f1 "$WORK/t")")

    log "$label run $run/$RUNS: amber-dr restore (into another directory)"
    settle "$repo"
    time_cmd "$WORK/t" "$BIN" -q --config "$CFG" restore latest --yes --no-safety-backup --target "uploads=$ours_out" >/dev/null
    ours_r+=("$(cut -d' ' -f1 "$WORK/t")"); ours_rrss+=("$(cut -d' ' -f2 "$WORK/t")")
    diff -r "$data" "$ours_out" >/dev/null || die "restored tree differs from the source"
  done
  peer_size=$(stat -c %s "$WORK/peer.tar.zst")
  ours_size=$(du -sb "$repo" | cut -f1)
  sed -i "s|^url = .*|url = \"$REPO\"|" "$CFG"
  bench_row "backup ($label)" "$PEER_BACKUP" "${peer_b[*]}" "${ours_b[*]}" "${ours_rss[*]}" "$peer_size / $ours_size"
  bench_row "restore ($label)" "$PEER_RESTORE" "${peer_r[*]}" "${ours_r[*]}" "${ours_rrss[*]}"
  echo "All runs ($label): backup peer ${peer_b[*]} / amber-dr ${ours_b[*]}; restore peer ${peer_r[*]} / amber-dr ${ours_r[*]}." >"$WORK/runs-$label"
}

# Change 1% of the files of DATA (every 100th in sorted order, offset by the run): a small
# file is rewritten with new content of the same length, a large one (over 1 MiB) gets 4 KiB
# overwritten in its middle (an edit). The cached data set keeps these changes.
change_one_percent() {
  python3 - "$1" "$2" <<'PY'
import os, sys
root, run = sys.argv[1], int(sys.argv[2])
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if not f.startswith("."))
for p in files[run % 100::100]:
    n = os.path.getsize(p)
    if n > 1 << 20:
        with open(p, "r+b") as f:
            f.seek(n // 2)
            f.write(os.urandom(4096))
    else:
        with open(p, "wb") as f:
            f.write(os.urandom(n))
PY
}

# shellcheck disable=SC2016 # markdown code spans, not shell
PEER_BACKUP='`tar -cf - DIR \| zstd -3 -T0`' PEER_RESTORE='`zstd -d \| tar -x`'
ROWS=$(bench_set "$DATA" mixed)

# The second backup after 1% of the files changed, against restic's second backup. Both
# repositories hold the first backup of the same data; restic's password is a fixed value.
export RESTIC_PASSWORD="amber-dr-bench" RESTIC_REPOSITORY="$WORK/restic"
peer_i=(); ours_i=(); ours_irss=(); peer_grow=""; ours_grow=""
for run in $(seq 1 "$RUNS"); do
  rm -rf "$RESTIC_REPOSITORY" "$REPO"
  log "incremental run $run/$RUNS: first backups (not timed)"
  restic init -q >/dev/null
  restic backup -q "$DATA" >/dev/null
  "$BIN" -q --config "$CFG" backup >/dev/null
  change_one_percent "$DATA" "$run"
  tar -cf - -C "$DATA" . | cat >/dev/null
  r0=$(du -sb "$RESTIC_REPOSITORY" | cut -f1); o0=$(du -sb "$REPO" | cut -f1)
  log "incremental run $run/$RUNS: restic backup (second)"
  settle "$DATA"
  time_cmd "$WORK/t" restic backup -q "$DATA"
  peer_i+=("$(cut -d' ' -f1 "$WORK/t")")
  log "incremental run $run/$RUNS: amber-dr backup (second)"
  settle "$DATA"
  time_cmd "$WORK/t" "$BIN" -q --config "$CFG" backup >/dev/null
  ours_i+=("$(cut -d' ' -f1 "$WORK/t")"); ours_irss+=("$(cut -d' ' -f2 "$WORK/t")")
  peer_grow="$(($(du -sb "$RESTIC_REPOSITORY" | cut -f1) - r0)) of $r0"
  ours_grow="$(($(du -sb "$REPO" | cut -f1) - o0)) of $o0"
done
# shellcheck disable=SC2016 # markdown code spans, not shell
INC_ROW=$(bench_row "second backup, 1% of files changed" '`restic backup` (second run)' "${peer_i[*]}" "${ours_i[*]}" "${ours_irss[*]}" "$peer_grow / $ours_grow")

SMALL_ROWS=""
if [[ "$SMALL" -gt 0 ]]; then
  SMALL_ROWS=$(bench_set "$SMALL_DATA" "$SMALL small files")
fi

cat <<EOF2
Data sets: $FILES files, $BYTES bytes (mixed); $SMALL small files, $SMALL_BYTES bytes ($(nproc) cores, $(uname -m)); $RUNS runs, median wall time; repository: $(bench_encryption_label "$ENCRYPT") (restic's is always encrypted); peak RSS is the maximum over runs; the stored bytes of the incremental row are what the second backup added to the repository, of its size after the first.

$(bench_header)
$ROWS
$INC_ROW
$SMALL_ROWS

$(cat "$WORK"/runs-* 2>/dev/null)
All runs (second backup): restic ${peer_i[*]} / amber-dr ${ours_i[*]}.
EOF2

rm -rf "$OUTS"
if [[ -z "$KEEP" ]]; then
  rm -rf "$REPO" "$RESTIC_REPOSITORY" "$WORK/peer.tar.zst" "$WORK"/runs-*
fi
