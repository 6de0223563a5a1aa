# Crash safety of hannoy indexes: a backend killed with SIGKILL (which makes PostgreSQL
# restart every process and run crash recovery) or an immediate shutdown, at random points
# of concurrent insert batches, of CREATE INDEX and of VACUUM's graph repair. After each
# restart every committed row must be found by an exact probe through the index (its own
# vector, first result), no aborted row may come back, results must stay in true distance
# order (an entry pointing at a reused heap TID would break it), and hannoy_verify must
# find the file sound.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use IPC::Run;
use Time::HiRes qw(usleep time);
use Test::More;
use feature 'state';
use PostgreSQL::Test::Utils;

my $node = hannoy_node('crash', restart_after_crash => 'on', max_connections => 30);
my $started = time;
srand(105);
my $tmp = PostgreSQL::Test::Utils::tempdir;

# Vectors are a function of the row id, so a client can always say which vector a row has.
create_row_vector_function($node);
$node->safe_psql('postgres', q{
	CREATE TABLE t (id int PRIMARY KEY, v real[]);
	INSERT INTO t SELECT i, vec(i) FROM generate_series(1, 500) i;
	CREATE INDEX t_idx ON t USING hannoy (v);
});

# Probes for the given ids' vectors whose index results are not in true distance order, or
# that return one of these (aborted) ids.
sub disordered_probes
{
	my ($table, @ids) = @_;
	return '' unless @ids;
	my $list = join(',', @ids);
	return $node->safe_psql('postgres', qq{
		SET enable_seqscan = off; SET enable_bitmapscan = off;
		SELECT coalesce(string_agg(q::text, ','), '') FROM unnest('{$list}'::int[]) q
		WHERE EXISTS (
			SELECT 1 FROM (
				SELECT id, d, lag(d) OVER (ORDER BY n) AS prev FROM (
					SELECT id, v <-> vec(q) AS d, row_number() OVER () AS n
					FROM (SELECT id, v FROM $table ORDER BY v <-> vec(q) LIMIT 5) top) r) o
			WHERE o.d < o.prev - 1e-4 OR o.id = ANY ('{$list}'::int[]));
	});
}

# A psql session that runs a generated script and prints a marker after every transaction
# it saw commit: "C first last" (committed), "A first last" (rolled back).
sub start_session
{
	my ($script) = @_;
	state $n = 0;
	$n++;
	my $file = "$tmp/session$n";
	open(my $fh, '>', "$file.sql") or die;
	print $fh $script;
	close($fh);
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') . ' application_name=crashload',
			'-f', "$file.sql" ],
		'<', \undef, '>', "$file.out", '2>', "$file.err");
	return { h => $h, file => $file };
}

# Waits for a session to end and returns what it printed.
sub end_session
{
	my ($s) = @_;
	eval { $s->{h}->finish; };
	return PostgreSQL::Test::Utils::slurp_file("$s->{file}.out");
}

sub session_script
{
	my ($base) = @_;
	my $sql = '';
	for my $k (0 .. 199)
	{
		my $a = $base + $k * 5;
		my $b = $a + 4;
		my $kind = $k % 4;
		if ($kind == 0)
		{
			$sql .= "BEGIN; INSERT INTO t SELECT i, vec(i) FROM generate_series($a, $b) i; COMMIT;\n\\echo C $a $b\n";
		}
		elsif ($kind == 1)
		{
			# The probe flushes the batch: the aborted rows get durable index entries.
			$sql .= "BEGIN; INSERT INTO t SELECT i, vec(i) FROM generate_series($a, $b) i;\n"
			  . "SELECT count(*) FROM (SELECT id FROM t ORDER BY v <-> vec($a) LIMIT 1) x \\g /dev/null\n"
			  . "ROLLBACK;\n\\echo A $a $b\n";
		}
		elsif ($kind == 2)
		{
			my $c = $a + 2;
			my $d = $a + 3;
			$sql .= "BEGIN; INSERT INTO t SELECT i, vec(i) FROM generate_series($a, $c) i; SAVEPOINT s;\n"
			  . "INSERT INTO t SELECT i, vec(i) FROM generate_series($d, $b) i; ROLLBACK TO s; COMMIT;\n"
			  . "\\echo C $a $c\n\\echo A $d $b\n";
		}
		else
		{
			$sql .= "INSERT INTO t VALUES ($a, vec($a));\n\\echo C $a $a\n";
		}
	}
	return $sql;
}

# ---- Crash cycles during concurrent inserts ---------------------------------------------------
my (%committed, %aborted);
my $cycles = 20;
my ($all_found, $none_aborted, $ordered, $verified) = (1, 1, 1, 1);
for my $cycle (1 .. $cycles)
{
	my @sessions = map { start_session(session_script(100_000 * $cycle + 10_000 * $_)) } 0 .. 2;
	usleep(100_000 + int(rand(600_000)));
	if ($cycle % 4 == 0)
	{
		$node->stop('immediate');
		$node->start;
	}
	else
	{
		my @pids = split /\n/, $node->safe_psql('postgres',
			q{SELECT pid FROM pg_stat_activity WHERE application_name = 'crashload'});
		my $victim = @pids ? $pids[ int(rand(@pids)) ] : $node->safe_psql('postgres', 'SELECT pg_backend_pid()');
		kill 'KILL', $victim;
	}
	for my $s (@sessions)
	{
		for my $line (split /\n/, end_session($s))
		{
			next unless $line =~ /^([CA]) (\d+) (\d+)$/;
			my $set = $1 eq 'C' ? \%committed : \%aborted;
			$set->{$_} = 1 for $2 .. $3;
		}
	}
	wait_until_up($node);

	my $present = $node->safe_psql('postgres',
		'SELECT count(*) FROM t WHERE id = ANY (\'{' . join(',', keys %committed) . '}\'::int[])');
	if ($present != scalar(keys %committed))
	{
		diag("cycle $cycle: only $present of " . scalar(keys %committed) . ' committed rows in the heap');
		$all_found = 0;
	}
	my $missed = missed_rows($node, 't');
	if ($missed ne '')
	{
		diag("cycle $cycle: rows not found by their own vector: $missed");
		$all_found = 0;
	}
	my @aborted = sort { $a <=> $b } keys %aborted;
	my @sample = grep { rand() < 40 / (@aborted + 1) } @aborted;
	my $wrong = disordered_probes('t', @sample);
	if ($wrong ne '')
	{
		diag("cycle $cycle: aborted vectors with wrong results: $wrong");
		$ordered = 0;
	}
	$none_aborted = 0
	  if $node->safe_psql('postgres',
		'SELECT count(*) FROM t WHERE id = ANY (\'{' . join(',', @aborted) . '}\'::int[])') != 0;
	if ($cycle % 5 == 0)
	{
		# Dead rows of aborted transactions go, and their heap TIDs are reused next cycle.
		$node->safe_psql('postgres', 'VACUUM t');
		my $verify = $node->safe_psql('postgres', q{SELECT ok, problems FROM hannoy_verify('t_idx')});
		if ($verify !~ /^t\|/)
		{
			diag("cycle $cycle: hannoy_verify: $verify");
			$verified = 0;
		}
	}
}
my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM t');
note(sprintf('%d crash cycles, %d rows committed by the clients, %d rows in the table, %d aborted, %.0f s',
	$cycles, scalar(keys %committed), $rows, scalar(keys %aborted), time - $started));
cmp_ok(scalar(keys %committed), '>', 20 * $cycles, 'the clients committed rows in every cycle');
ok($all_found, "$cycles crash cycles: every committed row is in the heap and found first by its own vector");
ok($none_aborted, "$cycles crash cycles: no row of a rolled-back transaction or savepoint is visible");
ok($ordered, "$cycles crash cycles: probes with aborted rows' vectors return rows in true distance order");
ok($verified, 'hannoy_verify finds the index sound after crashes and VACUUM');

# ---- The heap's WAL is durable before the index entry ------------------------------------------
# With the WAL writer asleep, the rows of an open transaction live only in WAL buffers; a scan
# makes the backend link them (a durable LMDB commit). An immediate shutdown then loses what
# was not flushed. Had the index entries become durable without the heap's WAL, the heap
# TIDs would be free after recovery, new rows would take them, and probes with the old
# vectors would return those new rows first, out of distance order.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET wal_writer_delay = '10s';
	SELECT pg_reload_conf();
	CREATE TABLE w (id int PRIMARY KEY, v real[]);
	INSERT INTO w SELECT i, vec(i) FROM generate_series(1, 100) i;
	CREATE INDEX w_idx ON w USING hannoy (v);
	CHECKPOINT;
});
my $open = $node->background_psql('postgres');
$open->query_safe('BEGIN');
$open->query_safe('INSERT INTO w SELECT i, vec(i) FROM generate_series(5000001, 5000300) i');
$open->query_safe('SELECT count(*) FROM (SELECT id FROM w ORDER BY v <-> vec(5000001) LIMIT 1) x');
$node->stop('immediate');
eval { $open->quit; };
$node->start;
$node->safe_psql('postgres', 'INSERT INTO w SELECT i, vec(i) FROM generate_series(6000001, 6000300) i');
is($node->safe_psql('postgres', 'SELECT count(*) FROM w WHERE id > 5000000 AND id < 6000000'),
	'0', 'WAL order: the open transaction\'s rows are gone after the crash');
is(disordered_probes('w', 5000001 .. 5000300), '',
	'WAL order: probes with the lost rows\' vectors return true nearest rows in order, never rows on reused TIDs');
is(missed_rows($node, 'w'), '', 'WAL order: every row inserted after the crash is found by its own vector');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET wal_writer_delay; SELECT pg_reload_conf();});

# ---- Crash during CREATE INDEX ----------------------------------------------------------------
$node->safe_psql('postgres', q{
	CREATE TABLE b (id int PRIMARY KEY, v real[]);
	INSERT INTO b SELECT i, vec(i) || vec(i + 7000000) || vec(i + 8000000) FROM generate_series(1, 30000) i;
});
my $db_dir = $node->data_dir . '/base/' . $node->safe_psql('postgres',
	q{SELECT oid FROM pg_database WHERE datname = 'postgres'});
my @before = glob("$db_dir/pgsql_tmp_hannoy_*");
my $build = start_session("SET max_parallel_maintenance_workers = 0;\nCREATE INDEX b_idx ON b USING hannoy (v);\n");
my $phase = '';
for (1 .. 300)
{
	$phase = $node->safe_psql('postgres', q{SELECT phase FROM pg_stat_progress_create_index});
	last if $phase =~ /building graph/;
	usleep(20_000);
}
my $builder_pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE application_name = 'crashload'});
ok($builder_pid =~ /^\d+$/, 'CREATE INDEX is still running when it is killed');
kill 'KILL', $builder_pid if $builder_pid =~ /^\d+$/;
end_session($build);
wait_until_up($node);
note("CREATE INDEX killed in phase '$phase'");
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_class WHERE relname = 'b_idx'}), '0',
	'crash during CREATE INDEX: the index does not exist after recovery');
my %had = map { $_ => 1 } @before;
my @left = grep { !$had{$_} && !/-lock$/ } glob("$db_dir/pgsql_tmp_hannoy_*");
note('files left by the crashed build: ' . join(' ', map { s{.*/}{}r } @left));
$node->safe_psql('postgres', 'CREATE INDEX b_idx ON b USING hannoy (v)');
is($node->safe_psql('postgres', q{SELECT ok FROM hannoy_verify('b_idx')}), 't',
	'crash during CREATE INDEX: a retry builds a sound index');
is($node->safe_psql('postgres', q{
	SET enable_seqscan = off; SET enable_bitmapscan = off; SET hannoy.ef_search = 100;
	SELECT count(*) FROM b r WHERE id % 100 = 0 AND id IS DISTINCT FROM (SELECT s.id FROM b s ORDER BY s.v <-> r.v LIMIT 1)}),
	'0', 'crash during CREATE INDEX: the rebuilt index finds rows by their own vectors');
my $file = $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('b_idx')});
ok(!grep({ $node->data_dir . "/$file" eq $_ } @left), 'the retry uses a new file, not the crashed build\'s');

# ---- Crash during REINDEX ------------------------------------------------------------------------
# The old relation file and its storage file stay in use; the next REINDEX removes the crashed
# one's storage file when it commits.
my $old_file = $node->data_dir . '/' . $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('b_idx')});
my %known = map { $_ => 1 } glob("$db_dir/pgsql_tmp_hannoy_*");
my $reindex = start_session("SET max_parallel_maintenance_workers = 0;\nREINDEX INDEX b_idx;\n");
for (1 .. 300)
{
	$phase = $node->safe_psql('postgres', q{SELECT phase FROM pg_stat_progress_create_index});
	last if $phase =~ /building graph/;
	usleep(20_000);
}
my $reindex_pid = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE application_name = 'crashload'});
ok($reindex_pid =~ /^\d+$/, 'REINDEX is still running when it is killed');
kill 'KILL', $reindex_pid if $reindex_pid =~ /^\d+$/;
end_session($reindex);
wait_until_up($node);
my @partial = grep { !$known{$_} && !/-lock$/ } glob("$db_dir/pgsql_tmp_hannoy_*");
is($node->data_dir . '/' . $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('b_idx')}), $old_file,
	'crash during REINDEX: the index keeps its previous file');
is($node->safe_psql('postgres', q{SELECT ok FROM hannoy_verify('b_idx')}), 't', 'crash during REINDEX: the index is sound');
is(missed_rows($node, 'b', 'id % 10 = 0'), '', 'crash during REINDEX: the index finds rows by their own vectors');
$node->safe_psql('postgres', 'REINDEX INDEX b_idx');
is(scalar(grep { -e $_ } @partial, $old_file), 0,
	'the next REINDEX removes the crashed build\'s file and the previous one (' . scalar(@partial) . ' partial)');

# ---- Crash during VACUUM: bulk deletion and graph repair --------------------------------------
my $vacuum_ok = 1;
for my $round (1 .. 3)
{
	$node->safe_psql('postgres', "DELETE FROM b WHERE id % 7 = $round");
	my $vac = start_session("SET vacuum_cost_delay = 2; SET vacuum_cost_limit = 200;\nVACUUM (VERBOSE) b;\n");
	my $target = $round == 1 ? 'vacuuming indexes' : 'cleaning up indexes';
	my $seen = '';
	for (1 .. 500)
	{
		$seen = $node->safe_psql('postgres', q{SELECT phase FROM pg_stat_progress_vacuum});
		last if $seen eq $target;
		usleep(10_000);
	}
	usleep(int(rand(300_000)));
	my $pid = $node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity WHERE application_name = 'crashload'});
	note("round $round: VACUUM in phase '$seen', killed");
	kill 'KILL', $pid if $pid ne '';
	end_session($vac);
	wait_until_up($node);
	my $verify = $node->safe_psql('postgres', q{SELECT ok, problems FROM hannoy_verify('b_idx')});
	if ($verify !~ /^t\|/)
	{
		diag("VACUUM round $round: $verify");
		$vacuum_ok = 0;
	}
	my $missed = missed_rows($node, 'b', 'id % 10 = 0');
	if ($missed ne '')
	{
		diag("VACUUM round $round: rows not found: $missed");
		$vacuum_ok = 0;
	}
}
ok($vacuum_ok, 'crash during VACUUM: after every crash the index is sound and finds every row');
$node->safe_psql('postgres', 'VACUUM b');
is($node->safe_psql('postgres', q{SELECT ok FROM hannoy_verify('b_idx')}), 't', 'a VACUUM after the crashes completes the repair');
is(missed_rows($node, 'b', 'id % 10 = 0'), '', 'and every row is still found by its own vector');

note(sprintf('total %.0f s', time - $started));
$node->stop;
done_testing();
