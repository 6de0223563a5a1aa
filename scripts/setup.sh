#!/usr/bin/env bash
# Installs hannoy's dependencies from Debian's archive, builds the extension and installs it
# into PostgreSQL 15. Safe to run again: installed packages are skipped.
source "$(dirname "$0")/common.sh"

PACKAGES=(
	build-essential clang-format
	postgresql-15 postgresql-server-dev-15 postgresql-contrib
	liblmdb-dev lmdb-utils libroaring-dev
	libgtest-dev libbenchmark-dev libipc-run-perl
	dataset-fashion-mnist python3-numpy python3-psycopg2 python3-matplotlib
)

missing=()
[ -z "$PG_PREFIX" ] || PACKAGES=() # a relocated tree: the system packages are already there
for pkg in "${PACKAGES[@]+"${PACKAGES[@]}"}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing packages: ${missing[*]} (run as root to install them)" >&2
		exit 1
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian creates and starts a default cluster with the server package; hannoy uses its own.
if [ "$(id -u)" -eq 0 ] && command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q "^${PG_MAJOR} main .* online"; then
	pg_ctlcluster "$PG_MAJOR" main stop || true
fi

log "building hannoy"
make -C "$HANNOY_ROOT" -s -j"$(nproc)" PG_CONFIG="$PG_CONFIG"
log "installing hannoy into $("$PG_CONFIG" --pkglibdir)"
if [ "$(id -u)" -eq 0 ]; then
	make -C "$HANNOY_ROOT" -s install PG_CONFIG="$PG_CONFIG"
else
	sudo make -C "$HANNOY_ROOT" -s install PG_CONFIG="$PG_CONFIG"
fi
