# Tablespaces and databases: ALTER INDEX / ALTER TABLE ... SET TABLESPACE, ALTER INDEX ALL IN
# TABLESPACE, REINDEX (TABLESPACE), ALTER DATABASE ... SET TABLESPACE, CREATE DATABASE from a
# template with STRATEGY WAL_LOG and FILE_COPY, DROP DATABASE. After each, the index is used
# and answers like an exact scan, and storage files exist exactly where the index lives.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = hannoy_node('tablespaces');
my $ts_dir = PostgreSQL::Test::Utils::tempdir_short();
$node->safe_psql('postgres', "CREATE TABLESPACE ts1 LOCATION '$ts_dir'; CREATE DATABASE src");
$node->safe_psql('src', 'CREATE EXTENSION hannoy');

# The table, an index in the database's tablespace and one in ts1.
sub populate
{
	my ($db) = @_;
	$node->safe_psql($db, q{
		CREATE TABLE t (id int PRIMARY KEY, v real[], w real[]);
		INSERT INTO t SELECT i, ARRAY[sin(i), cos(i), sin(2 * i), cos(3 * i)]::real[],
			ARRAY[i % 97, i % 89]::real[] FROM generate_series(1, 3000) i;
		CREATE INDEX t_idx ON t USING hannoy (v);
		CREATE INDEX w_idx ON t USING hannoy (w) TABLESPACE ts1;
	});
}
populate('postgres');
populate('src');

# Storage files (not lock files) in the data directory and in ts1.
sub files
{
	return scalar(storage_files($node, $node->data_dir . '/base/*', "$ts_dir/PG_*/*"));
}

my $query_v = 'SELECT id FROM t ORDER BY v <-> (SELECT v FROM t WHERE id = 1234) LIMIT 5';
my $query_w = q{SELECT id FROM t ORDER BY w <-> '{40, 20.5}' LIMIT 3};

# The index is used, answers like an exact scan, holds every row, and its file is in place.
sub check_index
{
	my ($db, $index, $what, $where) = @_;
	my $query = $index eq 't_idx' ? $query_v : $query_w;
	my $exact = $node->safe_psql($db, "SET enable_indexscan = off; $query");
	like($node->safe_psql($db, "SET enable_seqscan = off; EXPLAIN (COSTS OFF) $query"),
		qr/Index Scan using $index/, "$what: $db.$index is used");
	is($node->safe_psql($db, "SET enable_seqscan = off; $query"), $exact, "$what: $db.$index answers");
	my ($file, $matches, $items) = split /\|/,
	  $node->safe_psql($db, "SELECT file, matches_metapage, items FROM hannoy_index_info('$index')");
	is("$matches|$items", 't|' . $node->safe_psql($db, 'SELECT count(*) FROM t'),
		"$what: $db.$index file matches and holds every row");
	like($file, $where, "$what: $db.$index file location");
	ok(-e $node->data_dir . "/$file", "$what: $db.$index file exists");
}

my $in_ts1 = qr{^pg_tblspc/\d+/PG_15_\d+/\d+/pgsql_tmp_hannoy_\d+_\d+$};
my $in_base = qr{^base/\d+/pgsql_tmp_hannoy_\d+_\d+$};
check_index('postgres', 't_idx', 'built', $in_base);
check_index('postgres', 'w_idx', 'built', $in_ts1);
is(files(), 4, 'four storage files');

# A session that has both indexes open keeps working across moves.
my $reader = $node->background_psql('postgres');
$reader->query_safe("SET enable_seqscan = off; $query_v");

# ALTER INDEX SET TABLESPACE, with rows inserted before it in the same transaction (linked into
# the old file, then carried over) and a scan after it.
my $old = $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('t_idx')});
is($node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO t SELECT i, ARRAY[i, i, i, i]::real[], ARRAY[i, i]::real[] FROM generate_series(10001, 10010) i;
	ALTER INDEX t_idx SET TABLESPACE ts1;
	SET LOCAL enable_seqscan = off;
	SELECT id FROM t ORDER BY v <-> '{10005, 10005, 10005, 10005}' LIMIT 1;
	COMMIT;
}), '10005', 'rows inserted before the move are found after it, in the same transaction');
check_index('postgres', 't_idx', 'ALTER INDEX SET TABLESPACE', $in_ts1);
ok(!-e $node->data_dir . "/$old", 'ALTER INDEX SET TABLESPACE: the old file is gone');
is(files(), 4, 'four storage files');
is($reader->query_safe($query_v), $node->safe_psql('postgres', "SET enable_indexscan = off; $query_v"),
	'a session that had the index open answers after the move');

# Rolled back, also in a savepoint: the index stays where it was, the copy is removed.
$old = $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('t_idx')});
$node->safe_psql('postgres', q{BEGIN; ALTER INDEX t_idx SET TABLESPACE pg_default; ROLLBACK});
$node->safe_psql('postgres', q{
	BEGIN; SAVEPOINT s; ALTER INDEX t_idx SET TABLESPACE pg_default; ROLLBACK TO SAVEPOINT s; COMMIT});
check_index('postgres', 't_idx', 'rolled-back ALTER INDEX SET TABLESPACE', $in_ts1);
is($node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('t_idx')}), $old, 'same file as before');
is(files(), 4, 'rolled-back moves leave no copy');

# ALTER TABLE SET TABLESPACE moves the table, not its indexes.
$node->safe_psql('postgres', 'ALTER TABLE t SET TABLESPACE ts1');
check_index('postgres', 't_idx', 'ALTER TABLE SET TABLESPACE', $in_ts1);
$node->safe_psql('postgres', 'ALTER TABLE t SET TABLESPACE pg_default');

# ALTER INDEX ALL IN TABLESPACE moves both.
$node->safe_psql('postgres', 'ALTER INDEX ALL IN TABLESPACE ts1 SET TABLESPACE pg_default');
check_index('postgres', 't_idx', 'ALTER INDEX ALL IN TABLESPACE', $in_base);
check_index('postgres', 'w_idx', 'ALTER INDEX ALL IN TABLESPACE', $in_base);
is(files(), 4, 'four storage files');
is($reader->query_safe($query_v), $node->safe_psql('postgres', "SET enable_indexscan = off; $query_v"),
	'the other session still answers');
$reader->quit;

# REINDEX (TABLESPACE ...) rebuilds in another directory and removes the old file.
$old = $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('w_idx')});
$node->safe_psql('postgres', 'REINDEX (TABLESPACE ts1) INDEX w_idx');
check_index('postgres', 'w_idx', 'REINDEX (TABLESPACE)', $in_ts1);
ok(!-e $node->data_dir . "/$old", 'REINDEX (TABLESPACE): the old file is gone');
is(files(), 4, 'four storage files');

# CREATE DATABASE from a template holding hannoy indexes, in both tablespaces.
$node->safe_psql('postgres', q{
	CREATE DATABASE copy_wal TEMPLATE src STRATEGY WAL_LOG;
	CREATE DATABASE copy_file TEMPLATE src STRATEGY FILE_COPY;
});
for my $db ('copy_wal', 'copy_file')
{
	check_index($db, 't_idx', "CREATE DATABASE $db", $in_base);
	check_index($db, 'w_idx', "CREATE DATABASE $db", $in_ts1);
	$node->safe_psql($db, q{INSERT INTO t VALUES (20000, '{9, 9, 9, 9}', '{0, 0}')});
	is($node->safe_psql($db, q{SET enable_seqscan = off; SELECT id FROM t ORDER BY v <-> '{9, 9, 9, 9}' LIMIT 1}),
		'20000', "$db: new rows are indexed");
}
is($node->safe_psql('src', 'SELECT count(*) FROM t'), '3000', 'the template is unchanged');
check_index('src', 't_idx', 'template after copies', $in_base);
is(files(), 8, 'eight storage files');

# ALTER DATABASE SET TABLESPACE moves the database directory with its files (relations must
# first leave the target tablespace).
$node->safe_psql('copy_wal', 'ALTER INDEX w_idx SET TABLESPACE pg_default');
check_index('copy_wal', 'w_idx', 'ALTER INDEX SET TABLESPACE in a copied database', $in_base);
$node->safe_psql('postgres', 'ALTER DATABASE copy_wal SET TABLESPACE ts1');
check_index('copy_wal', 't_idx', 'ALTER DATABASE SET TABLESPACE', $in_ts1);
check_index('copy_wal', 'w_idx', 'ALTER DATABASE SET TABLESPACE', $in_ts1);
is(files(), 8, 'eight storage files');

# DROP DATABASE removes them.
$node->safe_psql('postgres', 'DROP DATABASE copy_wal');
$node->safe_psql('postgres', 'DROP DATABASE copy_file');
is(files(), 4, 'DROP DATABASE removes the files of its indexes');

# Nothing of hannoy's is left in ts1 once its indexes are dropped: the tablespace can go. An
# orphan there (a stray copy named for no index) would keep it from going:
# hannoy_cleanup_orphans() finds it. (Copies named for the dropped index go with it.)
$node->safe_psql('src', 'DROP INDEX w_idx');
my $w_file = $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('w_idx')});
(my $stray = $w_file) =~ s/_(\d+)_(\d+)$/_4000000000_1/;
PostgreSQL::Test::Utils::system_or_bail('cp', $node->data_dir . "/$w_file", $node->data_dir . "/$stray");
$node->safe_psql('postgres', 'DROP INDEX w_idx');
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP TABLESPACE ts1');
like($stderr, qr/is not empty/, 'an orphan keeps the tablespace from being dropped');
is($node->safe_psql('postgres', 'SELECT file FROM hannoy_cleanup_orphans()'), $stray,
	'hannoy_cleanup_orphans() removes the orphan in the tablespace');
$node->safe_psql('postgres', 'DROP DATABASE src');
$node->safe_psql('postgres', 'DROP TABLESPACE ts1');
is(files(), 1, 'one storage file left');
$node->stop;
done_testing();
