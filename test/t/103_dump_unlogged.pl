# pg_dump / pg_restore recreate working hannoy indexes (with their options and operator
# classes, on plain and partitioned tables); an unlogged table's index after a crash is empty
# like its table, usable without error, and indexes new rows.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = hannoy_node('dump');
create_gaussian_mixture($node, 'items', 3000, 16, 10, 0.9);
$node->safe_psql('postgres', q{
	CREATE INDEX items_l2 ON items USING hannoy (v) WITH (m = 8, ef_construction = 32);
	CREATE INDEX items_cos ON items USING hannoy (v real_cosine_ops) WITH (quantization = 'binary');
	CREATE TABLE parts (id int, v real[]) PARTITION BY RANGE (id);
	CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (0) TO (1500);
	CREATE TABLE parts_2 PARTITION OF parts FOR VALUES FROM (1500) TO (10000);
	INSERT INTO parts SELECT id, v FROM items;
	CREATE INDEX parts_idx ON parts USING hannoy (v);
});

my %queries = (
	items_l2 => 'SELECT id FROM items ORDER BY v <-> (SELECT v FROM items WHERE id = 42) LIMIT 5',
	items_cos => 'SELECT id FROM items ORDER BY v <=> (SELECT v FROM items WHERE id = 42) LIMIT 5',
	parts_1_v_idx => 'SELECT id FROM parts ORDER BY v <-> (SELECT v FROM items WHERE id = 2042) LIMIT 5',
);

sub check_db
{
	my ($db, $what) = @_;
	for my $index (sort keys %queries)
	{
		my $query = $queries{$index};
		my $exact = $node->safe_psql($db, "SET enable_indexscan = off; $query");
		like($node->safe_psql($db, "SET enable_seqscan = off; EXPLAIN (COSTS OFF) $query"),
			qr/Index Scan using $index/, "$what: $index is used");
		is($node->safe_psql($db, "SET enable_seqscan = off; SET hannoy.ef_search = 100; $query"), $exact,
			"$what: $index answers");
	}
	is($node->safe_psql($db, q{SELECT m, ef_construction, items, matches_metapage FROM hannoy_index_info('items_l2')}),
		'8|32|3000|t', "$what: options and rows of items_l2");
	is($node->safe_psql($db, q{SELECT pg_get_indexdef('items_cos'::regclass)}),
		q{CREATE INDEX items_cos ON public.items USING hannoy (v real_cosine_ops) WITH (quantization='binary')},
		"$what: definition of items_cos");
	is($node->safe_psql($db, q{SELECT sum(items) FROM pg_class c, hannoy_index_info(c.oid)
		WHERE c.relname IN ('parts_1_v_idx', 'parts_2_v_idx')}), '3000', "$what: partition indexes hold every row");
}
check_db('postgres', 'original');

my $dump = $node->basedir . '/dump.custom';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore');
check_db('restored', 'pg_restore');

my $plain = $node->basedir . '/dump.sql';
$node->command_ok([ 'pg_dump', '-f', $plain, '-d', $node->connstr('postgres') ], 'pg_dump, plain format');
$node->safe_psql('postgres', 'CREATE DATABASE restored_plain');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $plain, '-d', $node->connstr('restored_plain') ],
	'restore with psql');
check_db('restored_plain', 'plain dump');

# Unlogged table: a clean restart keeps rows and index; a crash empties both.
$node->safe_psql('postgres', q{
	CREATE UNLOGGED TABLE u (id int, v real[]);
	INSERT INTO u SELECT id, v FROM items WHERE id <= 1000;
	CREATE INDEX u_idx ON u USING hannoy (v);
});
my $uselect = q{SELECT id FROM u ORDER BY v <-> (SELECT v FROM items WHERE id = 7) LIMIT 1};
my $uquery = "SET enable_seqscan = off; $uselect";
$node->restart;
is($node->safe_psql('postgres', $uquery), '7', 'unlogged index after a clean restart');
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', 'SELECT count(*) FROM u'), '0', 'unlogged table empty after a crash');
like($node->safe_psql('postgres', "SET enable_seqscan = off; EXPLAIN (COSTS OFF) $uselect"), qr/Index Scan using u_idx/,
	'its index is used after the crash');
my ($ret, $stdout, $stderr) = $node->psql('postgres', $uquery);
is("$ret|$stdout|$stderr", '0||', 'and answers with no rows and no error');
is($node->safe_psql('postgres', q{SELECT items, matches_metapage FROM hannoy_index_info('u_idx')}), '0|t',
	'the index file was reset to empty');
$node->safe_psql('postgres', q{INSERT INTO u SELECT id, v FROM items WHERE id BETWEEN 5 AND 9});
is($node->safe_psql('postgres', $uquery), '7', 'new rows are found');
is($node->safe_psql('postgres', q{SELECT ok, items FROM hannoy_verify('u_idx')}), 't|5', 'the index is sound');
$node->restart;
is($node->safe_psql('postgres', $uquery), '7', 'and kept across a clean restart');
$node->stop;
done_testing();
