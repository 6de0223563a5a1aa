# hannoy index files and PostgreSQL's physical tools: pg_checksums --enable and --check on a
# stopped cluster, pg_basebackup with data checksums on, a streaming standby made from the
# backup, its promotion, and a storage file older than the index. None of them may fail
# because of hannoy or damage its files, and an index without a current file never answers
# with empty or partial results: the planner avoids it and a forced scan says to REINDEX.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use Digest::MD5;
use File::Copy;
use File::Find;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time);
use Test::More;

my $started = time;
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "shared_preload_libraries = 'hannoy'\n");
$primary->start;
my $ts_dir = PostgreSQL::Test::Utils::tempdir_short . '/ts';
mkdir $ts_dir or die;
$primary->safe_psql('postgres', qq{
	CREATE EXTENSION hannoy;
	-- copies of rows get vectors of their own: identical vectors would tie in every probe
	CREATE FUNCTION moved(v real[], d real) RETURNS real[] IMMUTABLE LANGUAGE sql AS
	\$\$ SELECT array_agg(x + d ORDER BY o) FROM unnest(v) WITH ORDINALITY u(x, o) \$\$;
	CREATE TABLESPACE ts LOCATION '$ts_dir';
});
create_gaussian_mixture($primary, 'a', 3000, 16, 6, 0.4);
$primary->safe_psql('postgres', q{
	CREATE INDEX a_idx ON a USING hannoy (v);
	CREATE TABLE c (id int PRIMARY KEY, v real[]);
	INSERT INTO c SELECT id, v FROM a WHERE id <= 1000;
	CREATE INDEX c_idx ON c USING hannoy (v real_cosine_ops) TABLESPACE ts;
});

my $probe = q{SELECT id FROM a ORDER BY v <-> (SELECT v FROM a WHERE id = 11) LIMIT 8};
my $exact_sql = "SET enable_indexscan = off; $probe";

sub file_of
{
	my ($node, $index) = @_;
	return $node->data_dir . '/' . $node->safe_psql('postgres', "SELECT file FROM hannoy_index_info('$index')");
}

sub md5_of
{
	my ($path) = @_;
	open(my $fh, '<', $path) or die "$path: $!";
	binmode $fh;
	return Digest::MD5->new->addfile($fh)->hexdigest;
}

# An index without a usable file: exact results by sequential scan, no index scan in the plan,
# and a forced index scan fails with a hint to REINDEX, printing no rows.
sub check_unavailable
{
	my ($node, $what, $expected, $message) = @_;
	unlike($node->safe_psql('postgres', "EXPLAIN (COSTS OFF) $probe"), qr/Index Scan using a_idx/,
		"$what: the planner does not use the index");
	is($node->safe_psql('postgres', $probe), $expected, "$what: results are exact");
	my ($ret, $stdout, $stderr) = $node->psql('postgres', "SET enable_seqscan = off; $probe");
	like($stderr, $message, "$what: a forced index scan fails clearly");
	like($stderr, qr/HINT:  REINDEX the index/, "$what: the error says to REINDEX");
	is($stdout, '', "$what: no partial result");
}

# ---- pg_checksums --enable and --check --------------------------------------------------------
my $a_file = file_of($primary, 'a_idx');
my $c_file = file_of($primary, 'c_idx');
like($c_file, qr{/pg_tblspc/}, 'the tablespace index keeps its file in the tablespace');
$primary->stop;
my %md5 = ($a_file => md5_of($a_file), $c_file => md5_of($c_file));
command_ok([ 'pg_checksums', '--enable', '-D', $primary->data_dir ], 'pg_checksums --enable succeeds');
command_ok([ 'pg_checksums', '--check', '-D', $primary->data_dir ], 'pg_checksums --check succeeds');
is(md5_of($a_file), $md5{$a_file}, 'pg_checksums leaves the index file untouched');
is(md5_of($c_file), $md5{$c_file}, 'pg_checksums leaves the tablespace index file untouched');
$primary->start;
is($primary->safe_psql('postgres', 'SHOW data_checksums'), 'on', 'checksums are on');
my $exact = $primary->safe_psql('postgres', $exact_sql);
is($primary->safe_psql('postgres', "SET enable_seqscan = off; $probe"), $exact,
	'after pg_checksums --enable the index answers exactly');
is(missed_rows($primary, 'a'), '', 'after pg_checksums --enable every row is found by its own vector');
is(missed_rows($primary, 'c', undef, '<=>'), '', 'and so is every row of the tablespace index');

# ---- pg_basebackup with checksums on, and a standby made from it ------------------------------
# Push the WAL position up, so LMDB page numbers read as LSNs would look old to a checksum check.
# (The test framework cannot copy tablespace links into a standby: the tablespace goes first.)
$primary->safe_psql('postgres', q{
	DROP TABLE c;
	DROP TABLESPACE ts;
	INSERT INTO a SELECT id + 10000, moved(v, 1.5) FROM a WHERE id <= 500;
	SELECT pg_switch_wal();
});
my $backup_dir = $primary->backup_dir . '/b1';
command_ok([ 'pg_basebackup', '-D', $backup_dir, '-h', $primary->host, '-p', $primary->port,
	'--checkpoint=fast', '--no-sync', '-X', 'stream' ],
	'pg_basebackup with data checksums succeeds');
my @copied;
find(sub { push @copied, $File::Find::name if /^pgsql_tmp_hannoy_/ }, $backup_dir);
is(scalar(@copied), 0, 'the backup carries no hannoy storage file');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;
$primary->safe_psql('postgres', 'INSERT INTO a SELECT id + 20000, moved(v, 2.5) FROM a WHERE id <= 300');
$primary->wait_for_catchup($standby);
$exact = $primary->safe_psql('postgres', $exact_sql);
check_unavailable($standby, 'streaming standby', $exact, qr/hannoy index "a_idx" is not available on this server/);

$standby->promote;
$standby->safe_psql('postgres', 'SELECT 1');
check_unavailable($standby, 'promoted standby', $exact, qr/hannoy index "a_idx" is not available on this server/);
$standby->safe_psql('postgres', 'REINDEX INDEX a_idx');
is($standby->safe_psql('postgres', "SET enable_seqscan = off; $probe"), $exact,
	'promoted standby: after REINDEX the index answers exactly');
like($standby->safe_psql('postgres', "EXPLAIN (COSTS OFF) $probe"), qr/Index Scan using a_idx/,
	'promoted standby: after REINDEX the planner uses the index');
is(missed_rows($standby, 'a'), '', 'promoted standby: after REINDEX every row is found by its own vector');
$standby->stop;

# ---- A storage file older than the index -------------------------------------------------------
# A copy of the file is put back after more rows were committed (a file-level backup restored
# over a newer cluster, or a backup tool that copied the file early): it has the index's
# identity but lacks those rows. It must be refused, not used.
$primary->safe_psql('postgres', 'CHECKPOINT');
$a_file = file_of($primary, 'a_idx');
$primary->stop;
copy($a_file, "$a_file.old") or die;
$primary->start;
$primary->safe_psql('postgres', 'INSERT INTO a SELECT id + 30000, moved(v, 3.5) FROM a WHERE id <= 200');
$primary->safe_psql('postgres', 'DELETE FROM a WHERE id > 10000 AND id <= 10100; VACUUM a');
$exact = $primary->safe_psql('postgres', $exact_sql);
$primary->stop;
copy("$a_file.old", $a_file) or die;
$primary->start;
check_unavailable($primary, 'stale file', $exact, qr/hannoy index "a_idx" has a stale storage file/);
$primary->safe_psql('postgres', 'REINDEX INDEX a_idx');
is(missed_rows($primary, 'a'), '', 'stale file: after REINDEX every row is found by its own vector');

# ---- A storage file from another timeline --------------------------------------------------
# A consistent cold copy of the cluster is recovered with archive recovery (so it starts a new
# timeline, as point-in-time recovery does), but with the index file of the original, which
# has since indexed rows the copy's history does not have. Its counter is ahead of the
# copy's metapage, which alone is normal after a crash; on another timeline it is refused.
$primary->stop;
$primary->backup_fs_cold('cold');
$primary->start;
$primary->safe_psql('postgres', 'INSERT INTO a SELECT id + 50000, moved(v, 5.5) FROM a WHERE id <= 300');
my $relative = $primary->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('a_idx')});
$primary->stop;
my $pitr = PostgreSQL::Test::Cluster->new('pitr');
$pitr->init_from_backup($primary, 'cold', has_restoring => 1, standby => 0);
copy($primary->data_dir . "/$relative", $pitr->data_dir . "/$relative") or die;
$pitr->start;
$pitr->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()') or die;
is($pitr->safe_psql('postgres', 'SELECT count(*) FROM a WHERE id > 50000'), '0',
	'the recovered copy does not have the rows indexed later by the original');
check_unavailable($pitr, 'file from another timeline', $pitr->safe_psql('postgres', $exact_sql),
	qr/hannoy index "a_idx" has a storage file from another timeline/);
$pitr->safe_psql('postgres', 'REINDEX INDEX a_idx');
is(missed_rows($pitr, 'a'), '', 'file from another timeline: after REINDEX every row is found by its own vector');
$pitr->stop;
$primary->start;

# The file of a crash-restarted server is never taken for stale: its counter is at least the
# metapage's, whatever WAL recovery replays.
$primary->safe_psql('postgres', 'INSERT INTO a SELECT id + 40000, moved(v, 4.5) FROM a WHERE id <= 100');
$primary->stop('immediate');
$primary->start;
is(missed_rows($primary, 'a'), '', 'after an immediate shutdown the index is current and finds every row');

note(sprintf('total %.0f s', time - $started));
$primary->stop;
done_testing();
