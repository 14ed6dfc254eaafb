#!/usr/bin/env bash
# The runbook's ./scripts/backup.sh, now a thin wrapper around amber-dr: one consistent,
# checksummed backup of every configured store, verified (quick) right after.
#
# Usage: scripts/backup.sh [amber-dr backup options, e.g. --only postgres --tag before-upgrade]
#
# Standalone (copy it into the Amber repository's scripts/). It uses:
#   AMBER_DR_BIN     the amber-dr binary (default: `amber-dr` on PATH)
#   AMBER_DR_CONFIG  the config file (default: amber-dr.toml in the current directory); with
#                    `[repository] url = "./backups"` backups land where the runbook put them,
#                    under the same YYYYMMDD_HHMMSS ids.
# Prints the new backup id on the last line. Exit codes are amber-dr's: 0 ok, 1 failed,
# 2 usage or config error, 3 the new backup did not verify, 130 interrupted.
set -euo pipefail

bin="${AMBER_DR_BIN:-amber-dr}"
if ! command -v "$bin" >/dev/null 2>&1; then
  printf 'backup.sh: ERROR: amber-dr not found (%s); install it (cargo install --path amber-dr-cli) or set AMBER_DR_BIN\n' "$bin" >&2
  exit 2
fi

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
set +e
"$bin" backup "$@" | tee "$out"
rc="${PIPESTATUS[0]}"
set -e
id="$(tail -n 1 "$out")"
if [[ "$rc" != 0 ]]; then
  printf 'backup.sh: backup %s FAILED (exit %s); it will never be used as latest\n' "${id:-?}" "$rc" >&2
  exit "$rc"
fi
"$bin" -q verify "$id" --quick || {
  rc=$?
  printf 'backup.sh: backup %s did not verify (exit %s)\n' "$id" "$rc" >&2
  exit "$rc"
}
printf 'backup.sh: backup %s complete and verified (quick); full check: %s verify %s\n' "$id" "$bin" "$id" >&2
printf '%s\n' "$id"
