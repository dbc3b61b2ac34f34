# shellcheck shell=bash
# Helpers sourced by scripts/*: logging, root commands, apt, locks, PostgreSQL lookup.

TASKBELL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# as_root CMD...: run directly when root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif have sudo; then
    sudo -- "$@"
  else
    die "must be root (or have sudo) to run: $*"
  fi
}

# apt_install PKG...: one `apt-get update` per process, then install without recommends.
TASKBELL_APT_UPDATED=0
apt_install() {
  [ "$#" -gt 0 ] || return 0
  have apt-get || die "apt-get not found; install these yourself: $*"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
  if [ "$TASKBELL_APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    as_root "${apt[@]}" update
    TASKBELL_APT_UPDATED=1
  fi
  log "apt-get install $*"
  as_root "${apt[@]}" install -y --no-install-recommends "$@"
}

# lock NAME: hold an exclusive lock until this script exits, so concurrent runs of
# the same step (two test runs in one checkout) wait instead of racing.
lock() {
  have flock || return 0
  local key
  key="$(printf '%s' "$TASKBELL_ROOT" | cksum | cut -d' ' -f1)"
  local file="${TMPDIR:-/tmp}/taskbell-$1-$key.lock"
  # Another user's lock file may not be writable for us: then run without the lock.
  { : >>"$file"; } 2>/dev/null || return 0
  exec {TASKBELL_LOCK_FD}>>"$file"
  flock "$TASKBELL_LOCK_FD"
}

# pg_bin_dir: print the directory with initdb, postgres and psql (PATH first, then the
# newest /usr/lib/postgresql/*/bin, where Debian keeps them); fail when there is none.
# Same search as tests/support/services.py:find_postgres_bin_dir.
pg_bin_dir() {
  local candidates=() initdb dir
  if initdb="$(command -v initdb)"; then
    candidates+=("$(dirname "$(readlink -f "$initdb")")")
  fi
  for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -V -r); do
    candidates+=("$dir")
  done
  for dir in "${candidates[@]}"; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && [ -x "$dir/psql" ]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}
