-- The storage file follows the index: DROP, rollback, savepoints, TRUNCATE, REINDEX,
-- DROP EXTENSION. Runs in a database of its own so that it can count every file.
CREATE DATABASE hannoy_lifecycle;
\c hannoy_lifecycle
CREATE EXTENSION hannoy;
CREATE FUNCTION file_exists(path text) RETURNS boolean LANGUAGE sql AS $$
	SELECT (pg_stat_file(path, true)).size IS NOT NULL
$$;
CREATE FUNCTION hannoy_files() RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM pg_ls_dir('base/' || (SELECT oid FROM pg_database WHERE datname = current_database())) f
	WHERE f LIKE 'pgsql_tmp_hannoy_%' AND f NOT LIKE '%-lock'
$$;
CREATE TABLE t (id int, v real[]);
INSERT INTO t SELECT i, ARRAY[i, -i, i % 4]::real[] FROM generate_series(1, 200) i;

-- DROP INDEX removes the file at commit.
CREATE INDEX t_idx ON t USING hannoy (v);
SELECT file AS t_file FROM hannoy_index_info('t_idx') \gset
SELECT file_exists(:'t_file');
DROP INDEX t_idx;
SELECT file_exists(:'t_file');

-- A rolled-back CREATE INDEX leaves no file.
BEGIN;
CREATE INDEX t_idx ON t USING hannoy (v);
SELECT file AS t_file FROM hannoy_index_info('t_idx') \gset
SELECT file_exists(:'t_file');
ROLLBACK;
SELECT file_exists(:'t_file');
SELECT hannoy_files();

-- A CREATE INDEX that fails on a bad row near the end of the table leaves no file.
CREATE TABLE bad (id int, v real[]);
INSERT INTO bad SELECT i, ARRAY[i, i]::real[] FROM generate_series(1, 900) i;
INSERT INTO bad VALUES (901, '{1, NaN}');
INSERT INTO bad SELECT i, ARRAY[i, i]::real[] FROM generate_series(902, 1000) i;
CREATE INDEX bad_idx ON bad USING hannoy (v);
SELECT hannoy_files();
-- CREATE INDEX CONCURRENTLY failing the same way leaves an invalid index without a file.
CREATE INDEX CONCURRENTLY bad_cidx ON bad USING hannoy (v);
SELECT indisvalid FROM pg_index WHERE indexrelid = 'bad_cidx'::regclass;
SELECT hannoy_files();
DROP INDEX bad_cidx;
DELETE FROM bad WHERE id = 901;
CREATE INDEX bad_idx ON bad USING hannoy (v);
SELECT hannoy_files();
DROP TABLE bad;

-- A rolled-back DROP INDEX keeps the file and the index works.
CREATE INDEX t_idx ON t USING hannoy (v);
SELECT file AS t_file FROM hannoy_index_info('t_idx') \gset
BEGIN;
DROP INDEX t_idx;
ROLLBACK;
SELECT file_exists(:'t_file');
SET enable_seqscan = off;
SELECT id FROM t ORDER BY v <-> '{50, -50, 2}' LIMIT 3;
RESET enable_seqscan;

-- Savepoints: a rolled-back subtransaction's index and file go away, the outer ones stay.
BEGIN;
CREATE INDEX t_idx2 ON t USING hannoy (v);
SAVEPOINT s1;
CREATE INDEX t_idx3 ON t USING hannoy (v);
SELECT file AS idx3_file FROM hannoy_index_info('t_idx3') \gset
ROLLBACK TO SAVEPOINT s1;
SELECT file_exists(:'idx3_file');
SAVEPOINT s2;
DROP INDEX t_idx2;
ROLLBACK TO SAVEPOINT s2;
COMMIT;
SELECT hannoy_files();
DROP INDEX t_idx2;
SELECT hannoy_files();

-- TRUNCATE and REINDEX give the index a new relation file: the old storage file goes at commit.
TRUNCATE t;
SELECT file_exists(:'t_file');
SELECT hannoy_files(), (SELECT items FROM hannoy_index_info('t_idx'));
INSERT INTO t VALUES (1, '{1, 1, 1}');
SELECT file AS t_file FROM hannoy_index_info('t_idx') \gset
REINDEX INDEX t_idx;
SELECT file_exists(:'t_file');
SELECT hannoy_files(), (SELECT items FROM hannoy_index_info('t_idx'));
-- A rolled-back TRUNCATE keeps the old file.
SELECT file AS t_file FROM hannoy_index_info('t_idx') \gset
BEGIN;
TRUNCATE t;
ROLLBACK;
SELECT file_exists(:'t_file'), (SELECT items FROM hannoy_index_info('t_idx'));
-- TRUNCATE of a table created in the same transaction rebuilds in place.
BEGIN;
CREATE TABLE fresh (v real[]);
INSERT INTO fresh VALUES ('{1, 2}');
CREATE INDEX fresh_idx ON fresh USING hannoy (v);
TRUNCATE fresh;
INSERT INTO fresh VALUES ('{3, 4}');
SET LOCAL enable_seqscan = off;
SELECT v FROM fresh ORDER BY v <-> '{3, 4}' LIMIT 5;
COMMIT;
SELECT items FROM hannoy_index_info('fresh_idx');

-- Dropping the table, or the whole schema, drops the files too.
CREATE SCHEMA s;
CREATE TABLE s.x (v real[]);
CREATE INDEX ON s.x USING hannoy (v);
SELECT hannoy_files();
DROP SCHEMA s CASCADE;
DROP TABLE fresh;
SELECT hannoy_files();
-- Helpers for the rest: whether a query's plan scans an index, and the nearest rows by index.
CREATE FUNCTION uses_index(query text, index_name text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	line text;
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
		IF line LIKE '%Index Scan using ' || index_name || ' on %' THEN
			RETURN true;
		END IF;
	END LOOP;
	RETURN false;
END
$$;
CREATE SCHEMA rs;
CREATE TABLE rs.r (id int, v real[]);
INSERT INTO rs.r SELECT i, ARRAY[i, 2 * i]::real[] FROM generate_series(1, 300) i;
CREATE INDEX r_idx ON rs.r USING hannoy (v);
CREATE INDEX r_id ON rs.r (id);
CREATE VIEW r_state AS SELECT
	uses_index('SELECT id FROM rs.r ORDER BY v <-> ''{150, 300}'' LIMIT 3', 'r_idx') AS uses_index,
	(SELECT array_agg(id) FROM (SELECT id FROM rs.r ORDER BY v <-> '{150, 300}' LIMIT 3) n) AS nearest,
	(SELECT count(*) FROM (SELECT id FROM rs.r ORDER BY v <-> '{0, 0}' LIMIT 1000) a) AS found,
	(SELECT items FROM hannoy_index_info('rs.r_idx'::text::regclass)) AS items,
	hannoy_files() AS files;
SET enable_seqscan = off;
SELECT * FROM r_state;
SELECT file AS r_file FROM hannoy_index_info('rs.r_idx') \gset

-- Rolled-back DROP TABLE, DROP SCHEMA ... CASCADE, DROP EXTENSION ... CASCADE: the file
-- stays and the index answers with all its rows.
BEGIN;
DROP TABLE rs.r CASCADE;
ROLLBACK;
SELECT file_exists(:'r_file'), * FROM r_state;
BEGIN;
DROP SCHEMA rs CASCADE;
ROLLBACK;
SELECT file_exists(:'r_file'), * FROM r_state;
BEGIN;
DROP EXTENSION hannoy CASCADE;
ROLLBACK;
SELECT file_exists(:'r_file'), * FROM r_state;

-- TRUNCATE in a savepoint: rolled back, the old file is kept and the new one removed;
-- released and committed, the old file goes.
BEGIN;
SAVEPOINT s;
TRUNCATE rs.r;
SELECT items, file <> :'r_file' AS new_file FROM hannoy_index_info('rs.r_idx');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT file_exists(:'r_file'), (SELECT file = :'r_file' FROM hannoy_index_info('rs.r_idx')) AS same_file, *
FROM r_state;
CREATE TABLE rs.r_copy AS SELECT * FROM rs.r;
BEGIN;
SAVEPOINT s;
TRUNCATE rs.r;
RELEASE SAVEPOINT s;
COMMIT;
SELECT file_exists(:'r_file'), * FROM r_state;
INSERT INTO rs.r SELECT * FROM rs.r_copy;
SELECT * FROM r_state;

-- REINDEX, REINDEX CONCURRENTLY, VACUUM FULL and CLUSTER give the index a new file (under a
-- new index OID for REINDEX CONCURRENTLY); the old file is gone and the index answers.
SELECT file AS r_file FROM hannoy_index_info('rs.r_idx') \gset
REINDEX INDEX rs.r_idx;
SELECT file_exists(:'r_file'), * FROM r_state;
SELECT file AS r_file FROM hannoy_index_info('rs.r_idx') \gset
REINDEX INDEX CONCURRENTLY rs.r_idx;
SELECT file_exists(:'r_file'), * FROM r_state;
SELECT file AS r_file FROM hannoy_index_info('rs.r_idx') \gset
VACUUM FULL rs.r;
SELECT file_exists(:'r_file'), * FROM r_state;
SELECT file AS r_file FROM hannoy_index_info('rs.r_idx') \gset
CLUSTER rs.r USING r_id;
SELECT file_exists(:'r_file'), * FROM r_state;

-- CREATE INDEX CONCURRENTLY and DROP INDEX CONCURRENTLY.
CREATE INDEX CONCURRENTLY r_idx2 ON rs.r USING hannoy (v real_l1_ops);
SELECT file AS r2_file FROM hannoy_index_info('rs.r_idx2') \gset
SELECT file_exists(:'r2_file'), items, (SELECT array_agg(id) FROM (SELECT id FROM rs.r ORDER BY v <+> '{150, 300}' LIMIT 3) n)
FROM hannoy_index_info('rs.r_idx2');
DROP INDEX CONCURRENTLY rs.r_idx2;
SELECT file_exists(:'r2_file'), * FROM r_state;

-- Observability: the relation is one metapage; hannoy_index_size() counts the file too.
SELECT pg_relation_size('rs.r_idx') AS relation, hannoy_index_size('rs.r_idx') > file_bytes + 8192 AS counts_file,
	matches_metapage, items, deleted_items, max_level >= 0 AS has_levels, layers = max_level + 1 AS layers,
	entry_point BETWEEN 0 AND 299 AS entry_point, format_version
FROM hannoy_index_info('rs.r_idx');
DROP SCHEMA rs CASCADE;
SELECT hannoy_files();

-- Partitioned tables: one index per partition, merged by Merge Append.
CREATE TABLE p (id int, v real[]) PARTITION BY RANGE (id);
CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (100) TO (200);
INSERT INTO p SELECT i, ARRAY[i, i]::real[] FROM generate_series(0, 199) i;
CREATE INDEX p_idx ON p USING hannoy (v);
CREATE TABLE p3 PARTITION OF p FOR VALUES FROM (200) TO (300);
INSERT INTO p VALUES (250, '{99.7, 99.7}');
SELECT hannoy_files();
EXPLAIN (COSTS OFF) SELECT id FROM p ORDER BY v <-> '{99.6, 99.6}' LIMIT 4;
SELECT id FROM p ORDER BY v <-> '{99.6, 99.6}' LIMIT 4;
-- The partitioned index has no storage: its size is its partitions'.
SELECT hannoy_index_size('p_idx') = hannoy_index_size('p1_v_idx') + hannoy_index_size('p2_v_idx')
	+ hannoy_index_size('p3_v_idx') AS sum_of_partitions, hannoy_index_size('p1_v_idx') > 8192 AS counts_file;
SELECT items FROM hannoy_index_info('p_idx');
SELECT items FROM hannoy_index_info('p2_v_idx');
ALTER TABLE p DETACH PARTITION p2;
SELECT id FROM p ORDER BY v <-> '{99.6, 99.6}' LIMIT 4;
DROP TABLE p;
SELECT hannoy_files();
DROP TABLE p2;
SELECT hannoy_files();

-- Temporary tables: the file sits in the database directory and goes with the table.
CREATE TEMP TABLE tmp (id int, v real[]);
INSERT INTO tmp SELECT i, ARRAY[i, -i]::real[] FROM generate_series(1, 100) i;
CREATE INDEX tmp_idx ON tmp USING hannoy (v);
SELECT hannoy_files();
SELECT uses_index('SELECT id FROM tmp ORDER BY v <-> ''{50, -50}'' LIMIT 3', 'tmp_idx'),
	(SELECT array_agg(id) FROM (SELECT id FROM tmp ORDER BY v <-> '{50, -50}' LIMIT 3) n);
DROP TABLE tmp;
SELECT hannoy_files();
RESET enable_seqscan;

-- Two-phase commit cannot carry file creations.
BEGIN;
CREATE INDEX t_idx4 ON t USING hannoy (v);
PREPARE TRANSACTION 'p1';
SELECT hannoy_files();
DROP TABLE t;
SELECT hannoy_files();

-- DROP EXTENSION ... CASCADE drops the indexes and their files.
CREATE TABLE w (v real[]);
CREATE INDEX ON w USING hannoy (v);
SELECT hannoy_files();
DROP EXTENSION hannoy CASCADE;
SELECT hannoy_files();
\c postgres
DROP DATABASE hannoy_lifecycle;
