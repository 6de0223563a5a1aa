# Shared settings for hannoy's scripts (sourced, not run).
set -euo pipefail

HANNOY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR=15
# HANNOY_PG_PREFIX points at a relocated copy of Debian's PostgreSQL tree (its usr/lib,
# usr/share and usr/include), so several working copies can build and test side by side.
PG_PREFIX="${HANNOY_PG_PREFIX:-}"
PG_BIN="${PG_PREFIX}/usr/lib/postgresql/${PG_MAJOR}/bin"
PG_CONFIG="${PG_BIN}/pg_config"
# Debian's python3 (numpy, psycopg2, matplotlib come from Debian packages).
PYTHON=/usr/bin/python3
# PostgreSQL refuses to run as root: servers and tests run as this user.
PG_USER="${HANNOY_PG_USER:-postgres}"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# Runs a command as the unprivileged PostgreSQL user (or as ourselves when not root).
as_pg_user() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "$PG_USER" -- env PATH="$PG_BIN:$PATH" "$@"
	else
		env PATH="$PG_BIN:$PATH" "$@"
	fi
}
