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
