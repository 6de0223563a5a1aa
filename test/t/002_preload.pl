# hannoy must be preloaded: without shared_preload_libraries, CREATE EXTENSION fails and says
# exactly what to add to postgresql.conf.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('no_preload');
$node->init;
$node->start;
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'CREATE EXTENSION hannoy');
isnt($ret, 0, 'CREATE EXTENSION fails without preloading');
like($stderr, qr/ERROR:  hannoy must be loaded via shared_preload_libraries/, 'the error says why');
like($stderr, qr/HINT:  Add shared_preload_libraries = 'hannoy' to postgresql\.conf and restart the server\./,
	'the hint says what to do');

$node->append_conf('postgresql.conf', "shared_preload_libraries = 'hannoy'\n");
$node->restart;
($ret, $stdout, $stderr) = $node->psql('postgres', 'CREATE EXTENSION hannoy');
is($ret, 0, 'CREATE EXTENSION works once preloaded');
$node->stop;
done_testing();
