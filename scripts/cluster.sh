#!/usr/bin/env bash
# Manages a throwaway PostgreSQL 15 cluster with hannoy preloaded, owned by an unprivileged
# user, listening on a local port and a Unix socket in its own directory.
#
#   scripts/cluster.sh start   create (first time) and start the cluster
#   scripts/cluster.sh stop    stop it
#   scripts/cluster.sh status  print how to connect
#   scripts/cluster.sh psql    open psql on it (extra arguments are passed to psql)
#
# HANNOY_CLUSTER_DIR (default /var/tmp/hannoy-cluster) and HANNOY_PORT (default 5499)
# choose where and on which port.
source "$(dirname "$0")/common.sh"

CLUSTER_DIR="${HANNOY_CLUSTER_DIR:-/var/tmp/hannoy-cluster}"
PORT="${HANNOY_PORT:-5499}"
DATA="$CLUSTER_DIR/data"

connect_hint() {
	echo "connect:  psql -h $CLUSTER_DIR -p $PORT -U postgres hannoy"
	echo "          (or: $HANNOY_ROOT/scripts/cluster.sh psql)"
	echo "stop:     $HANNOY_ROOT/scripts/cluster.sh stop"
}

is_running() { [ -f "$DATA/postmaster.pid" ] && as_pg_user pg_ctl -D "$DATA" status >/dev/null 2>&1; }

case "${1:-status}" in
start)
	mkdir -p "$CLUSTER_DIR"
	[ "$(id -u)" -eq 0 ] && chown "$PG_USER" "$CLUSTER_DIR"
	if [ ! -f "$DATA/PG_VERSION" ]; then
		log "creating cluster in $DATA"
		as_pg_user initdb -D "$DATA" -U postgres -A trust --no-instructions >/dev/null
		as_pg_user tee -a "$DATA/postgresql.conf" >/dev/null <<CONF
# hannoy throwaway cluster
shared_preload_libraries = 'hannoy'
port = $PORT
listen_addresses = 'localhost'
unix_socket_directories = '$CLUSTER_DIR'
shared_buffers = 1GB
work_mem = 64MB
maintenance_work_mem = 2GB
max_parallel_maintenance_workers = 1
jit = off
fsync = on
CONF
	fi
	if is_running; then
		log "cluster already running"
	else
		log "starting cluster on port $PORT"
		as_pg_user pg_ctl -D "$DATA" -l "$CLUSTER_DIR/server.log" -w start >/dev/null
	fi
	as_pg_user psql -h "$CLUSTER_DIR" -p "$PORT" -U postgres -d postgres -qAtc \
		"SELECT 1 FROM pg_database WHERE datname = 'hannoy'" | grep -q 1 ||
		as_pg_user createdb -h "$CLUSTER_DIR" -p "$PORT" -U postgres hannoy
	connect_hint
	;;
stop)
	if is_running; then
		as_pg_user pg_ctl -D "$DATA" -m fast -w stop >/dev/null
		log "cluster stopped"
	else
		log "cluster not running"
	fi
	;;
status)
	if is_running; then log "running"; connect_hint; else log "not running"; fi
	;;
psql)
	shift
	exec "$PG_BIN/psql" -h "$CLUSTER_DIR" -p "$PORT" -U postgres hannoy "$@"
	;;
*)
	echo "usage: $0 start|stop|status|psql" >&2
	exit 2
	;;
esac
