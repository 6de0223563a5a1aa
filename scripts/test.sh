#!/usr/bin/env bash
# Runs every test suite of hannoy, after the same set-up as the demo (dependencies, build,
# install). Ends with a summary and exits non-zero if any suite failed.
#
#   scripts/test.sh            everything
#   scripts/test.sh unit regress tap    only the named suites
source "$(dirname "$0")/common.sh"

SUITES=("$@")
[ "${#SUITES[@]}" -gt 0 ] || SUITES=(format unit sanitize bench regress tap)
WORK="${HANNOY_TEST_DIR:-/var/tmp/hannoy-test}"

# HANNOY_SKIP_SETUP=1 tests what is already installed (no package install, build or install).
[ "${HANNOY_SKIP_SETUP:-0}" = 1 ] || "$HANNOY_ROOT/scripts/setup.sh"

rm -rf "$WORK"
mkdir -p "$WORK"
[ "$(id -u)" -eq 0 ] && chown "$PG_USER" "$WORK"

declare -A RESULT
failed=0
run_suite() {
	local name="$1"
	shift
	log "suite: $name"
	local start=$SECONDS
	if "$@"; then
		RESULT[$name]="passed ($((SECONDS - start)) s)"
	else
		RESULT[$name]="FAILED ($((SECONDS - start)) s)"
		failed=1
	fi
}

suite_format() {
	make -C "$HANNOY_ROOT" -s format-check
}

suite_unit() {
	make -C "$HANNOY_ROOT" -s unittest GTEST_ARGS=--gtest_brief=1
}

suite_sanitize() {
	make -C "$HANNOY_ROOT" -s unittest-sanitize GTEST_ARGS=--gtest_brief=1
	make -C "$HANNOY_ROOT" -s unittest-thread GTEST_ARGS=--gtest_brief=1
}

suite_bench() {
	# The benchmark's reports (the benchmark itself is scripts/bench.sh, not a test).
	(cd "$HANNOY_ROOT" && PYTHONDONTWRITEBYTECODE=1 "$PYTHON" -m unittest discover -s bench/tests)
}

# Fails when a server log shows a crash no test caused on purpose: the tests kill backends
# with SIGKILL only, so any other signal, an assertion failure or a PANIC is a bug even when
# every query of the test still got its answer.
check_server_logs() {
	local crashes
	crashes=$(grep -HE "terminated by signal|^TRAP:|PANIC:" "$@" 2>/dev/null | grep -v "signal 9: Killed" || true)
	if [ -n "$crashes" ]; then
		echo "server crashes in the logs:"
		echo "$crashes"
		return 1
	fi
}

suite_regress() {
	local out="$WORK/regress"
	as_pg_user mkdir -p "$out"
	if ! as_pg_user "$("$PG_CONFIG" --pgxs | xargs dirname)/../test/regress/pg_regress" \
		--inputdir="$HANNOY_ROOT" --outputdir="$out" --bindir="$PG_BIN" \
		--temp-instance="$out/tmp_check" --temp-config="$HANNOY_ROOT/test/regress.conf" \
		--schedule="$HANNOY_ROOT/test/schedule" --dbname=hannoy_regression --load-extension=hannoy; then
		[ -f "$out/regression.diffs" ] && cat "$out/regression.diffs"
		return 1
	fi
	check_server_logs "$out"/log/postmaster.log
}

suite_tap() {
	# HANNOY_TAP_TESTS="010_parallel_build.pl ..." runs only those.
	local tests=("$HANNOY_ROOT"/test/t/*.pl)
	if [ -n "${HANNOY_TAP_TESTS:-}" ]; then
		tests=()
		for t in $HANNOY_TAP_TESTS; do tests+=("$HANNOY_ROOT/test/t/$t"); done
	fi
	[ -e "${tests[0]}" ] || return 0
	local perl_lib
	perl_lib="$(dirname "$("$PG_CONFIG" --pgxs)")/../test/perl"
	as_pg_user mkdir -p "$WORK/tap"
	(cd "$WORK/tap" && as_pg_user env PG_REGRESS="$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress" \
		TESTDIR="$WORK/tap" TESTDATADIR="$WORK/tap/data" \
		HANNOY_ROOT="$HANNOY_ROOT" PYTHON="$PYTHON" \
		prove --timer -I "$perl_lib" -I "$HANNOY_ROOT/test/perl" "${tests[@]}") || return 1
	local logs=() t
	for t in "${tests[@]}"; do
		logs+=("$WORK"/tap/tmp_check/log/"$(basename "$t" .pl)"_*.log)
	done
	check_server_logs "${logs[@]}"
}

for suite in "${SUITES[@]}"; do
	run_suite "$suite" "suite_$suite"
done

log "summary"
for suite in "${SUITES[@]}"; do
	printf '  %-10s %s\n' "$suite" "${RESULT[$suite]}"
done
if [ "$failed" -ne 0 ]; then
	log "FAILED"
	exit 1
fi
log "all test suites passed"
