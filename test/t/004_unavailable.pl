# A hannoy index whose storage file is missing or belongs to another index never answers with
# empty or partial results: the planner avoids it (exact results by sequential scan) and a
# forced index scan fails with a hint to REINDEX, which repairs it.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use File::Copy;
use Test::More;

my $node = hannoy_node('unavailable');
create_gaussian_mixture($node, 'a', 2000, 16, 5, 0.2);
create_gaussian_mixture($node, 'b', 2000, 16, 5, 0.3);
$node->safe_psql('postgres', 'CREATE INDEX a_idx ON a USING hannoy (v); CREATE INDEX b_idx ON b USING hannoy (v)');
my $data = $node->data_dir;
my $a_file = $data . '/' . $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('a_idx')});
my $b_file = $data . '/' . $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('b_idx')});
my $query = q{SELECT id FROM a ORDER BY v <-> (SELECT v FROM a WHERE id = 7) LIMIT 5};
my $exact = $node->safe_psql('postgres', "SET enable_indexscan = off; $query");

sub check_unavailable
{
	my ($what, $message) = @_;
	$node->restart; # no backend keeps the old file open
	my $plan = $node->safe_psql('postgres', "EXPLAIN (COSTS OFF) $query");
	unlike($plan, qr/Index Scan using a_idx/, "$what: the planner does not use the index");
	is($node->safe_psql('postgres', $query), $exact, "$what: results are exact");
	my ($ret, $stdout, $stderr) = $node->psql('postgres', "SET enable_seqscan = off; $query");
	like($stderr, $message, "$what: a forced index scan fails clearly");
	like($stderr, qr/HINT:  REINDEX the index/, "$what: the error says to REINDEX");
	is($stdout, '', "$what: no partial result");
}

# Missing file.
$node->stop;
move($a_file, "$a_file.away") or die;
$node->start;
my $plan = $node->safe_psql('postgres', "EXPLAIN (COSTS OFF) $query");
unlike($plan, qr/Index Scan using a_idx/, 'missing file: the planner does not use the index');
is($node->safe_psql('postgres', $query), $exact, 'missing file: results are exact');
my ($ret, $stdout, $stderr) = $node->psql('postgres', "SET enable_seqscan = off; $query");
like($stderr, qr/hannoy index "a_idx" is not available on this server/, 'missing file: a forced scan fails clearly');
like($stderr, qr/HINT:  REINDEX the index/, 'missing file: the error says to REINDEX');
($ret, $stdout, $stderr) = $node->psql('postgres', q{INSERT INTO a SELECT 99999, v FROM a WHERE id = 1});
like($stderr, qr/is not available on this server/, 'missing file: inserts fail rather than lose entries');

# Foreign file: another index's file in its place.
$node->stop;
copy($b_file, $a_file) or die;
check_unavailable('foreign file', qr/hannoy index "a_idx" does not match its storage file/);

# REINDEX repairs it.
$node->safe_psql('postgres', 'REINDEX INDEX a_idx');
is($node->safe_psql('postgres', "SET enable_seqscan = off; $query"), $exact, 'after REINDEX the index answers');
like($node->safe_psql('postgres', "EXPLAIN (COSTS OFF) $query"), qr/Index Scan using a_idx/,
	'after REINDEX the planner uses the index');
$node->stop;
done_testing();
