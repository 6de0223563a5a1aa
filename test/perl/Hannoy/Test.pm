# Helpers shared by hannoy's TAP tests: a node with hannoy preloaded, seeded data sets and
# recall against exact search.
package Hannoy::Test;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(hannoy_node create_row_vector_function create_gaussian_mixture
  create_shifted_queries recall_at_k recall_within_distance missed_rows wait_until_up storage_files);

# A started node with hannoy preloaded and the extension created in database postgres.
sub hannoy_node
{
	my ($name, %conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'hannoy'\n");
	while (my ($key, $value) = each %conf)
	{
		$node->append_conf('postgresql.conf', "$key = $value\n");
	}
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION hannoy');
	return $node;
}

# Creates the SQL function vec(i int) real[]: 8 uniform pseudo-random values in [0, 100) that
# depend only on i, so a client can always say which vector row i has (and probes by a row's
# own vector do not miss, as they may on clustered data).
sub create_row_vector_function
{
	my ($node) = @_;
	$node->safe_psql('postgres', q{
		CREATE FUNCTION vec(i int) RETURNS real[] IMMUTABLE LANGUAGE sql AS
		$$ SELECT array_agg(((hashint8(i::bigint * 16 + d) % 100000)::real / 1000) ORDER BY d)
		   FROM generate_series(0, 7) d $$;
	});
	return;
}

# Creates table $table(id int primary key, v real[]) with $rows vectors of $dims dimensions
# drawn from a seeded mixture of $clusters Gaussian blobs (unit variance around centers with
# standard deviation $spread, default 3), the shape of real embedding sets rather than noise.
sub create_gaussian_mixture
{
	my ($node, $table, $rows, $dims, $clusters, $seed, $first_id, $spread) = @_;
	$first_id //= 1;
	$spread //= 3;
	$node->safe_psql('postgres', qq{
		SELECT setseed($seed);
		CREATE TABLE IF NOT EXISTS ${table}_centers AS
			SELECT c, array_agg(($spread * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))::real) AS center
			FROM generate_series(1, $clusters) c, generate_series(1, $dims) d GROUP BY c;
		CREATE TABLE IF NOT EXISTS $table (id int PRIMARY KEY, v real[]);
		ALTER TABLE $table ALTER COLUMN v SET STORAGE PLAIN;
		INSERT INTO $table
			SELECT i, (SELECT array_agg((center[d] + sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))::real
								ORDER BY d)
					   FROM generate_series(1, $dims) d WHERE i > 0)
			FROM generate_series($first_id, $first_id + $rows - 1) i
			JOIN ${table}_centers ON c = 1 + (hashint4(i) & 2147483647) % $clusters;
	});
}

# Query table $queries (qid, v): the rows of $table (id, v) matching $where, every element
# moved by $shift, so that queries lie near rows without being any of them.
sub create_shifted_queries
{
	my ($node, $queries, $table, $where, $shift) = @_;
	$node->safe_psql('postgres', qq{
		CREATE TABLE $queries AS SELECT id AS qid, v FROM $table WHERE $where;
		UPDATE $queries SET v = (SELECT array_agg(x + $shift ORDER BY n) FROM unnest(v) WITH ORDINALITY u(x, n));
	});
}

# Mean recall@k of the index over the query vectors in $queries (a table with column v),
# against an exact sequential scan of $table.
sub recall_at_k
{
	my ($node, $table, $queries, $k, $settings) = @_;
	$settings //= '';
	my $sql = qq{
		$settings
		SET enable_seqscan = off;
		CREATE TEMP TABLE approx AS
			SELECT q.qid, array(SELECT id FROM $table ORDER BY v <-> q.v LIMIT $k) AS ids FROM $queries q;
		SET enable_seqscan = on;
		SET enable_indexscan = off;
		CREATE TEMP TABLE exact AS
			SELECT q.qid, array(SELECT id FROM $table ORDER BY v <-> q.v LIMIT $k) AS ids FROM $queries q;
		SELECT avg((SELECT count(*) FROM unnest(a.ids) x WHERE x = ANY (e.ids))::float8 / $k)
		FROM approx a JOIN exact e USING (qid);
	};
	return $node->safe_psql('postgres', $sql) + 0;
}

# Mean recall@k with ann-benchmarks' definition, which is fair to ties: a returned row counts
# when its distance (operator $op) is within the true k-th distance plus a small tolerance.
# $table has (id, v), $queries has (qid, v).
sub recall_within_distance
{
	my ($node, $table, $queries, $k, $op, $settings) = @_;
	$settings //= '';
	return $node->safe_psql('postgres', qq{
		$settings
		SET enable_seqscan = off;
		CREATE TEMP TABLE approx AS
			SELECT q.qid, array(SELECT t.v $op q.v FROM $table t ORDER BY t.v $op q.v LIMIT $k) AS d FROM $queries q;
		SET enable_seqscan = on;
		SET enable_indexscan = off;
		CREATE TEMP TABLE kth AS
			SELECT q.qid, (SELECT t.v $op q.v FROM $table t ORDER BY t.v $op q.v OFFSET $k - 1 LIMIT 1) AS d
			FROM $queries q;
		SELECT avg((SELECT count(*) FROM unnest(a.d) x WHERE x <= kth.d + 1e-6 * greatest(1, abs(kth.d)))::float8 / $k)
		FROM approx a JOIN kth USING (qid);
	}) + 0;
}

# Rows of $table (id, v) in database postgres, as "id,id,...", that an index probe with their
# own vector (operator $op, default <->) does not return first; only rows matching $filter.
sub missed_rows
{
	my ($node, $table, $filter, $op) = @_;
	$filter //= 'true';
	$op //= '<->';
	return $node->safe_psql('postgres', qq{
		SET enable_seqscan = off; SET enable_bitmapscan = off; SET hannoy.ef_search = 100;
		SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM $table r
		WHERE $filter AND id IS DISTINCT FROM (SELECT s.id FROM $table s ORDER BY s.v $op r.v LIMIT 1);
	});
}

# Waits (up to a minute) until the node accepts connections again after a crash.
sub wait_until_up
{
	my ($node) = @_;
	for (1 .. 600)
	{
		my ($ret) = $node->psql('postgres', 'SELECT 1');
		return if $ret == 0;
		usleep(100_000);
	}
	die 'server did not come back after the crash';
}

# Storage files of hannoy indexes (not their lock files) in the given database directories,
# by default every database directory of the default tablespace.
sub storage_files
{
	my ($node, @dirs) = @_;
	@dirs = ($node->data_dir . '/base/*') unless @dirs;
	return grep { !/-lock$/ } map { glob("$_/pgsql_tmp_hannoy_*") } @dirs;
}

1;
