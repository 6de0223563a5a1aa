-- Core behaviour: build on a filled and an empty table, plans, exact rows, inserts, NULLs.
CREATE SCHEMA hannoy_basic;
SET search_path = hannoy_basic, public;

-- A small deterministic data set with distinct distances (no ties).
CREATE TABLE items (id bigint PRIMARY KEY, embedding real[]);
INSERT INTO items
SELECT i, ARRAY[sin(i), cos(i * 0.7), sin(i * 1.3) * 2, (i % 5) * 0.1]::real[]
FROM generate_series(1, 500) i;
CREATE INDEX items_embedding_idx ON items USING hannoy (embedding real_l2_ops)
	WITH (m = 16, ef_construction = 64);
SET hannoy.ef_search = 40;

-- The planner answers ORDER BY <-> LIMIT with the index...
EXPLAIN (COSTS OFF)
SELECT id FROM items ORDER BY embedding <-> '{0.5, 0.5, 0.5, 0.2}' LIMIT 10;
-- ...but never a query it cannot serve.
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE embedding <-> '{0.5, 0.5, 0.5, 0.2}' < 1;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY embedding <=> '{0.5, 0.5, 0.5, 0.2}' LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY embedding <-> NULL LIMIT 10;

-- Exact result rows, with their true euclidean distances.
SELECT id, round((embedding <-> '{0.5, 0.5, 0.5, 0.2}')::numeric, 6) AS distance
FROM items ORDER BY embedding <-> '{0.5, 0.5, 0.5, 0.2}' LIMIT 10;

-- The same ten rows as an exact sequential scan, for several queries.
CREATE FUNCTION knn_ids(q real[], k int) RETURNS bigint[] LANGUAGE sql AS $$
	SELECT array_agg(id) FROM (SELECT id FROM items ORDER BY embedding <-> q LIMIT k) s
$$;
CREATE TABLE queries AS
SELECT q, ARRAY[cos(q), sin(q * 0.3), cos(q * 1.1), (q % 3) * 0.15]::real[] AS v
FROM generate_series(1, 20) q;
CREATE TEMP TABLE index_answers AS SELECT q, knn_ids(v, 10) AS ids FROM queries;
SET enable_indexscan = off;
CREATE TEMP TABLE exact_answers AS SELECT q, knn_ids(v, 10) AS ids FROM queries;
RESET enable_indexscan;
SELECT count(*) AS queries, count(*) FILTER (WHERE i.ids = e.ids) AS identical
FROM index_answers i JOIN exact_answers e USING (q);

-- A vector's own row comes first.
SELECT id FROM items ORDER BY embedding <-> (SELECT embedding FROM items WHERE id = 123) LIMIT 1;

-- Rows inserted after the build are found, also inside the inserting transaction.
BEGIN;
INSERT INTO items VALUES (1001, '{9, 9, 9, 9}'), (1002, '{9, 9, 9, 9.5}');
SELECT id FROM items ORDER BY embedding <-> '{9, 9, 9, 9.1}' LIMIT 2;
COMMIT;
SELECT id FROM items ORDER BY embedding <-> '{9, 9, 9, 9.4}' LIMIT 2;
-- An aborted insert is never returned.
BEGIN;
INSERT INTO items VALUES (1003, '{-9, -9, -9, -9}');
ROLLBACK;
SELECT id FROM items ORDER BY embedding <-> '{-9, -9, -9, -9}' LIMIT 1;

-- NULL vectors are not indexed and never returned; a NULL query returns no row from the
-- index (and the planner prefers an exact scan for it).
INSERT INTO items VALUES (2001, NULL);
SELECT count(*) FROM (SELECT id FROM items ORDER BY embedding <-> '{0, 0, 0, 0}' LIMIT 1000) s;
SELECT count(*) FILTER (WHERE id = 2001) AS null_rows_returned
FROM (SELECT id FROM items ORDER BY embedding <-> '{0, 0, 0, 0}' LIMIT 1000) s;
SET enable_seqscan = off;
PREPARE knn(real[]) AS SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 3;
SET plan_cache_mode = force_generic_plan;
EXECUTE knn(NULL);
EXECUTE knn('{9, 9, 9, 9.4}');
RESET plan_cache_mode;
RESET enable_seqscan;

-- An index built on an empty table takes its dimension from the first vector.
CREATE TABLE empty_items (id int, embedding real[]);
CREATE INDEX empty_items_idx ON empty_items USING hannoy (embedding);
SELECT dimensions, items FROM hannoy_index_info('empty_items_idx');
SET enable_seqscan = off;
SELECT id FROM empty_items ORDER BY embedding <-> '{1, 2}' LIMIT 5;
INSERT INTO empty_items VALUES (1, '{1, 2}'), (2, '{3, 4}'), (3, '{1, 2.5}');
SELECT id FROM empty_items ORDER BY embedding <-> '{1, 2}' LIMIT 5;
RESET enable_seqscan;
SELECT dimensions, items FROM hannoy_index_info('empty_items_idx');

-- Index information and verification.
SELECT file LIKE 'base/%/pgsql_tmp_hannoy_%' AS file_named_for_tools, file_exists, file_bytes > 0 AS has_bytes,
	matches_metapage, metric, dimensions, m, ef_construction, items, deleted_items, format_version,
	resident_bytes BETWEEN 4096 AND file_bytes AS resident_in_pages
FROM hannoy_index_info('items_embedding_idx');
SELECT ok, items, deleted_items, unreachable, problems FROM hannoy_verify('items_embedding_idx');
-- The relation itself is the metapage only.
SELECT pg_relation_size('items_embedding_idx') AS relation_bytes;
SELECT hannoy_kernels() IN ('scalar', 'avx2', 'avx512') AS known_kernels;
