# Concurrent writers and readers: 4 clients insert (single statements, multi-statement
# transactions, rollbacks) while 2 clients search, for 30 s; then every committed row is
# found first by an index probe with its own vector, and the file verifies. Then the same with
# deletes and VACUUM running while rows are inserted. No client may see an error (inserts and
# searches at READ COMMITTED have no serialization failures to expect).
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use Test::More;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time);

my $node = hannoy_node('concurrent', max_connections => 40, autovacuum => 'off');
create_gaussian_mixture($node, 'items', 5000, 64, 50, 0.71);
$node->safe_psql('postgres', q{
	CREATE SEQUENCE items_id_seq START 1000001;
	ALTER TABLE items ALTER COLUMN id SET DEFAULT nextval('items_id_seq');
	CREATE INDEX items_idx ON items USING hannoy (v);
});

# New rows from the same mixture: :n rows around center :c.
my $insert = q{
	INSERT INTO items (v)
	SELECT (SELECT array_agg((center[d] + (random() * 2 - 1) * 1.7)::real ORDER BY d)
			FROM generate_series(1, 64) d WHERE g > 0)
	FROM items_centers, generate_series(1, :n) g WHERE c = :c;
};

# Two batches in one transaction ended by $end, with a scan between them that flushes the
# first one early.
sub two_batches
{
	my ($end) = @_;
	return qq{
		\\set c random(1, 50)
		\\set n random(1, 10)
		BEGIN;
		$insert
		SELECT id FROM items ORDER BY v <-> (SELECT center FROM items_centers WHERE c = :c) LIMIT 5;
		$insert
		$end;
	};
}

my %writer_scripts = (
	'001_insert@4' => qq{
		\\set c random(1, 50)
		\\set n random(1, 10)
		$insert
	},
	'002_transaction@2' => two_batches('COMMIT'),
	# Rolled back: before and after its batch was flushed by a scan.
	'003_rollback@1' => two_batches('ROLLBACK'),
);
my $search = q{
	\set c random(1, 50)
	SELECT id FROM items
	ORDER BY v <-> (SELECT array_agg((center[d] + 0.5)::real ORDER BY d)
					FROM items_centers, generate_series(1, 64) d WHERE c = :c)
	LIMIT 10;
};

# Starts pgbench in the background with one script; returns a handle for finish_pgbench().
sub start_pgbench
{
	my ($name, $clients, $seconds, $script) = @_;
	my $file = $node->basedir . "/$name.sql";
	open my $fh, '>', $file or die "$file: $!";
	print $fh $script;
	close $fh;
	my %run = (name => $name, out => '', err => '');
	$run{handle} = IPC::Run::start(
		[ 'pgbench', '-n', '-c', $clients, '-j', $clients, '-T', $seconds, '-f', $file,
			'-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', \$run{out}, '2>', \$run{err});
	return \%run;
}

sub finish_pgbench
{
	my ($run) = @_;
	ok($run->{handle}->finish, "$run->{name}: pgbench succeeded");
	unlike($run->{err}, qr/error|abort/i, "$run->{name}: no client saw an error");
	my ($done) = $run->{out} =~ /number of transactions actually processed: (\d+)/;
	note "$run->{name}: " . ($done // 0) . ' transactions';
	return $done // 0;
}

# Every committed row has exactly one entry, reachable in the graph (hannoy_verify), and is
# returned first by an index scan for its own vector (a query equal to a stored vector starts
# the search at it, so no row may be missed).
sub check_all_found
{
	my ($label) = @_;
	my $probe = q{
		SELECT count(*) FROM items t WHERE (SELECT u.id FROM items u ORDER BY u.v <-> t.v LIMIT 1) <> t.id
	};
	my $plan = $node->safe_psql('postgres', "SET enable_seqscan = off; EXPLAIN (COSTS OFF) $probe");
	like($plan, qr/Index Scan using items_idx on items u/, "$label: the probes use the index");
	my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM items');
	is($node->safe_psql('postgres', q{
		SELECT ok, deleted_items, unreachable, heap_tids, array_to_string(problems, '; ')
		FROM hannoy_verify('items_idx')}),
		"t|0|0|$rows|", "$label: after VACUUM the index verifies, one entry per committed row, all reachable");
	my $missed = $node->safe_psql('postgres', "SET enable_seqscan = off; $probe");
	is($missed, '0', "$label: each of the $rows committed rows is found first by its own vector");
	return $rows;
}

# 1. Four writers and two readers for 30 s.
my $started = time;
my $readers = start_pgbench('readers', 2, 30, $search);
$node->pgbench('-n -c 4 -j 4 -T 30', 0, [qr{actually processed: \d+}], [qr{^$}],
	'writers: 4 clients inserting for 30 s', \%writer_scripts);
finish_pgbench($readers);
note sprintf('concurrent phase took %.1f s', time - $started);
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM items');
cmp_ok($before, '>', 5500, "writers committed rows ($before in all)");
# Few dead rows may be left: make sure VACUUM does not skip the index (INDEX_CLEANUP AUTO).
$node->safe_psql('postgres', 'VACUUM (INDEX_CLEANUP ON) items');
check_all_found('inserts with readers');

# 2. Writers, a deleter and VACUUM at the same time, 15 s.
$started = time;
my @background = (
	start_pgbench('readers2', 1, 15, $search),
	start_pgbench('deleter', 1, 15, q{
		\set r random(1, 25000)
		\set from case when :r <= 5000 then :r else 1000000 + :r - 5000 end
		DELETE FROM items WHERE id IN (SELECT id FROM items WHERE id >= :from ORDER BY id LIMIT 4);
		\sleep 10 ms
	}),
	start_pgbench('vacuum', 1, 15, q{
		VACUUM items;
		\sleep 500 ms
	}));
my %writer_scripts2 = map { (s/^(\d+)_/1$1_/r) => $writer_scripts{$_} } keys %writer_scripts;
$node->pgbench('-n -c 3 -j 3 -T 15', 0, [qr{actually processed: \d+}], [qr{^$}],
	'writers: 3 clients inserting for 15 s while rows are deleted and vacuumed', \%writer_scripts2);
finish_pgbench($_) for @background;
note sprintf('concurrent phase with deletes took %.1f s', time - $started);
# Few dead rows may be left: make sure VACUUM does not skip the index (INDEX_CLEANUP AUTO).
$node->safe_psql('postgres', 'VACUUM (INDEX_CLEANUP ON) items');
check_all_found('inserts, deletes and VACUUM');

$node->stop;
done_testing();
