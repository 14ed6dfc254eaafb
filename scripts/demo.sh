#!/usr/bin/env bash
# The main job, end to end: local stack up, sample data, backup, list, verify, disaster,
# restore, compare — with a tool outside amber-dr doing the comparing.
#
# Usage: scripts/demo.sh [--s3]     (--s3: keep the repository in the stack's S3 server)
# Work files go to ./demo-work (ignored by git); it is recreated on every run.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$AMBER_DR_REPO_ROOT"

USE_S3=""
[[ "${1:-}" == "--s3" ]] && USE_S3=1

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

step "1. local stack up (installs servers on first use)"
scripts/stack.sh up
eval "$(scripts/stack.sh env)"

step "2. build amber-dr"
ensure_cargo
cargo build --locked -p amber-dr-cli >&2
AMBER="$AMBER_DR_REPO_ROOT/target/debug/amber-dr"

WORK="$AMBER_DR_REPO_ROOT/demo-work"
if [[ -d "$WORK" ]]; then chmod -R u+rwX "$WORK"; rm -rf "$WORK"; fi
mkdir -p "$WORK"
cd "$WORK"

step "3. configuration (amber-dr init, then pointed at the demo's data)"
"$AMBER" init >&2
if [[ -n "$USE_S3" ]]; then
  REPO_TOML=$(cat <<TOML
[repository]
url = "s3://$AMBER_DR_S3_BUCKET/demo-$(date +%s)"
endpoint = "\${AMBER_DR_S3_ENDPOINT}"
access_key_id = "\${AMBER_DR_S3_ACCESS_KEY}"
secret_access_key = "\${AMBER_DR_S3_SECRET_KEY}"
region = "\${AMBER_DR_S3_REGION}"
TOML
)
else
  REPO_TOML=$'[repository]\nurl = "./backups"'
fi
cat > amber-dr.toml <<TOML
# Demo config: the uploads directory (the other stores join as their drivers land).
$REPO_TOML

[components.uploads]
kind = "files"
path = "./uploads"
TOML
cat amber-dr.toml >&2

step "4. sample data: uploads with the awkward cases"
mkdir -p uploads/tenant-1/docs uploads/tenant-2 "uploads/empty dir/nested"
printf 'quarterly report\n' > uploads/tenant-1/docs/report.txt
head -c 5000000 /dev/urandom > uploads/tenant-1/docs/scan.pdf
printf 'unicode name\n' > "uploads/tenant-2/résumé 🎉.txt"
printf 'latin-1 name\n' > "uploads/tenant-2/$(printf 'caf\xe9').txt"
: > uploads/tenant-2/empty.txt
ln -s docs/report.txt uploads/tenant-1/latest-report
ln -s /nonexistent/target uploads/dangling-link
mkdir -p "uploads/$(printf 'd%.0s' {1..90})"
printf 'long path\n' > "uploads/$(printf 'd%.0s' {1..90})/$(printf 'f%.0s' {1..90}).txt"
chmod 0640 uploads/tenant-1/docs/report.txt
chmod 0755 uploads/tenant-2/empty.txt
touch -h -d '2001-02-03 04:05:06.123456789' uploads/tenant-1/latest-report
touch -d '1999-12-31 23:59:59.5' uploads/tenant-2/empty.txt
cp -a uploads original-uploads
listing() { (cd "$1" && find . -printf '%y %m %T@ %s %l %P\n' | LC_ALL=C sort); }
find uploads | head -20 >&2

step "5. amber-dr doctor"
"$AMBER" doctor

step "6. amber-dr backup"
ID=$("$AMBER" backup --tag demo | tail -1)
echo "backup id: $ID" >&2

step "7. amber-dr list / show"
"$AMBER" list
"$AMBER" show "$ID"

step "8. amber-dr verify (full)"
"$AMBER" verify "$ID"

step "9. disaster: files deleted, overwritten, added"
rm -rf uploads/tenant-1
printf 'ransom note\n' > uploads/tenant-2/empty.txt
printf 'junk\n' > uploads/new-junk.txt
if diff -r original-uploads uploads >/dev/null 2>&1; then die "the disaster did not change anything"; fi
echo "uploads now differs from the original" >&2

step "10. amber-dr restore --dry-run (changes nothing)"
"$AMBER" restore "$ID" --dry-run

step "11. amber-dr restore --yes (takes a safety backup of the damaged state first)"
"$AMBER" restore "$ID" --yes

step "12. compare with tools outside amber-dr: diff -r, and modes/mtimes/links listing"
diff -r --no-dereference original-uploads uploads
diff <(listing original-uploads) <(listing uploads)
echo "restored uploads are identical to the original (content, modes, mtimes, symlinks)" >&2

step "13. the repository now holds the backup and the safety backup"
"$AMBER" list

printf '\n\033[1;32mdemo passed\033[0m: backup %s restored and verified identical\n' "$ID" >&2
