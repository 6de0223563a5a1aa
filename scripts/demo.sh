#!/usr/bin/env bash
# hannoy's demo in one command: installs dependencies, builds and installs hannoy, starts a
# throwaway cluster, loads Fashion-MNIST (60,000 images as 784-dimensional vectors) and shows a
# hannoy index on it: build time, size, query plan, nearest neighbours, recall@10 and latency.
# Run it as root on Debian bookworm; running it again reuses the cluster and the loaded data.
#
# HANNOY_SKIP_SETUP=1 skips scripts/setup.sh (no package install, build or install).
# HANNOY_CLUSTER_DIR and HANNOY_PORT choose the cluster, as for scripts/cluster.sh.
source "$(dirname "$0")/common.sh"

CLUSTER_DIR="${HANNOY_CLUSTER_DIR:-/var/tmp/hannoy-cluster}"
PORT="${HANNOY_PORT:-5499}"
started=$SECONDS

[ "${HANNOY_SKIP_SETUP:-0}" = 1 ] || "$HANNOY_ROOT/scripts/setup.sh"
log "starting the cluster in $CLUSTER_DIR (port $PORT)"
"$HANNOY_ROOT/scripts/cluster.sh" start >/dev/null # its connection hint is repeated at the end

# The cluster trusts local socket connections, so any local user may connect as postgres.
fashion_mnist() {
	"$PYTHON" "$HANNOY_ROOT/scripts/fashion_mnist.py" --host "$CLUSTER_DIR" --port "$PORT" "$@"
}
log "loading Fashion-MNIST into database hannoy"
fashion_mnist load
log "indexing and searching"
fashion_mnist demo

# cluster.sh needs the same settings to find a cluster that is not at its defaults.
cluster_env=""
[ -z "${HANNOY_CLUSTER_DIR:-}" ] || cluster_env+="HANNOY_CLUSTER_DIR=$CLUSTER_DIR "
[ -z "${HANNOY_PORT:-}" ] || cluster_env+="HANNOY_PORT=$PORT "
echo
log "demo finished in $((SECONDS - started)) s; the cluster keeps running"
echo "connect:  psql -h $CLUSTER_DIR -p $PORT -U postgres hannoy"
echo "          (or: ${cluster_env}$HANNOY_ROOT/scripts/cluster.sh psql)"
echo "stop:     ${cluster_env}$HANNOY_ROOT/scripts/cluster.sh stop"
