# Orphaned storage files (left by a crash during a build, stray copies, files of OIDs that are
# no hannoy index) are found and removed by hannoy_cleanup_orphans() and by the automatic sweep
# at a backend's first use of a hannoy index; live files and files of builds in progress are
# never touched. Without the preloaded library, dropping a hannoy index fails instead of
# leaving its file behind.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use File::Copy;
use Test::More;

my $node = hannoy_node('orphans');
create_gaussian_mixture($node, 't', 2000, 8, 10, 0.5);
$node->safe_psql('postgres', 'CREATE INDEX t_idx ON t USING hannoy (v)');
my $data = $node->data_dir;
my $live = $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('t_idx')});
my ($db_dir) = $live =~ m{^(base/\d+)/};
my $query = 'SELECT id FROM t ORDER BY v <-> (SELECT v FROM t WHERE id = 77) LIMIT 3';
my $exact = $node->safe_psql('postgres', "SET enable_indexscan = off; $query");

sub files
{
	return sort map { s{^\Q$data\E/}{}r } grep { !/-lock$/ } glob("$data/$db_dir/pgsql_tmp_hannoy_*");
}

sub check_live
{
	my ($what) = @_;
	ok(-e "$data/$live", "$what: the live file is kept");
	is($node->safe_psql('postgres', "SET enable_seqscan = off; $query"), $exact, "$what: the index answers");
}

# A build in progress is never swept, even though no committed catalog row names its file.
my $builder = $node->background_psql('postgres');
$builder->query_safe('BEGIN; CREATE INDEX u_idx ON t USING hannoy (v)');
my ($building) = grep { $_ ne $live } files();
ok(defined $building, 'the uncommitted build has a file');
is($node->safe_psql('postgres', 'SELECT count(*) FROM hannoy_cleanup_orphans()'), '0',
	'hannoy_cleanup_orphans() keeps the file of a build in progress');
ok(-e "$data/$building", 'it is still there');

# A crash with the build uncommitted leaves the file behind (as PostgreSQL leaves the relation
# file).
$node->stop('immediate');
eval { $builder->quit };
$node->start;
ok(-e "$data/$building", 'a crash leaves the uncommitted build\'s file');

# Stray files: a copy of the live file under another relation file number, one named for an
# OID that is not an index, one named for the table (not a hannoy index), an old lone lock file.
my ($oid) = $live =~ /pgsql_tmp_hannoy_(\d+)_/;
my $table = $node->safe_psql('postgres', q{SELECT oid || '_' || relfilenode FROM pg_class WHERE relname = 't'});
my @strays = ("$db_dir/pgsql_tmp_hannoy_${oid}_99999", "$db_dir/pgsql_tmp_hannoy_4000000000_4000000000",
	"$db_dir/pgsql_tmp_hannoy_$table");
sub make_strays
{
	copy("$data/$live", "$data/$_") or die "copy: $!" for @strays;
	my $lock = "$data/$db_dir/pgsql_tmp_hannoy_4000000001_1-lock";
	open(my $fh, '>', $lock) or die;
	close $fh;
	utime(time - 3600, time - 3600, $lock);
}
make_strays();

# Only superusers may run it.
$node->safe_psql('postgres', 'CREATE ROLE alice LOGIN');
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT * FROM hannoy_cleanup_orphans()',
	extra_params => ['-U', 'alice']);
like($stderr, qr/permission denied for function hannoy_cleanup_orphans/, 'not callable by PUBLIC');

my @expected = sort($building, @strays, "$db_dir/pgsql_tmp_hannoy_4000000001_1");
is($node->safe_psql('postgres', q{SET hannoy.orphan_sweep_interval = -1;
	SELECT string_agg(file || ' ' || (bytes > 0), ',' ORDER BY file) FROM hannoy_cleanup_orphans()}),
	join(',', map { $_ . ($_ =~ /4000000001_1$/ ? ' false' : ' true') } @expected),
	'hannoy_cleanup_orphans() reports every orphan with its size');
is(join(',', files()), $live, 'the orphans are removed');
ok(!-e "$data/$db_dir/pgsql_tmp_hannoy_4000000001_1-lock", 'the lone lock file is removed');
check_live('after hannoy_cleanup_orphans()');
is($node->safe_psql('postgres', 'SELECT count(*) FROM hannoy_cleanup_orphans()'), '0', 'nothing left to remove');

# The automatic sweep: at a backend's first use of a hannoy index, at most once per
# hannoy.orphan_sweep_interval per database.
make_strays();
$node->append_conf('postgresql.conf', "hannoy.orphan_sweep_interval = 0\n");
$node->restart;
my $log_offset = -s $node->logfile;
check_live('first use after a restart');
is(join(',', files()), $live, 'the first use of an index swept the orphans');
like(PostgreSQL::Test::Utils::slurp_file($node->logfile, $log_offset),
	qr/removed orphaned hannoy index file "\Q$strays[0]\E"/, 'the sweep is logged');
make_strays();
$node->safe_psql('postgres', 'VACUUM t');
is(join(',', files()), $live, 'so did VACUUM in a new session');
make_strays();
$node->append_conf('postgresql.conf', "hannoy.orphan_sweep_interval = 3600\n");
$node->restart;
check_live('first use within the interval');
is(scalar(my @f = files()), 4, 'no sweep within the interval of the last one');
$node->safe_psql('postgres', 'SELECT count(*) FROM hannoy_cleanup_orphans()');

# Without the library preloaded, hannoy indexes cannot be opened, so they cannot be dropped
# behind the drop hook's back: DROP INDEX and DROP TABLE fail and the file stays.
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$node->restart;
for my $drop ('DROP INDEX t_idx', 'DROP TABLE t')
{
	($ret, $stdout, $stderr) = $node->psql('postgres', $drop);
	like($stderr, qr/hannoy must be loaded via shared_preload_libraries/, "without preloading, $drop fails");
}
ok(-e "$data/$live", 'the file stays');
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'hannoy'\n");
$node->restart;
check_live('preloaded again');
$node->safe_psql('postgres', 'DROP TABLE t');
is(scalar(my @g = files()), 0, 'DROP TABLE with the library removes the file');
$node->stop;
done_testing();
