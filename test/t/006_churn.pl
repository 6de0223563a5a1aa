# Recall under churn: 20,000 seeded 64-dimensional vectors, then five rounds of deleting 10% of
# the rows at random, inserting as many new ones and VACUUM. After every round recall@10
# against exact search over the live rows stays at least 0.95 and within 0.02 of an index
# built fresh on the same rows, and hannoy_verify finds the file sound: every live row has its
# entry, nothing is left tombstoned, no list links a purged item, every item is reachable.
# Then 10,000 inserts without VACUUM leave (almost) no item unreachable. Also: UPDATE of the
# vector column (never HOT) is found at its new vector, and the old version's entry is gone
# after VACUUM.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use Test::More;
use Time::HiRes qw(time);

my $node = hannoy_node('churn');
my $rows = 20000;
create_gaussian_mixture($node, 'items', $rows, 64, 50, 0.17);
create_shifted_queries($node, 'queries', 'items', 'id % 200 = 0', 0.5);
my $started = time;
$node->safe_psql('postgres', 'CREATE INDEX items_idx ON items USING hannoy (v)');
note sprintf('built in %.1f s', time - $started);

# ok, live items, tombstoned items, unreachable items, heap TIDs and problems of an index
# (without the reachability check: $reachability false).
sub verify
{
	my ($index, $reachability) = @_;
	$reachability //= 'true';
	return $node->safe_psql('postgres', qq{
		SELECT ok, items, deleted_items, unreachable, heap_tids, array_to_string(problems, '; ')
		FROM hannoy_verify('$index', $reachability)});
}

my $next_id = $rows + 1;
for my $round (1 .. 5)
{
	my $t0 = time;
	# Delete 10% of the live rows, chosen by a seeded shuffle.
	$node->safe_psql('postgres', qq{
		SELECT setseed(0.$round);
		DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT $rows / 10);
	});
	# As many new rows, from the same mixture, in 4 transactions of 500 rows.
	for my $part (0 .. 3)
	{
		create_gaussian_mixture($node, 'items', $rows / 40, 64, 50, "0.$round$part", $next_id);
		$next_id += $rows / 40;
	}
	# Before VACUUM: deleted rows keep their entries (tombstoned items stay traversable).
	my ($ok, $items, $deleted, $unreachable, $tids) = split /\|/, verify('items_idx', 'false');
	is("$ok|$deleted|$tids", "t|0|" . ($rows + $rows / 10),
		"round $round: sound after deletes and inserts, deleted rows still indexed until VACUUM");
	$unreachable = (split /\|/, verify('items_idx'))[3];
	note "round $round: $unreachable live items unreachable after inserts, before VACUUM";

	$node->safe_psql('postgres', 'VACUUM items');
	is(verify('items_idx'), "t|$rows|0|0|$rows|",
		"round $round: after VACUUM every row has its entry, nothing tombstoned, all reachable");

	my $recall = recall_at_k($node, 'items', 'queries', 10);
	# The same rows with a fresh build.
	$node->safe_psql('postgres', q{
		DROP TABLE IF EXISTS fresh;
		CREATE TABLE fresh AS SELECT * FROM items;
		CREATE INDEX fresh_idx ON fresh USING hannoy (v);
	});
	my $fresh = recall_at_k($node, 'fresh', 'queries', 10);
	diag(sprintf('round %d: recall@10 %.4f after churn, %.4f fresh build (%.1f s)', $round, $recall,
		$fresh, time - $t0));
	cmp_ok($recall, '>=', 0.95, "round $round: recall@10 >= 0.95");
	cmp_ok($recall, '>=', $fresh - 0.02, "round $round: recall@10 within 0.02 of a fresh build");
}

# Inserts alone, without VACUUM: pruning takes the last incoming link of about one item in
# 200 inserted, and inserts relink such items every 1/16 of the index (1,024 ids here), so
# they do not pile up (about 50 here otherwise, at the rate measured before that).
for my $part (1 .. 20)
{
	create_gaussian_mixture($node, 'items', 500, 64, 50, sprintf('0.9%02d', $part), $next_id);
	$next_id += 500;
}
my ($ok, $items, $deleted, $unreachable) = split /\|/, verify('items_idx');
note "$unreachable live items unreachable after 10,000 inserts without VACUUM";
is($items, $rows + 10000, '10,000 more rows inserted');
cmp_ok($unreachable, '<=', 20, 'inserts alone leave few items unreachable (relinked every 1/16 of the index)');
$node->safe_psql('postgres', 'VACUUM items');
is(verify('items_idx'), sprintf('t|%d|0|0|%d|', $rows + 10000, $rows + 10000), 'and none after VACUUM');
$node->safe_psql('postgres', "DELETE FROM items WHERE id > $next_id - 10001; VACUUM items");
is(verify('items_idx'), "t|$rows|0|0|$rows|", 'the 10,000 rows deleted again');

# The graph of the churned index no longer links purged items: every id in a list is a live
# item (checked by hannoy_verify: "links to missing item" otherwise), and the index holds no
# more items than rows.
is($node->safe_psql('postgres', q{SELECT items, deleted_items FROM hannoy_index_info('items_idx')}),
	"$rows|0", 'hannoy_index_info: one item per row, none deleted');

# UPDATE of the vector column: a new heap version with a new index entry (never HOT).
$node->safe_psql('postgres', q{
	CREATE TABLE probe AS SELECT v AS old_v,
		(SELECT array_agg((x * -1 + 7)::real ORDER BY n) FROM unnest(v) WITH ORDINALITY u(x, n)) AS new_v
	FROM items WHERE id = (SELECT min(id) FROM items);
});
my $id = $node->safe_psql('postgres', 'SELECT min(id) FROM items');
my $probe = q{
	SET enable_seqscan = off;
	SELECT id || ':' || round((v <-> (SELECT %s FROM probe))::numeric, 4) FROM items
	ORDER BY v <-> (SELECT %s FROM probe) LIMIT 1;
};
my $plan = $node->safe_psql('postgres', q{
	SET enable_seqscan = off;
	EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY v <-> (SELECT new_v FROM probe) LIMIT 1;
});
like($plan, qr/Index Scan using items_idx/, 'probes use the index');
my $in_xact = $node->safe_psql('postgres', qq{
	BEGIN;
	UPDATE items SET v = (SELECT new_v FROM probe) WHERE id = $id;
	@{[sprintf($probe, 'new_v', 'new_v')]}
	COMMIT;
});
is($in_xact, "$id:0.0000", 'the updating transaction finds the new version by an exact probe');
is($node->safe_psql('postgres', sprintf($probe, 'new_v', 'new_v')), "$id:0.0000",
	'after commit the new version is found by an exact probe');
my $old = $node->safe_psql('postgres', sprintf($probe, 'old_v', 'old_v'));
unlike($old, qr/:0\.0000$/, "the old version's vector is not returned before VACUUM");
is($node->safe_psql('postgres', q{SELECT heap_tids FROM hannoy_verify('items_idx')}), $rows + 1,
	'before VACUUM the index holds both versions');
# One dead row is below the threshold under which VACUUM skips index vacuuming: ask for it.
$node->safe_psql('postgres', 'VACUUM (INDEX_CLEANUP ON) items');
$old = $node->safe_psql('postgres', sprintf($probe, 'old_v', 'old_v'));
unlike($old, qr/:0\.0000$/, "the old version's vector is not returned after VACUUM");
is(verify('items_idx'), "t|$rows|0|0|$rows|", 'after VACUUM only the new version is indexed');
is($node->safe_psql('postgres', sprintf($probe, 'new_v', 'new_v')), "$id:0.0000",
	'and the new version is still found');

$node->stop;
done_testing();
