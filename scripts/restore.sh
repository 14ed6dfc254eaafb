#!/usr/bin/env bash
# The runbook's ./scripts/restore.sh <dir>, now a thin wrapper around amber-dr. It shows what
# will be restored, asks for `y` like the runbook did, then restores (with a safety backup of
# the current state first, whose id it prints together with the command that undoes it).
#
# Usage: scripts/restore.sh <backup-dir | backup-id | latest> [amber-dr restore options]
#   backup-dir  an old runbook directory (postgres.sql, neo4j.cypher, minio_data.tar.gz,
#               uploads.tar.gz), or an amber-dr backup directory inside a local repository
#   backup-id   an amber-dr backup id (YYYYMMDD_HHMMSS) or `latest`
#   options     e.g. --only postgres,uploads   --target uploads=/srv/drill   --no-safety-backup
#
# Standalone (copy it into the Amber repository's scripts/). AMBER_DR_BIN and AMBER_DR_CONFIG
# as in backup.sh. Exit codes are amber-dr's; answering anything but `y` exits 1, nothing done.
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
bin="${AMBER_DR_BIN:-amber-dr}"
if ! command -v "$bin" >/dev/null 2>&1; then
  printf 'restore.sh: ERROR: amber-dr not found (%s); install it or set AMBER_DR_BIN\n' "$bin" >&2
  exit 2
fi

what="$1"
shift
args=()
if [[ -d "$what" && -f "$what/manifest.json" ]]; then
  # An amber-dr backup directory of a local repository: restore it by id from that repository.
  dir="$(cd "$what" && pwd)"
  args=(--repo "$(dirname "$dir")" restore "$(basename "$dir")")
else
  args=(restore "$what")
fi

"$bin" "${args[@]}" "$@" --dry-run
printf 'Type y to continue: ' >&2
read -r answer || answer=""
if [[ "$answer" != "y" ]]; then
  printf 'restore.sh: aborted, nothing was restored\n' >&2
  exit 1
fi
exec "$bin" "${args[@]}" "$@" --yes
