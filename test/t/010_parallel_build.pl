# Parallel builds: workers scan the heap and link the graph with the leader; the graph is as
# good as a serial build's; bad rows met by a worker fail the build cleanly; a small
# maintenance_work_mem moves the graph to a temporary file; cancellation is prompt and leaves
# no file; pg_stat_progress_create_index shows hannoy's phases.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use Test::More;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time);

my $node = hannoy_node('parallel', max_worker_processes => 8, max_parallel_workers => 8,
	max_parallel_maintenance_workers => 2, log_min_messages => 'debug1');
create_gaussian_mixture($node, 'items', 20000, 64, 100, 0.31, 1, 0.8);
create_shifted_queries($node, 'queries', 'items', 'id % 50 = 0', 0.3);
$node->safe_psql('postgres', 'ALTER TABLE items SET (parallel_workers = 2)');

sub build
{
	my ($workers, $settings, $index_spec) = @_;
	$settings //= '';
	$index_spec //= '(v) WITH (m = 16, ef_construction = 64)';
	my $log_offset = -s $node->logfile;
	$node->safe_psql('postgres', 'DROP INDEX IF EXISTS items_idx');
	my $started = time;
	$node->safe_psql('postgres', qq{
		SET max_parallel_maintenance_workers = $workers; $settings
		CREATE INDEX items_idx ON items USING hannoy $index_spec;
	});
	my $elapsed = time - $started;
	my $log = slurp_file($node->logfile, $log_offset);
	my ($launched) = $log =~ /building index "items_idx" with (\d+) parallel workers/;
	my $verify = $node->safe_psql('postgres',
		q{SELECT ok, items, unreachable, problems FROM hannoy_verify('items_idx')});
	is($verify, 't|20000|0|{}', "index built with $workers workers is sound");
	my $recall = recall_at_k($node, 'items', 'queries', 10, 'SET hannoy.ef_search = 40;');
	diag(sprintf('%s, %d workers requested, %s launched: built in %.2f s, recall@10 %.4f', $index_spec,
		$workers, $launched // 'none', $elapsed, $recall));
	return ($recall, $launched // 0);
}

my ($serial, $none) = build(0);
is($none, 0, 'no worker for a serial build');
my ($one, $launched1) = build(1);
is($launched1, 1, 'one worker took part');
my ($two, $launched2) = build(2);
is($launched2, 2, 'two workers took part');
cmp_ok(abs($one - $serial), '<=', 0.005, 'recall with one worker within 0.005 of the serial build');
cmp_ok(abs($two - $serial), '<=', 0.005, 'recall with two workers within 0.005 of the serial build');

# Every kind of index builds in parallel: binary codes (written by the leader once every row
# is loaded, after the workers opened the file), cosine (normalised vectors) and inner product
# (largest norm known only after loading).
my ($binary_serial) = build(0, '', q{(v) WITH (quantization = 'binary')});
my ($binary_two, $binary_launched) = build(2, '', q{(v) WITH (quantization = 'binary')});
is($binary_launched, 2, 'binary codes: two workers took part');
cmp_ok(abs($binary_two - $binary_serial), '<=', 0.01, 'binary codes: recall with two workers within 0.01 of serial');
for my $opclass ('real_cosine_ops', 'real_ip_ops')
{
	my (undef, $launched) = build(2, '', "(v $opclass)");
	is($launched, 2, "$opclass: two workers took part");
}

# maintenance_work_mem smaller than the graph (20,000 items need about 5 MB): the graph
# goes to a temporary file, and nothing is left of it afterwards.
my ($small) = build(2, q{SET maintenance_work_mem = '1MB';});
cmp_ok(abs($small - $serial), '<=', 0.005, 'graph in a temporary file: same quality');
my $tmp = $node->data_dir . '/base/pgsql_tmp';
my @left = -d $tmp ? glob("$tmp/pgsql_tmp_hannoy_graph_*") : ();
is(scalar(@left), 0, 'no temporary graph file left');

# Rows with the wrong dimension spread over the table: every participant meets one.
$node->safe_psql('postgres', q{
	CREATE TABLE bad (id int, v real[]);
	ALTER TABLE bad SET (parallel_workers = 2);
	INSERT INTO bad SELECT id, v FROM items;
	UPDATE bad SET v = v[1:63] WHERE id % 997 = 0;
});
my $before = scalar(storage_files($node));
my ($ret, $out, $err) = $node->psql('postgres', q{
	SET max_parallel_maintenance_workers = 2;
	CREATE INDEX bad_idx ON bad USING hannoy (v);
});
isnt($ret, 0, 'a build with bad rows fails');
like($err, qr/expected 64 dimensions, not 63/, 'with the dimension error');
is(scalar(storage_files($node)), $before, 'and leaves no storage file');
$node->safe_psql('postgres', 'DELETE FROM bad WHERE id % 997 = 0');
$node->safe_psql('postgres', 'SET max_parallel_maintenance_workers = 2; CREATE INDEX bad_idx ON bad USING hannoy (v)');
is($node->safe_psql('postgres', q{SELECT ok FROM hannoy_verify('bad_idx')}), 't', 'the fixed table builds');

# Cancellation: a statement timeout stops a parallel build within about a second.
$before = scalar(storage_files($node));
my $started = time;
($ret, $out, $err) = $node->psql('postgres', q{
	SET max_parallel_maintenance_workers = 2; SET statement_timeout = '700ms';
	CREATE INDEX slow_idx ON items USING hannoy (v) WITH (m = 48, ef_construction = 800);
});
my $elapsed = time - $started;
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout cancels the build');
cmp_ok($elapsed, '<', 2.5, sprintf('promptly (%.2f s for a 0.7 s timeout)', $elapsed));
is(scalar(storage_files($node)), $before, 'a cancelled build leaves no storage file');

# Progress: another session sees the phases and tuples_done moving.
my $bg = $node->background_psql('postgres');
$bg->query_until(qr/started/, q{
	SET max_parallel_maintenance_workers = 1;
	\echo started
	CREATE INDEX progress_idx ON items USING hannoy (v) WITH (m = 32, ef_construction = 400);
});
my %phases;
my @graph_done;
for (1 .. 600)
{
	my $row = $node->safe_psql('postgres', q{
		SELECT phase || '|' || tuples_done || '|' || tuples_total FROM pg_stat_progress_create_index});
	last if $row eq '' && %phases;
	if ($row ne '')
	{
		my ($phase, $done, $total) = split /\|/, $row;
		$phases{$phase} = 1;
		push @graph_done, $done if $phase =~ /building graph$/ && $total == 20000;
	}
	select(undef, undef, undef, 0.05);
}
$bg->quit;
ok($phases{'building index: building graph'}, 'progress shows the graph phase');
my %distinct = map { $_ => 1 } @graph_done;
cmp_ok(scalar(keys %distinct), '>=', 2, 'tuples_done moves while the graph is built');
note('phases seen: ' . join(', ', sort keys %phases));
is($node->safe_psql('postgres', q{SELECT ok FROM hannoy_verify('progress_idx')}), 't', 'that index is sound');

done_testing();
