# Recall@10 of every opclass against exact search, on seeded data:
#  - euclidean, cosine, inner product and manhattan: 10,000 64-dimensional vectors (a Gaussian
#    mixture), at least 0.95 at default settings;
#  - hamming: 10,000 random 256-bit strings, which have no structure to exploit, at least 0.95
#    with ef_search 400;
#  - binary quantization with re-ranking (euclidean, cosine, manhattan): 5,000 256-dimensional
#    vectors of overlapping clusters, at least 0.90 at default settings.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use Test::More;

my $node = hannoy_node('metrics');
create_gaussian_mixture($node, 'items', 10000, 64, 50, 0.5);
create_shifted_queries($node, 'queries', 'items', 'id <= 100', 0.3);

my %opclass = ('<->' => 'real_l2_ops', '<=>' => 'real_cosine_ops', '<#>' => 'real_ip_ops', '<+>' => 'real_l1_ops');
for my $op (sort keys %opclass)
{
	$node->safe_psql('postgres', "CREATE INDEX metric_idx ON items USING hannoy (v $opclass{$op})");
	my $recall = recall_within_distance($node, 'items', 'queries', 10, $op);
	diag(sprintf('%-16s recall@10 at ef_search 40: %.4f', $opclass{$op}, $recall));
	cmp_ok($recall, '>=', 0.95, "$opclass{$op}: recall\@10 >= 0.95 at default settings");
	my $verify = $node->safe_psql('postgres', q{SELECT ok FROM hannoy_verify('metric_idx')});
	is($verify, 't', "$opclass{$op}: the graph verifies");
	$node->safe_psql('postgres', 'DROP INDEX metric_idx');
}

# Hamming on random bit strings.
$node->safe_psql('postgres', q{
	SELECT setseed(0.6);
	CREATE TABLE bits (id int PRIMARY KEY, v bit(256));
	INSERT INTO bits SELECT i, (SELECT string_agg(CASE WHEN random() < 0.5 THEN '0' ELSE '1' END, '')
								FROM generate_series(1, 256) WHERE i > 0)::bit(256)
	FROM generate_series(1, 10100) i;
	CREATE TABLE bit_queries AS SELECT id AS qid, v FROM bits WHERE id > 10000;
	DELETE FROM bits WHERE id > 10000;
	CREATE INDEX bits_idx ON bits USING hannoy (v);
});
my $recall = recall_within_distance($node, 'bits', 'bit_queries', 10, '<~>', 'SET hannoy.ef_search = 400;');
my $recall40 = recall_within_distance($node, 'bits', 'bit_queries', 10, '<~>');
diag(sprintf('bit_hamming_ops  recall@10 at ef_search 400: %.4f (at 40: %.4f)', $recall, $recall40));
cmp_ok($recall, '>=', 0.95, 'bit_hamming_ops: recall@10 >= 0.95 on random 256-bit strings at ef_search 400');

# Binary quantization with re-ranking on 256 dimensions.
create_gaussian_mixture($node, 'wide', 5000, 256, 100, 0.7, 1, 1);
create_shifted_queries($node, 'wide_queries', 'wide', 'id <= 50', 0.2);
for my $op ('<->', '<=>', '<+>')
{
	$node->safe_psql('postgres',
		"CREATE INDEX bq_idx ON wide USING hannoy (v $opclass{$op}) WITH (quantization = 'binary')");
	my $recall = recall_within_distance($node, 'wide', 'wide_queries', 10, $op);
	diag(sprintf('%-16s binary quantization recall@10 at ef_search 40: %.4f', $opclass{$op}, $recall));
	cmp_ok($recall, '>=', 0.90, "$opclass{$op} with binary quantization: recall\@10 >= 0.90");
	$node->safe_psql('postgres', 'DROP INDEX bq_idx');
}

$node->stop;
done_testing();
