#!/usr/bin/env bash
# hannoy's benchmark in one command: sets up (as scripts/demo.sh does), starts a throwaway
# cluster with the benchmark's server settings, measures a hannoy index on Fashion-MNIST (or a
# synthetic Gaussian mixture) and writes a Markdown table, JSON and PNG plots to bench/results/.
#
#   scripts/bench.sh                 the full Fashion-MNIST protocol (about 25 minutes on 2 cores)
#   scripts/bench.sh --quick         a smoke run in under 3 minutes
#   scripts/bench.sh --dataset synthetic --rows 1000000 --dims 128 --skip updates
#   scripts/bench.sh --help          every option (they are bench/run.py's)
#
# Run it as root on Debian bookworm: the cold-start measurement empties the OS page cache.
# HANNOY_SKIP_SETUP=1 skips scripts/setup.sh. The cluster lives in HANNOY_BENCH_DIR (default
# /var/tmp/hannoy-bench) on port HANNOY_BENCH_PORT (default 5520), apart from the demo's: the
# benchmark changes its settings, restarts it and replaces its tables. It is stopped at the end
# unless --keep-cluster is given.
source "$(dirname "$0")/common.sh"

CLUSTER_DIR="${HANNOY_BENCH_DIR:-/var/tmp/hannoy-bench}"
PORT="${HANNOY_BENCH_PORT:-5520}"
keep_cluster=0
args=()
for arg in "$@"; do
	case "$arg" in
	--keep-cluster) keep_cluster=1 ;;
	-h | --help)
		exec "$PYTHON" "$HANNOY_ROOT/bench/run.py" --help
		;;
	*) args+=("$arg") ;;
	esac
done

# Settings of the recorded pgvector baseline (shared/baselines/pgvector-fashion-mnist.md).
SERVER_SETTINGS=(
	"shared_buffers = '2GB'"
	"work_mem = '64MB'"
	"maintenance_work_mem = '2GB'"
	"jit = off"
)

cluster() { HANNOY_CLUSTER_DIR="$CLUSTER_DIR" HANNOY_PORT="$PORT" "$HANNOY_ROOT/scripts/cluster.sh" "$@"; }
bench_psql() { as_pg_user psql -h "$CLUSTER_DIR" -p "$PORT" -U postgres -d hannoy -qAtX "$@"; }

started=$SECONDS
[ "${HANNOY_SKIP_SETUP:-0}" = 1 ] || "$HANNOY_ROOT/scripts/setup.sh"
[ "$(id -u)" -eq 0 ] || echo "note: not root, so the cold-start measurement cannot empty the page cache" >&2

log "starting the benchmark cluster in $CLUSTER_DIR (port $PORT)"
cluster start >/dev/null
[ "$keep_cluster" = 1 ] || trap 'cluster stop >/dev/null || true' EXIT
for setting in "${SERVER_SETTINGS[@]}"; do
	bench_psql -c "ALTER SYSTEM SET $setting"
done
cluster stop >/dev/null # shared_buffers needs a restart
cluster start >/dev/null

log "running the benchmark"
HANNOY_BENCH_DIR="$CLUSTER_DIR" HANNOY_BENCH_PORT="$PORT" "$PYTHON" "$HANNOY_ROOT/bench/run.py" "${args[@]+"${args[@]}"}"
log "benchmark finished in $((SECONDS - started)) s"
if [ "$keep_cluster" = 1 ]; then
	echo "cluster kept: psql -h $CLUSTER_DIR -p $PORT -U postgres hannoy"
	echo "stop with:    HANNOY_CLUSTER_DIR=$CLUSTER_DIR HANNOY_PORT=$PORT $HANNOY_ROOT/scripts/cluster.sh stop"
fi
