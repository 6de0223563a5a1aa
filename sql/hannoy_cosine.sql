-- Cosine distance (<=>, real_cosine_ops): 1 - cos, defined as 1 for zero vectors.
CREATE SCHEMA hannoy_cosine;
SET search_path = hannoy_cosine, public;
CREATE TABLE docs (id int PRIMARY KEY, v real[]);
INSERT INTO docs
SELECT i, ARRAY[cos(i * 0.05), sin(i * 0.05), (i % 7) * 0.01]::real[] FROM generate_series(1, 300) i;
-- Scale does not matter to cosine: a long vector in the same direction as row 10.
INSERT INTO docs VALUES (1000, ARRAY[cos(0.5) * 50, sin(0.5) * 50, 0.03 * 50]::real[]);
-- A zero vector: at distance 1 from everything, never NaN.
INSERT INTO docs VALUES (2000, '{0, 0, 0}');
CREATE INDEX docs_idx ON docs USING hannoy (v real_cosine_ops);
SELECT metric, dimensions, items FROM hannoy_index_info('docs_idx');

SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM docs ORDER BY v <=> '{1, 0.5, 0}' LIMIT 5;
-- The euclidean operator cannot use a cosine index.
EXPLAIN (COSTS OFF) SELECT id FROM docs ORDER BY v <-> '{1, 0.5, 0}' LIMIT 5;

SELECT id, round((v <=> ARRAY[cos(0.5), sin(0.5), 0.03]::real[])::numeric, 6) AS distance
FROM docs ORDER BY v <=> ARRAY[cos(0.5), sin(0.5), 0.03]::real[] LIMIT 4;

-- Same rows as the exact scan.
CREATE TEMP TABLE index_rows AS
SELECT array_agg(id) AS ids FROM (SELECT id FROM docs ORDER BY v <=> '{0.3, 0.9, 0.05}' LIMIT 20) s;
SET enable_indexscan = off;
RESET enable_seqscan;
CREATE TEMP TABLE exact_rows AS
SELECT array_agg(id) AS ids FROM (SELECT id FROM docs ORDER BY v <=> '{0.3, 0.9, 0.05}' LIMIT 20) s;
RESET enable_indexscan;
SELECT (SELECT ids FROM index_rows) = (SELECT ids FROM exact_rows) AS same_rows;

-- The zero vector: distance 1 to any query, and a zero query is at distance 1 from all rows.
SELECT v <=> '{1, 2, 3}' AS zero_row_distance FROM docs WHERE id = 2000;
SELECT DISTINCT v <=> '{0, 0, 0}' AS distance_to_zero_query FROM docs;
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM docs ORDER BY v <=> '{0, 0, 0}' LIMIT 400) s;
RESET enable_seqscan;
SELECT ok, unreachable FROM hannoy_verify('docs_idx');
