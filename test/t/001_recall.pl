# Recall of index scans against exact search: 10,000 seeded 64-dimensional vectors (a Gaussian
# mixture), 100 queries, default settings; recall@10 must be at least 0.95.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use Test::More;

my $node = hannoy_node('recall');
create_gaussian_mixture($node, 'items', 10000, 64, 50, 0.42);
create_shifted_queries($node, 'queries', 'items', 'id <= 100', 0.5);
my $started = time;
$node->safe_psql('postgres', 'CREATE INDEX items_idx ON items USING hannoy (v)');
note sprintf('built in %d s', time - $started);

my $plan = $node->safe_psql('postgres',
	q{EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY v <-> (SELECT v FROM queries LIMIT 1) LIMIT 10});
like($plan, qr/Index Scan using items_idx/, 'the planner uses the index for ORDER BY <-> LIMIT');

my $recall = recall_at_k($node, 'items', 'queries', 10);
diag(sprintf('recall@10 at default settings (ef_search 40): %.4f', $recall));
cmp_ok($recall, '>=', 0.95, 'recall@10 >= 0.95 at default settings');

my $recall_ef10 = recall_at_k($node, 'items', 'queries', 10, 'SET hannoy.ef_search = 10;');
my $recall_ef200 = recall_at_k($node, 'items', 'queries', 10, 'SET hannoy.ef_search = 200;');
diag(sprintf('recall@10 at ef_search 10: %.4f, at 200: %.4f', $recall_ef10, $recall_ef200));
cmp_ok($recall_ef200, '>=', $recall, 'a wider beam does not lose recall');
cmp_ok($recall_ef200, '>=', 0.99, 'recall@10 >= 0.99 at ef_search 200');

# Inserts after the build keep the quality.
create_gaussian_mixture($node, 'items', 5000, 64, 50, 0.43, 10001);
my $after = recall_at_k($node, 'items', 'queries', 10);
diag(sprintf('recall@10 after 5,000 inserts: %.4f', $after));
cmp_ok($after, '>=', 0.95, 'recall@10 >= 0.95 after inserts');

# Inserts may prune an item's last incoming link; VACUUM relinks such items.
$node->safe_psql('postgres', 'VACUUM items');
my $verify = $node->safe_psql('postgres', q{SELECT ok, items, unreachable FROM hannoy_verify('items_idx')});
is($verify, 't|15000|0', 'after VACUUM the graph verifies: every item present and reachable');

$node->stop;
done_testing();
