# The C++/PostgreSQL error boundary: cancellations keep their SQLSTATE, failed builds leave
# nothing behind, and an error inside an LMDB write transaction never leaves LMDB's writer
# lock held (other sessions can write to the index at once).
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use Test::More;

my $node = hannoy_node('errors');
create_gaussian_mixture($node, 'items', 30000, 96, 20, 0.1);

sub hannoy_file_count
{
	return $node->safe_psql('postgres', q{
		SELECT count(*) FROM pg_ls_dir('base/' || (SELECT oid FROM pg_database WHERE datname = 'postgres')) f
		WHERE f LIKE 'pgsql_tmp_hannoy_%' AND f NOT LIKE '%-lock'});
}

# statement_timeout during CREATE INDEX: the SQLSTATE survives the trip through C++.
my ($ret, $stdout, $stderr) = $node->psql('postgres', q{
	\set VERBOSITY verbose
	SET statement_timeout = '300ms';
	CREATE INDEX items_idx ON items USING hannoy (v);
});
like($stderr, qr/ERROR:  57014: canceling statement due to statement timeout/,
	'a build cancelled by statement_timeout reports SQLSTATE 57014');
is(hannoy_file_count(), 0, 'the cancelled build left no file');

# pg_cancel_backend from another session, in the middle of the graph phase.
my $builder = $node->background_psql('postgres', on_error_stop => 0);
$builder->query_until(qr/started/, q{
	\echo started
	CREATE INDEX items_idx ON items USING hannoy (v);
});
$node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM pg_stat_progress_create_index WHERE phase LIKE 'building index: %graph%'
}) or die 'the build never reached its graph phase';
$node->safe_psql('postgres',
	q{SELECT pg_cancel_backend(pid) FROM pg_stat_progress_create_index});
my $cancelled = $builder->query('SELECT 1');
like($builder->{stderr}, qr/canceling statement due to user request/, 'pg_cancel_backend stops a build');
$builder->quit;
is(hannoy_file_count(), 0, 'the cancelled build left no file');

# The build works afterwards.
$node->safe_psql('postgres', 'CREATE INDEX items_idx ON items USING hannoy (v)');
is(hannoy_file_count(), 1, 'a retried build succeeds');

# An insert failing inside the LMDB write transaction, in a transaction left open: another
# session must still be able to write (LMDB's writer mutex was released) and read.
my $failing = $node->background_psql('postgres', on_error_stop => 0);
$failing->query('BEGIN');
$failing->query(q{INSERT INTO items VALUES (100001, '{1, 2, 3}')});
like($failing->{stderr}, qr/expected 96 dimensions, not 3/, 'a wrong dimension fails inside the insert');
my $other = $node->safe_psql('postgres', q{
	SET statement_timeout = '10s';
	INSERT INTO items SELECT 100002, v FROM items WHERE id = 1;
	SET enable_seqscan = off;
	SELECT id FROM items ORDER BY v <-> (SELECT v FROM items WHERE id = 1) LIMIT 2;
});
like($other, qr/^(1\n100002|100002\n1)$/, 'another session inserts and reads while the failed one is still open');
$failing->query('ROLLBACK');
$failing->quit;

# Row 100002 has row 1's vector: it joined row 1's item, so 30,000 items hold 30,001 rows.
my $verify = $node->safe_psql('postgres', q{SELECT ok, items, heap_tids FROM hannoy_verify('items_idx')});
is($verify, 't|30000|30001', 'the index is sound after all this');
$node->stop;
done_testing();
