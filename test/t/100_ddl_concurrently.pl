# CREATE INDEX CONCURRENTLY, REINDEX INDEX CONCURRENTLY and DROP INDEX CONCURRENTLY while other
# sessions insert rows: every row is indexed exactly once (rows missed by the build are added
# once by the validation pass, rows inserted by sessions that see the index are not added
# again), the index answers exact probes for them, and a concurrent drop never removes the file
# while sessions may still insert into the index.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use Test::More;
use Time::HiRes qw(time);

my $node = hannoy_node('concurrently');
create_gaussian_mixture($node, 'items', 30000, 32, 50, 0.7, 1, 4);
$node->safe_psql('postgres', q{
	ALTER TABLE items ADD COLUMN at timestamptz DEFAULT clock_timestamp();
	CREATE TABLE marks (what text, at timestamptz DEFAULT clock_timestamp());
	CREATE TABLE next_id (id int);
	INSERT INTO next_id VALUES (1000000);
	-- A new vector near the data: row $1's vector, its first coordinate moved by 0.001.
	CREATE FUNCTION twin(int) RETURNS real[] LANGUAGE sql STABLE AS $$
		SELECT array_agg(CASE WHEN d = 1 THEN x + 0.001 ELSE x END ORDER BY d)
		FROM items, unnest(v) WITH ORDINALITY u(x, d) WHERE id = $1
	$$;
});

# Starts a session that inserts one row per transaction for $seconds. New rows have ids from
# 1,000,000 and vectors next to (not equal to) those of existing rows.
sub start_inserter
{
	my ($seconds) = @_;
	my $session = $node->background_psql('postgres');
	$session->query_until(qr/inserting/, qq{
		\\echo inserting
		DO \$\$
		DECLARE
			stop timestamptz := clock_timestamp() + interval '$seconds s';
			n int;
		BEGIN
			WHILE clock_timestamp() < stop LOOP
				UPDATE next_id SET id = id + 1 RETURNING id INTO n;
				INSERT INTO items (id, v) VALUES (n, twin(n - 999000));
				COMMIT;
				PERFORM pg_sleep(0.005);
			END LOOP;
		END
		\$\$;
	});
	return $session;
}

# Every row indexed once, the graph sound, each concurrently inserted row found by a probe with
# its own vector. (Reachability is not asserted: linking rows one batch at a time may leave an
# item unreachable until VACUUM relinks it.)
sub check_index
{
	my ($index, $what) = @_;
	my ($rows, $distinct) = split /\|/,
	  $node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT v) FROM items');
	is($node->safe_psql('postgres', qq{SELECT ok, items, heap_tids, problems FROM hannoy_verify('$index', false)}),
		"t|$distinct|$rows|{}", "$what: every row indexed once ($rows rows), graph sound");
	like($node->safe_psql('postgres', qq{SET enable_seqscan = off; EXPLAIN (COSTS OFF)
			SELECT id FROM items ORDER BY v <-> twin(1000) LIMIT 1}),
		qr/Index Scan using $index/, "$what: probes use the index");
	is($node->safe_psql('postgres', q{
		SET enable_seqscan = off; SET hannoy.ef_search = 200;
		SELECT count(*) FROM items q WHERE q.id >= 1000000
		AND q.id NOT IN (SELECT t.id FROM items t ORDER BY t.v <-> q.v LIMIT 10)}),
		'0', "$what: every concurrently inserted row is found by its own vector")
	  or diag($node->safe_psql('postgres', q{
		SET enable_seqscan = off; SET hannoy.ef_search = 200;
		SELECT q.id, q.v[1], (SELECT t.id || ' ' || (t.v <-> q.v) FROM items t ORDER BY t.v <-> q.v LIMIT 1),
			(SELECT count(*) FROM items t WHERE t.v = q.v)
		FROM items q WHERE q.id >= 1000000
		AND q.id NOT IN (SELECT t.id FROM items t ORDER BY t.v <-> q.v LIMIT 10)}));
}

# CREATE INDEX CONCURRENTLY while rows arrive before, during and after the build.
my $inserter = start_inserter(8);
sleep 1;
$node->safe_psql('postgres', q{
	INSERT INTO marks (what) VALUES ('start');
	CREATE INDEX CONCURRENTLY items_idx ON items USING hannoy (v);
	INSERT INTO marks (what) VALUES ('end');
});
$inserter->query_safe('SELECT 1');
$inserter->quit;
my $during = $node->safe_psql('postgres', q{
	SELECT count(*) FROM items WHERE id >= 1000000
	AND at BETWEEN (SELECT at FROM marks WHERE what = 'start') AND (SELECT at FROM marks WHERE what = 'end')});
my $after = $node->safe_psql('postgres', q{
	SELECT count(*) FROM items WHERE at > (SELECT at FROM marks WHERE what = 'end')});
cmp_ok($during, '>', 10, "rows inserted while CREATE INDEX CONCURRENTLY ran ($during)");
cmp_ok($after, '>', 10, "rows inserted after it ($after)");
check_index('items_idx', 'CREATE INDEX CONCURRENTLY');
is(scalar(storage_files($node)), 1, 'one storage file');

# REINDEX INDEX CONCURRENTLY under the same load: a new index (new OID, new file), the old
# file removed.
my $old_file = $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('items_idx')});
$inserter = start_inserter(5);
sleep 1;
$node->safe_psql('postgres', 'REINDEX INDEX CONCURRENTLY items_idx');
$inserter->query_safe('SELECT 1');
$inserter->quit;
check_index('items_idx', 'REINDEX INDEX CONCURRENTLY');
ok(!-e $node->data_dir . "/$old_file", 'the old file is gone');
is(scalar(storage_files($node)), 1, 'one storage file');

# DROP INDEX CONCURRENTLY waits for a transaction that inserted into the index. Meanwhile the
# index is invalid but still receives inserts: the file must still be there.
my $file = $node->data_dir . '/' . $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('items_idx')});
my $writer = $node->background_psql('postgres');
$writer->query_safe(q{BEGIN; INSERT INTO items (id, v) VALUES (1500000, twin(1))});
my $dropper = $node->background_psql('postgres');
$dropper->query_until(qr/dropping/, "\\echo dropping\nDROP INDEX CONCURRENTLY items_idx;\n");
$node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'DROP INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'})
  or die 'DROP INDEX CONCURRENTLY did not wait';
is($node->safe_psql('postgres', q{SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_idx'::regclass}),
	'f', 'the index being dropped is invalid');
ok(-e $file, 'its file is still there');
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	q{INSERT INTO items (id, v) VALUES (1500001, twin(2))});
is($ret, 0, 'a new session inserts into the table meanwhile') or diag($stderr);
$writer->query_safe('COMMIT');
$writer->quit;
$dropper->query_safe('SELECT 1');
$dropper->quit;
ok(!-e $file, 'the file is removed when the drop completes');
is(scalar(storage_files($node)), 0, 'no storage file left');

# A DROP INDEX CONCURRENTLY that fails half-way (lock timeout while waiting) leaves an invalid
# index with its file; REINDEX makes it valid again with all rows, a second drop removes it.
$node->safe_psql('postgres', 'CREATE INDEX items_idx ON items USING hannoy (v)');
$file = $node->data_dir . '/' . $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('items_idx')});
$writer = $node->background_psql('postgres');
$writer->query_safe(q{BEGIN; INSERT INTO items (id, v) VALUES (1500002, twin(3))});
($ret, $stdout, $stderr) = $node->psql('postgres', q{SET lock_timeout = '1s'; DROP INDEX CONCURRENTLY items_idx});
like($stderr, qr/lock timeout/, 'DROP INDEX CONCURRENTLY fails on a lock timeout');
$writer->query_safe('COMMIT');
$writer->quit;
ok(-e $file, 'the failed drop leaves the file');
$node->safe_psql('postgres', 'REINDEX INDEX items_idx');
check_index('items_idx', 'REINDEX after a failed DROP INDEX CONCURRENTLY');
$node->safe_psql('postgres', 'DROP INDEX CONCURRENTLY items_idx');
is(scalar(storage_files($node)), 0, 'the second drop removes the file');

# A temporary table's index goes with the session.
my $temp = $node->background_psql('postgres');
$temp->query_safe(q{
	CREATE TEMP TABLE tmp AS SELECT id, v FROM items WHERE id <= 500;
	CREATE INDEX tmp_idx ON tmp USING hannoy (v);
});
is($temp->query_safe(q{SET enable_seqscan = off;
	SELECT id FROM tmp ORDER BY v <-> (SELECT v FROM tmp WHERE id = 7) LIMIT 1}), '7', 'temporary index answers');
is(scalar(storage_files($node)), 1, 'temporary index has a file');
$temp->quit;
$node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_class WHERE relname = 'tmp_idx'})
  or die 'temporary index not dropped';
is(scalar(storage_files($node)), 0, 'session exit removes the temporary index file');

$node->stop;
done_testing();
