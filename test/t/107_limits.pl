# LMDB's limits inside PostgreSQL: the file size bound (hannoy.max_index_size), a full disk
# (simulated with the file size limit of one backend), the reader table under many
# connections and after backends killed mid-scan, and file descriptors when one backend uses
# 200 hannoy indexes with a small descriptor budget. Each limit gives a clear error or is
# handled; nothing committed is lost.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep time);
use Test::More;

my $started = time;
# 1 MB WAL segments, so the file size limit of the full-disk test stays above every file
# the backend itself writes except the index file.
my $node = PostgreSQL::Test::Cluster->new('limits');
$node->init(extra => ['--wal-segsize=1']);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'hannoy'
max_connections = 60
max_files_per_process = 64
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION hannoy');
my $have_prlimit = system('prlimit --version >/dev/null 2>&1') == 0;

# ---- hannoy.max_index_size -------------------------------------------------------------------
create_gaussian_mixture($node, 'm', 2000, 64, 4, 0.5);
$node->safe_psql('postgres', 'CREATE INDEX m_idx ON m USING hannoy (v)');
is($node->safe_psql('postgres', 'SHOW hannoy.max_index_size'), '1TB', 'hannoy.max_index_size exists, 1TB by default');
my $bytes = $node->safe_psql('postgres', q{SELECT file_bytes FROM hannoy_index_info('m_idx')});
my $cap = int($bytes / 1048576) + 1;
my ($ret, $stdout, $stderr) = $node->psql('postgres', qq{
	SET hannoy.max_index_size = '${cap}MB';
	INSERT INTO m SELECT id + 100000, (SELECT array_agg(x + 0.25 ORDER BY o) FROM unnest(v) WITH ORDINALITY u(x, o))
	FROM m WHERE id <= 2000;
});
like($stderr, qr/hannoy index file ".*" reached its maximum size of \d+ bytes/,
	'a file that would outgrow hannoy.max_index_size fails clearly');
like($stderr, qr/HINT:  Raise hannoy.max_index_size/, 'the error names the setting to raise');
is($node->safe_psql('postgres', 'SELECT count(*) FROM m'), '2000', 'the failed transaction left no rows');
is($node->safe_psql('postgres', q{SELECT ok FROM hannoy_verify('m_idx')}), 't', 'the index is sound after the failure');
is(missed_rows($node, 'm'), '', 'every committed row is still found by its own vector');
$node->safe_psql('postgres', q{
	INSERT INTO m SELECT id + 100000, (SELECT array_agg(x + 0.25 ORDER BY o) FROM unnest(v) WITH ORDINALITY u(x, o))
	FROM m WHERE id <= 2000;
});
is(missed_rows($node, 'm', 'id % 5 = 0'), '', 'with the default bound the same insert succeeds and its rows are found');

# ---- A full disk -------------------------------------------------------------------------------
# Unprivileged tests cannot mount a small file system; the file size limit (RLIMIT_FSIZE) of one
# backend makes its writes past a size fail with EFBIG, which LMDB sees like ENOSPC when it
# extends the file. PostgreSQL ignores SIGXFSZ, so the write simply fails.
SKIP:
{
	skip 'prlimit is not available', 6 unless $have_prlimit;
	# Uniform vectors of 8 dimensions: an index file twice the size of the heap, and probes by a
	# row's own vector that never miss (on clustered data an HNSW graph may miss a few).
	create_row_vector_function($node);
	$node->safe_psql('postgres', q{
		CREATE TABLE f (id int PRIMARY KEY, v real[]);
		INSERT INTO f SELECT i, vec(i) FROM generate_series(1, 20000) i;
		CREATE INDEX f_idx ON f USING hannoy (v);
		CHECKPOINT;
	});
	my $file_bytes = $node->safe_psql('postgres', q{SELECT file_bytes FROM hannoy_index_info('f_idx')});
	my $heap_bytes = $node->safe_psql('postgres', q{SELECT pg_relation_size('f')});
	note("index file $file_bytes bytes, heap $heap_bytes bytes");
	my $session = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $session->query_safe('SELECT pg_backend_pid()');
	my $limit = $file_bytes + 65536;
	system('prlimit', '--pid', $pid, "--fsize=$limit:") == 0 or die 'prlimit failed';
	my ($failed, $first) = ('', 0);
	for my $round (1 .. 3)
	{
		$first = 100000 * $round;
		$session->query(qq{INSERT INTO f SELECT i, vec(i) FROM generate_series($first + 1, $first + 3000) i});
		$failed = $session->{stderr};
		last if $failed ne '';
	}
	like($failed, qr/could not write hannoy index file ".*": (File too large|Input\/output error)/,
		'a full disk gives a clear error');
	like($failed, qr/HINT:  Free disk space/, 'the error says to free disk space');
	system('prlimit', '--pid', $pid, '--fsize=unlimited:') == 0 or die 'prlimit failed';
	$session->quit;
	my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM f');
	note("$rows rows committed before the disk was full");
	is($node->safe_psql('postgres', "SELECT count(*) FROM f WHERE id > $first AND id <= $first + 3000"), '0',
		'no row of the failed transaction is visible');
	is($node->safe_psql('postgres', q{SELECT ok FROM hannoy_verify('f_idx')}), 't', 'the index is sound after the failure');
	is(missed_rows($node, 'f', 'id % 4 = 0'), '', 'every committed row is found by its own vector');
	$node->safe_psql('postgres', q{INSERT INTO f SELECT i, vec(i) FROM generate_series(900001, 903000) i});
	is(missed_rows($node, 'f', 'id > 900000'), '', 'once there is space again inserts work');
}

# ---- Reader slots: 50 clients, and backends killed mid-scan ---------------------------------
my $lock_bytes = -s $node->data_dir . '/' . $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('m_idx')}) . '-lock';
my $backends = $node->safe_psql('postgres',
	q{SELECT current_setting('max_connections')::int + current_setting('max_worker_processes')::int + current_setting('autovacuum_max_workers')::int});
cmp_ok(int($lock_bytes / 64) - 3, '>=', $backends, "the reader table has a slot for each of the $backends possible backends");

my $exact = $node->safe_psql('postgres',
	q{SET enable_indexscan = off; SELECT id FROM m ORDER BY v <-> (SELECT v FROM m WHERE id = 17) LIMIT 5});
for my $kill (1 .. 4)
{
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres') . ' application_name=longscan', '-c',
			q{SET enable_seqscan = off; SELECT count(*) FROM m r, LATERAL (SELECT id FROM m s ORDER BY s.v <-> r.v LIMIT 3) x} ],
		'<', \undef, '>', \my $out, '2>', \my $err);
	my $pid = '';
	for (1 .. 100)
	{
		$pid = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE application_name = 'longscan' AND state = 'active'});
		last if $pid ne '';
		usleep(20_000);
	}
	usleep(100_000 + int(rand(300_000)));
	kill 'KILL', $pid if $pid =~ /^\d+$/;
	eval { $h->finish; };
	wait_until_up($node);
}
$node->pgbench('-n -c 50 -j 2 -t 20', 0, [qr/processed: 1000\/1000/], [qr/^$/],
	'50 clients scanning one index at once after backends were killed mid-scan',
	{ '107_scan' => q{
\set id random(1, 2000)
SET enable_seqscan = off;
SELECT id FROM m ORDER BY v <-> (SELECT v FROM m WHERE id = :id) LIMIT 5;
} });
is($node->safe_psql('postgres',
	q{SET enable_seqscan = off; SELECT id FROM m ORDER BY v <-> (SELECT v FROM m WHERE id = 17) LIMIT 5}),
	$exact, 'scans after the killed backends answer exactly');

# ---- File descriptors: 200 indexes in one backend ------------------------------------------
# PostgreSQL keeps to max_files_per_process (64 here); LMDB's descriptors (3 per open file)
# are counted in the same budget, idle files being closed to make room. The backends' real
# descriptor limit is lowered to 128, well below the 600 that 200 open files would take.
$node->safe_psql('postgres', q{
	CREATE TABLE p (id int, v real[]) PARTITION BY HASH (id);
	SELECT format('CREATE TABLE p_%s PARTITION OF p FOR VALUES WITH (MODULUS 200, REMAINDER %s)', i, i)
	FROM generate_series(0, 199) i \gexec
	INSERT INTO p SELECT id, v FROM m WHERE id <= 2000;
	CREATE INDEX p_idx ON p USING hannoy (v);
});
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'hannoy' AND c.relkind = 'i' AND c.relname LIKE 'p\_%'}),
	'200', '200 partition indexes');
SKIP:
{
	skip 'prlimit is not available', 4 unless $have_prlimit;
	my $postmaster = (split /\n/, PostgreSQL::Test::Utils::slurp_file($node->data_dir . '/postmaster.pid'))[0];
	system('prlimit', '--pid', $postmaster, '--nofile=128:128') == 0 or die 'prlimit failed';
	my $query = q{SELECT id FROM p ORDER BY v <-> (SELECT v FROM m WHERE id = 33) LIMIT 10};
	my $expected = $node->safe_psql('postgres', "SET enable_indexscan = off; $query");
	my $session = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $session->query_safe('SELECT pg_backend_pid()');
	my $plan = $session->query_safe("SET enable_seqscan = off; EXPLAIN (COSTS OFF) $query");
	like($plan, qr/Index Scan using p_\d+_v_idx/, 'the partition indexes are used');
	my $got = $session->query("SET hannoy.ef_search = 100; $query");
	is($got, $expected, 'a query over 200 hannoy indexes in one backend answers exactly');
	is($session->{stderr}, '', 'without running out of file descriptors');
	my $open = () = grep { (readlink($_) // '') =~ /pgsql_tmp_hannoy_/ } glob("/proc/$pid/fd/*");
	cmp_ok($open, '<=', 30, "the backend keeps few index files open ($open descriptors)");
	$session->quit;
}

note(sprintf('total %.0f s', time - $started));
$node->stop;
done_testing();
