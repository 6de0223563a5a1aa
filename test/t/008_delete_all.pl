# Deleting everything, deleting the entry point, and VACUUM over a TID map whose size is an
# exact multiple of the 10,000 TIDs VACUUM reads at a time.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use Test::More;
use Time::HiRes qw(time);

my $node = hannoy_node('delete_all', autovacuum => 'off');

sub verify
{
	my ($index) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT ok, items, deleted_items, unreachable, heap_tids, array_to_string(problems, '; ')
		FROM hannoy_verify('$index')});
}

# Rows of $table (id, v) that an index probe with their own vector does not return first.
sub missed
{
	my ($table, $index) = @_;
	my $plan = $node->safe_psql('postgres', qq{
		SET enable_seqscan = off;
		EXPLAIN (COSTS OFF) SELECT count(*) FROM $table t
		WHERE (SELECT u.id FROM $table u ORDER BY u.v <-> t.v LIMIT 1) <> t.id;
	});
	like($plan, qr/Index Scan using $index/, "probes of $table use $index");
	return $node->safe_psql('postgres', qq{
		SET enable_seqscan = off;
		SELECT count(*) FROM $table t WHERE (SELECT u.id FROM $table u ORDER BY u.v <-> t.v LIMIT 1) <> t.id;
	});
}

# 1. Delete every row, VACUUM, insert again.
create_gaussian_mixture($node, 'items', 3000, 32, 20, 0.81);
$node->safe_psql('postgres', 'CREATE INDEX items_idx ON items USING hannoy (v)');
$node->safe_psql('postgres', 'DELETE FROM items');
is(verify('items_idx'), 't|3000|0|0|3000|', 'before VACUUM the deleted rows keep their entries');
$node->safe_psql('postgres', 'VACUUM items');
is(verify('items_idx'), 't|0|0|0|0|', 'after deleting every row and VACUUM the index is empty and sound');
is($node->safe_psql('postgres', q{SELECT items, deleted_items, max_level FROM hannoy_index_info('items_idx')}),
	'0|0|0', 'hannoy_index_info: no items, nothing deleted');
is($node->safe_psql('postgres', q{
	SET enable_seqscan = off;
	SELECT count(*) FROM (SELECT id FROM items ORDER BY v <-> (SELECT center FROM items_centers LIMIT 1) LIMIT 10) s;
}), 0, 'a scan of the emptied index returns nothing');
create_gaussian_mixture($node, 'items', 1000, 32, 20, 0.82, 3001);
create_gaussian_mixture($node, 'items', 1000, 32, 20, 0.83, 4001);
is(verify('items_idx'), 't|2000|0|0|2000|', 'rows inserted after that are indexed');
is(missed('items', 'items_idx'), 0, 'and each is found first by its own vector');
create_shifted_queries($node, 'queries', 'items', 'id % 20 = 0', 0.5);
my $recall = recall_at_k($node, 'items', 'queries', 10);
note sprintf('recall@10 of the refilled index: %.4f', $recall);
cmp_ok($recall, '>=', 0.95, 'recall@10 of the refilled index >= 0.95');

# 2. The entry point's row. An index built empty and filled one row per transaction: the
# entry point is the first row, then each row whose level exceeds every earlier one (the
# index's max_level rises exactly then).
create_gaussian_mixture($node, 'src', 1500, 32, 20, 0.84);
$node->safe_psql('postgres', q{
	CREATE TABLE ep (id int PRIMARY KEY, v real[]);
	CREATE INDEX ep_idx ON ep USING hannoy (v);
	CREATE TABLE ep_rises (id int, max_level int);
	CREATE PROCEDURE fill() LANGUAGE plpgsql AS $$
	DECLARE
		top int := -1;
		level int;
	BEGIN
		FOR i IN 1..1500 LOOP
			INSERT INTO ep SELECT id, v FROM src WHERE id = i;
			COMMIT;
			SELECT max_level INTO level FROM hannoy_index_info('ep_idx');
			IF level > top THEN
				top := level;
				INSERT INTO ep_rises VALUES (i, level);
				COMMIT;
			END IF;
		END LOOP;
	END $$;
});
my $t0 = time;
$node->safe_psql('postgres', 'CALL fill()');
note sprintf('1,500 single-row transactions in %.1f s', time - $t0);
my $rises = $node->safe_psql('postgres', q{SELECT string_agg(id || ':' || max_level, ' ' ORDER BY id) FROM ep_rises});
note "max_level rose at rows $rises";
my ($entry, $entry_level) = split /\|/,
	$node->safe_psql('postgres', 'SELECT id, max_level FROM ep_rises ORDER BY id DESC LIMIT 1');
is(verify('ep_idx'), 't|1500|0|0|1500|', 'the index filled row by row is sound');
$node->safe_psql('postgres', "DELETE FROM ep WHERE id = $entry");
is(missed('ep', 'ep_idx'), 0, 'with the entry point deleted (not yet vacuumed) every row is still found');
# Probes with a row's own vector start at that row; queries near the rows must be answered by
# the graph search alone, through the deleted entry point.
create_shifted_queries($node, 'ep_queries', 'ep', 'id % 15 = 0', 0.5);
my $recall_deleted_entry = recall_at_k($node, 'ep', 'ep_queries', 10);
note sprintf('recall@10 with the entry point deleted, before VACUUM: %.4f', $recall_deleted_entry);
cmp_ok($recall_deleted_entry, '>=', 0.95, 'recall@10 with the entry point deleted, before VACUUM >= 0.95');
# PostgreSQL 15 passes index access methods DEBUG2 as their message level, VERBOSE or not.
my ($ret, $out, $err) =
  $node->psql('postgres', 'SET client_min_messages = debug2; VACUUM (INDEX_CLEANUP ON) ep');
is($ret, 0, 'VACUUM after deleting the entry point succeeds');
like($err, qr/index "ep_idx": graph repaired around 1 deleted items, \d+ link lists rewritten, \d+ items relinked, entry point replaced/,
	"VACUUM replaced the entry point (row $entry, level $entry_level)");
is(verify('ep_idx'), 't|1499|0|0|1499|', 'the index verifies after the entry point was replaced');
is(missed('ep', 'ep_idx'), 0, 'every remaining row is found first by its own vector');
$recall = recall_at_k($node, 'ep', 'ep_queries', 10);
note sprintf('recall@10 after the entry point was deleted: %.4f', $recall);
cmp_ok($recall, '>=', 0.95, 'recall@10 after the entry point was deleted >= 0.95');
# The new entry point's row too, and then every row but one.
$node->safe_psql('postgres', 'DELETE FROM ep WHERE id IN (SELECT id FROM ep_rises)');
$node->safe_psql('postgres', 'VACUUM (INDEX_CLEANUP ON) ep');
my $left = $node->safe_psql('postgres', 'SELECT count(*) FROM ep');
is(verify('ep_idx'), "t|$left|0|0|$left|", 'every row where max_level rose deleted: the index verifies');
$node->safe_psql('postgres', 'DELETE FROM ep WHERE id <> (SELECT max(id) FROM ep); VACUUM (INDEX_CLEANUP ON) ep');
is(verify('ep_idx'), 't|1|0|0|1|', 'one row left: it is the entry point');
is(missed('ep', 'ep_idx'), 0, 'and it is found');

# 3. VACUUM reads the TID map 10,000 TIDs at a time: maps of exactly 10,000 and 20,000 TIDs
# (a full last chunk) must not make it loop.
create_gaussian_mixture($node, 'ten', 10000, 16, 20, 0.85);
$node->safe_psql('postgres', 'CREATE INDEX ten_idx ON ten USING hannoy (v)');
for my $case ([ 10000, 'exactly 10,000' ], [ 20000, 'exactly 20,000' ])
{
	my ($tids, $label) = @$case;
	my $count = $node->safe_psql('postgres', 'SELECT count(*) FROM ten');
	if ($count < $tids)
	{
		create_gaussian_mixture($node, 'ten', $tids - $count, 16, 20, 0.86,
			1 + $node->safe_psql('postgres', 'SELECT max(id) FROM ten'));
	}
	is($node->safe_psql('postgres', q{SELECT heap_tids FROM hannoy_verify('ten_idx', false)}), $tids,
		"the index holds $label TIDs");
	$node->safe_psql('postgres', 'DELETE FROM ten WHERE id % 97 = 0');
	my $started = time;
	($ret, $out, $err) = $node->psql('postgres',
		q{SET statement_timeout = '60s'; VACUUM (INDEX_CLEANUP ON) ten});
	my $elapsed = time - $started;
	is($ret, 0, "VACUUM over $label TIDs finishes") or diag($err);
	cmp_ok($elapsed, '<', 30, sprintf('in bounded time (%.1f s)', $elapsed));
	my $live = $node->safe_psql('postgres', 'SELECT count(*) FROM ten');
	is(verify('ten_idx'), "t|$live|0|0|$live|", "after VACUUM over $label TIDs the index verifies");
}

$node->stop;
done_testing();
