-- Bad input gets a clear error, at INSERT and at CREATE INDEX, and loses nothing.
CREATE SCHEMA hannoy_input;
SET search_path = hannoy_input, public;
CREATE TABLE t (id int PRIMARY KEY, v real[]);
CREATE INDEX t_idx ON t USING hannoy (v);
INSERT INTO t VALUES (1, '{1, 2, 3}'), (2, '{1, 1, 1}');

-- Each rejected row leaves the table and the index as they were.
INSERT INTO t VALUES (10, '{1, NaN, 3}');
INSERT INTO t VALUES (11, '{1, Infinity, 3}');
INSERT INTO t VALUES (12, '{-Infinity, 2, 3}');
INSERT INTO t VALUES (13, '{1, NULL, 3}');
INSERT INTO t VALUES (14, '{}');
INSERT INTO t VALUES (15, '{{1, 2, 3}, {4, 5, 6}}');
INSERT INTO t VALUES (16, '{1, 2}');
INSERT INTO t VALUES (17, array_fill(1::real, ARRAY[16001]));
UPDATE t SET v = '{1, 2}' WHERE id = 1;
-- A multi-row statement fails as a whole.
INSERT INTO t VALUES (20, '{5, 5, 5}'), (21, '{5, 5}');
SELECT id, v FROM t ORDER BY id;
SET enable_seqscan = off;
SELECT id FROM t ORDER BY v <-> '{5, 5, 5}' LIMIT 10;
SELECT items FROM hannoy_index_info('t_idx');

-- Query vectors are checked the same way, with or without the index.
SELECT id FROM t ORDER BY v <-> '{1, 2}' LIMIT 1;
SELECT id FROM t ORDER BY v <-> '{1, NaN, 2}' LIMIT 1;
SELECT id FROM t ORDER BY v <-> '{}' LIMIT 1;
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT id FROM t ORDER BY v <-> '{1, 2}' LIMIT 1;
RESET enable_indexscan;

-- The operators themselves.
SELECT '{3, 4}'::real[] <-> '{0, 0}' AS l2, '{1, 0}'::real[] <=> '{0, 1}' AS cosine_orthogonal,
	'{1, 1}'::real[] <=> '{2, 2}' AS cosine_same_direction, '{1, 0}'::real[] <=> '{-1, 0}' AS cosine_opposite;
SELECT '{1, 2}'::real[] <-> '{1, 2, 3}';
SELECT '{1, 2}'::real[] <-> '{1, NULL}';
SELECT '{1, 2}'::real[] <=> '{NaN, 1}';
SELECT '[2:3]={1, 2}'::real[] <-> '{1, 2}' AS lower_bound_ignored;
SELECT NULL::real[] <-> '{1, 2}' AS null_distance;
SELECT l2_distance('{0, 0, 0}', '{1, 2, 2}'), cosine_distance('{1, 0}', '{1, 1}');

-- CREATE INDEX on a table with a bad row fails and leaves no index (hannoy_lifecycle checks
-- that it leaves no file), and a retry after fixing the row succeeds.
CREATE TABLE u (id int, v real[]);
INSERT INTO u SELECT i, ARRAY[i, i + 1]::real[] FROM generate_series(1, 100) i;
INSERT INTO u VALUES (101, '{1, 2, 3}');
CREATE INDEX u_idx ON u USING hannoy (v);
UPDATE u SET v = '{1, NaN}' WHERE id = 101;
CREATE INDEX u_idx ON u USING hannoy (v);
SELECT count(*) AS u_indexes FROM pg_indexes WHERE tablename = 'u';

UPDATE u SET v = '{101, 102}' WHERE id = 101;
CREATE INDEX u_idx ON u USING hannoy (v);
SELECT items FROM hannoy_index_info('u_idx');

-- 16,000 dimensions is the limit, and it indexes.
CREATE TABLE wide (id int, v real[]);
INSERT INTO wide SELECT i, array_fill(i::real, ARRAY[16000]) FROM generate_series(1, 3) i;
CREATE INDEX wide_idx ON wide USING hannoy (v);
SET enable_seqscan = off;
SELECT id FROM wide ORDER BY v <-> array_fill(2.2::real, ARRAY[16000]) LIMIT 3;
RESET enable_seqscan;
