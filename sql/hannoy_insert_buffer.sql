-- Rows buffered by a backend follow its transaction: savepoints, TRUNCATE and REINDEX that
-- roll back, rows of aborted subtransactions, relation files replaced in the transaction.
CREATE SCHEMA hannoy_buffer;
SET search_path = hannoy_buffer, public;
CREATE TABLE t (id int, v real[]);
INSERT INTO t SELECT i, ARRAY[i, i % 7, -i]::real[] FROM generate_series(1, 100) i;
CREATE INDEX t_idx ON t USING hannoy (v);
SET enable_seqscan = off;

-- Index scan probe: the row whose own vector comes back first.
CREATE FUNCTION probe(q real[]) RETURNS int LANGUAGE sql AS $$
	SELECT id FROM hannoy_buffer.t ORDER BY v <-> q LIMIT 1
$$;

-- Rows of a rolled-back savepoint never reach the file; the others do.
BEGIN;
INSERT INTO t VALUES (101, '{101, 0, -101}');
SAVEPOINT s1;
INSERT INTO t VALUES (102, '{102, 0, -102}');
SAVEPOINT s2;
INSERT INTO t VALUES (103, '{103, 0, -103}');
RELEASE SAVEPOINT s2;
ROLLBACK TO SAVEPOINT s1;
INSERT INTO t VALUES (104, '{104, 0, -104}');
COMMIT;
SELECT heap_tids FROM hannoy_verify('t_idx');
SELECT probe('{101, 0, -101}') AS p101, probe('{104, 0, -104}') AS p104;

-- The same after the buffer was linked once inside the savepoint (a scan flushes it): those
-- entries are in the file and stay until VACUUM, the later ones are dropped.
BEGIN;
SAVEPOINT s1;
INSERT INTO t VALUES (105, '{105, 0, -105}');
SELECT probe('{105, 0, -105}') AS p105_inside;
INSERT INTO t VALUES (106, '{106, 0, -106}');
ROLLBACK TO SAVEPOINT s1;
COMMIT;
SELECT heap_tids FROM hannoy_verify('t_idx');
SELECT probe('{105, 0, -105}') <> 105 AS p105_gone, probe('{106, 0, -106}') <> 106 AS p106_gone;

-- TRUNCATE rolled back to a savepoint: rows buffered before it are still linked at commit.
BEGIN;
INSERT INTO t VALUES (107, '{107, 0, -107}');
SAVEPOINT s1;
TRUNCATE t;
INSERT INTO t VALUES (900, '{900, 0, -900}');
ROLLBACK TO SAVEPOINT s1;
COMMIT;
SELECT probe('{107, 0, -107}') AS p107, count(*) AS rows FROM t;

-- REINDEX rolled back to a savepoint: the same.
BEGIN;
INSERT INTO t VALUES (108, '{108, 0, -108}');
SAVEPOINT s1;
REINDEX INDEX t_idx;
ROLLBACK TO SAVEPOINT s1;
COMMIT;
SELECT probe('{108, 0, -108}') AS p108;

-- TRUNCATE committed after inserts in the same transaction: only the later rows are indexed.
BEGIN;
INSERT INTO t VALUES (109, '{109, 0, -109}');
TRUNCATE t;
INSERT INTO t VALUES (1, '{1, 1, -1}'), (2, '{2, 2, -2}');
COMMIT;
SELECT heap_tids, items FROM hannoy_verify('t_idx');
SELECT probe('{109, 0, -109}') AS p109_is_not_109, probe('{2, 2, -2}') AS p2;

-- A table created in the transaction is truncated in place: its buffered rows go with it.
BEGIN;
CREATE TABLE u (id int, v real[]);
CREATE INDEX u_idx ON u USING hannoy (v);
INSERT INTO u SELECT i, ARRAY[i, i]::real[] FROM generate_series(1, 10) i;
TRUNCATE u;
INSERT INTO u VALUES (42, '{42, 42}');
COMMIT;
SELECT heap_tids FROM hannoy_verify('u_idx');
SELECT id FROM u ORDER BY v <-> '{1, 1}' LIMIT 1;

RESET enable_seqscan;
DROP SCHEMA hannoy_buffer CASCADE;
