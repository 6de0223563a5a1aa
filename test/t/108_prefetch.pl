# hannoy.prefetch_memory: once a process's first scan of an index ends, the file (or, with a
# smaller budget, its upper layers' vectors) is read into the page cache in the background;
# before that scan ends, and with the setting at 0, nothing is read ahead.
# hannoy_index_info's resident_bytes tells how much of the file is in memory.
use strict;
use warnings;
use lib "$ENV{HANNOY_ROOT}/test/perl";
use Hannoy::Test;
use Test::More;
use Time::HiRes qw(usleep);

my $node = hannoy_node('prefetch');
create_gaussian_mixture($node, 'items', 20000, 64, 20, 0.4);
$node->safe_psql('postgres', 'CREATE INDEX items_idx ON items USING hannoy (v)');
my $file = $node->data_dir . '/' . $node->safe_psql('postgres', q{SELECT file FROM hannoy_index_info('items_idx')});
my $file_bytes = -s $file;
my $query = q{SELECT id FROM items ORDER BY v <-> (SELECT v FROM items WHERE id = 7) LIMIT 10};
my $exact = $node->safe_psql('postgres', "SET enable_indexscan = off; $query");

# Restarts the server (no process keeps the file mapped) and drops the file from the page
# cache; false when this system keeps it cached anyway.
sub evict
{
	$node->stop;
	system('sync');
	system('dd', "if=$file", 'iflag=nocache', 'count=0', 'status=none') == 0 or return 0;
	$node->start;
	return resident_fraction('') < 0.25;
}

# Fraction of the file in the page cache, asked at the end of a session that first runs $sql.
sub resident_fraction
{
	my ($sql) = @_;
	my $bytes =
	  $node->safe_psql('postgres', "$sql\nSELECT resident_bytes FROM hannoy_index_info('items_idx')");
	$bytes = (split /\n/, $bytes)[-1];
	return $bytes / $file_bytes;
}

ok($file_bytes > 4 << 20, "the index file is large enough to tell read-ahead from a search ($file_bytes bytes)");
like(resident_fraction(''), qr/^[0-9.]+$/, 'resident_bytes is reported');

SKIP:
{
	skip 'the page cache of this system cannot be dropped for one file', 6 unless evict();

	my $fraction = resident_fraction("SET hannoy.prefetch_memory = 0;\nSELECT count(*) FROM ($query) q;\n"
		  . 'SELECT pg_sleep(1);');
	cmp_ok($fraction, '<', 0.5, "without prefetch_memory a search reads a part of the file ($fraction)");

	ok(evict(), 'evicted again');
	$fraction = resident_fraction("SET hannoy.prefetch_memory = '1GB';\n"
		  . "SELECT items FROM hannoy_index_info('items_idx');\nSELECT pg_sleep(1);");
	cmp_ok($fraction, '<', 0.5, "opening the index without a scan reads nothing ahead ($fraction)");

	ok(evict(), 'evicted again');
	$fraction = 0;
	my $session = "SET hannoy.prefetch_memory = '1GB';\nSET enable_seqscan = off;\n$query;\n";
	# The read-ahead runs in the background: give it a few seconds.
	for my $wait (1 .. 10)
	{
		$fraction = resident_fraction($session . "SELECT pg_sleep($wait / 4.0);");
		last if $fraction > 0.95;
	}
	cmp_ok($fraction, '>', 0.95, "after the first scan the whole file is read ahead ($fraction)");
	my $rows = $node->safe_psql('postgres', "SET hannoy.prefetch_memory = '1GB';\nSET enable_seqscan = off;\n$query");
	is($rows, $exact, 'the scan with read-ahead returns the exact rows');
}

$node->stop;
done_testing();
