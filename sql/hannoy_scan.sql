-- Scans: LIMIT beyond ef_search, deleted rows, filters, nested scans of one index.
CREATE SCHEMA hannoy_scan;
SET search_path = hannoy_scan, public;
CREATE TABLE pts (id int PRIMARY KEY, grp int, v real[]);
INSERT INTO pts SELECT i, i % 10, ARRAY[sin(i * 0.37) * 10, cos(i * 0.11) * 10, (i % 13)]::real[]
FROM generate_series(1, 2000) i;
CREATE INDEX pts_idx ON pts USING hannoy (v);
SET enable_seqscan = off;

-- A LIMIT far above ef_search still returns that many rows, in order.
SET hannoy.ef_search = 10;
CREATE TEMP TABLE many AS
SELECT row_number() OVER () AS pos, id, v <-> '{0, 0, 6}' AS d
FROM (SELECT id, v FROM pts ORDER BY v <-> '{0, 0, 6}' LIMIT 500) s;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_rows FROM many;
SELECT count(*) AS out_of_order FROM many a JOIN many b ON b.pos = a.pos + 1 WHERE b.d < a.d;
-- ...and they are (nearly all) the true 500 nearest.
SET enable_indexscan = off;
RESET enable_seqscan;
CREATE TEMP TABLE exact AS SELECT id FROM pts ORDER BY v <-> '{0, 0, 6}' LIMIT 500;
RESET enable_indexscan;
SET enable_seqscan = off;
SELECT count(*) >= 495 AS recall_at_500_ok FROM many JOIN exact USING (id);

-- A selective filter: the scan keeps going until LIMIT rows pass it.
SELECT count(*) AS filtered_rows FROM (SELECT id FROM pts WHERE grp = 3 ORDER BY v <-> '{1, 1, 1}' LIMIT 50) s;
SELECT count(*) FILTER (WHERE grp <> 3) AS wrong_group
FROM (SELECT id, grp FROM pts WHERE grp = 3 ORDER BY v <-> '{1, 1, 1}' LIMIT 50) s;
RESET hannoy.ef_search;

-- Deleted rows are never returned, before and after VACUUM; the rows that stay are.
DELETE FROM pts WHERE id % 3 = 0;
SELECT count(*) FILTER (WHERE id % 3 = 0) AS deleted_returned, count(*) AS returned
FROM (SELECT id FROM pts ORDER BY v <-> '{0, 5, 5}' LIMIT 100) s;
VACUUM pts;
SELECT items, deleted_items FROM hannoy_index_info('pts_idx');
SELECT count(*) FILTER (WHERE id % 3 = 0) AS deleted_returned, count(*) AS returned
FROM (SELECT id FROM pts ORDER BY v <-> '{0, 5, 5}' LIMIT 100) s;
SELECT ok, problems FROM hannoy_verify('pts_idx', false);
-- Every remaining row can still be found by its own vector.
SELECT count(*) AS found_first FROM pts p
WHERE (SELECT q.id FROM pts q ORDER BY q.v <-> p.v LIMIT 1) = p.id;
SELECT count(*) AS rows FROM pts;
-- New rows may reuse the freed heap slots; they are found, old entries are not confused with them.
INSERT INTO pts SELECT i, 0, ARRAY[100 + i, 100, 100]::real[] FROM generate_series(3000, 3099) i;
SELECT count(*) AS new_rows_found FROM pts p
WHERE p.id >= 3000 AND (SELECT q.id FROM pts q ORDER BY q.v <-> p.v LIMIT 1) = p.id;

-- Two scans of the same index at once (nested loop over a lateral join).
SELECT a.id, b.id AS nearest_other
FROM (SELECT id, v FROM pts ORDER BY v <-> '{0, 10, 0}' LIMIT 3) a
CROSS JOIN LATERAL (SELECT id FROM pts q WHERE q.id <> a.id ORDER BY q.v <-> a.v LIMIT 1) b
ORDER BY a.id;

-- A cursor reads the scan a little at a time.
BEGIN;
DECLARE c CURSOR FOR SELECT id FROM pts ORDER BY v <-> '{0, 10, 0}';
FETCH 2 FROM c;
FETCH 2 FROM c;
CLOSE c;
COMMIT;

-- A query equal to a stored vector starts at that row: found first even with ef_search = 1.
SET hannoy.ef_search = 1;
SELECT count(*) FILTER (WHERE (SELECT q.id FROM pts q ORDER BY q.v <-> p.v LIMIT 1) = p.id) = count(*)
	AS all_found_first
FROM pts p;
RESET hannoy.ef_search;
