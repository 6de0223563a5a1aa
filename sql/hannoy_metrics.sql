-- Every metric: operators with exact values, with and without an index, on real[] and bit
-- strings; binary quantization; helper functions; 3,072 dimensions.
CREATE SCHEMA hannoy_metrics;
SET search_path = hannoy_metrics, public;

-- Exact operator and function values.
SELECT '{1, 2, 3}'::real[] <-> '{4, 6, 3}' AS l2,
	'{1, 2, 3}'::real[] <=> '{-1, -2, -3}' AS cosine,
	'{1, 2, 3}'::real[] <#> '{4, 5, 6}' AS negative_ip,
	'{1, 2, 3}'::real[] <+> '{4, 0, 6}' AS l1,
	B'10101010' <~> B'01101010' AS hamming;
SELECT l2_distance('{0, 0}', '{3, 4}'), cosine_distance('{1, 0}', '{1, 1}'), inner_product('{1, 2}', '{3, 4}'),
	negative_inner_product('{1, 2}', '{3, 4}'), l1_distance('{1, -1}', '{-1, 1}'), hamming_distance(B'1111', B'0000');
SELECT l2_normalize('{3, 4}') AS unit, l2_normalize('{0, 0, 0}') AS zero_stays_zero, vector_dims('{1, 2, 3, 4, 5}') AS dims;
SELECT binary_quantize('{0.5, -0.5, 0, 2, -3, 1e-30}') AS signs, length(binary_quantize(array_fill(1::real, ARRAY[70]))) AS bits;
-- Bit-string checks.
SELECT B'101' <~> B'10';
SELECT B'' <~> B'';
SELECT length(repeat('1', 64001)::varbit) AS too_long, (repeat('1', 64001)::varbit <~> repeat('0', 64001)::varbit);
SELECT repeat('1', 64000)::varbit <~> repeat('0', 64000)::varbit AS max_bits;
SELECT vector_dims('{}');
SELECT l2_normalize('{1, NaN}');

-- A data set with distinct distances for every metric.
CREATE TABLE v (id int PRIMARY KEY, e real[]);
INSERT INTO v SELECT i, ARRAY[sin(i * 0.7), cos(i * 0.3), sin(i * 1.9) * 0.5, cos(i * 2.3) + 0.5]::real[]
FROM generate_series(1, 600) i;
CREATE INDEX v_l2 ON v USING hannoy (e real_l2_ops);
CREATE INDEX v_cosine ON v USING hannoy (e real_cosine_ops);
CREATE INDEX v_ip ON v USING hannoy (e real_ip_ops);
CREATE INDEX v_l1 ON v USING hannoy (e real_l1_ops);
SELECT c.relname AS index, (hannoy_index_info(c.oid)).metric FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
WHERE i.indrelid = 'v'::regclass AND c.relam = (SELECT oid FROM pg_am WHERE amname = 'hannoy') ORDER BY 1;

-- Each operator is answered by its own index, and finds the exact scan's rows (overlap of
-- the ten nearest, summed over ten queries; inner product, not a metric, needs a wider beam).
CREATE FUNCTION nearest(op text, q real[], k int) RETURNS int[] LANGUAGE plpgsql AS $$
DECLARE result int[];
BEGIN
	EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM hannoy_metrics.v ORDER BY e %s $1 LIMIT $2) s', op)
		INTO result USING q, k;
	RETURN result;
END $$;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM v ORDER BY e <-> '{1, 1, 0, 1}' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM v ORDER BY e <=> '{1, 1, 0, 1}' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM v ORDER BY e <#> '{1, 1, 0, 1}' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM v ORDER BY e <+> '{1, 1, 0, 1}' LIMIT 5;
SET hannoy.ef_search = 100;
CREATE TEMP TABLE answers AS
SELECT op, q, nearest(op, ARRAY[sin(q), cos(q * 2), sin(q * 3), 0.5]::real[], 10) AS ids
FROM unnest(ARRAY['<->', '<=>', '<#>', '<+>']) op, generate_series(1, 10) q;
RESET hannoy.ef_search;
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT op, count(*) AS queries,
	sum((SELECT count(*) FROM unnest(ids) i
		 WHERE i = ANY (nearest(op, ARRAY[sin(q), cos(q * 2), sin(q * 3), 0.5]::real[], 10)))) AS found_of_100
FROM answers GROUP BY op ORDER BY op;
RESET enable_indexscan;

-- Exact rows and distances for one query per metric.
SET enable_seqscan = off;
SELECT id, round((e <#> '{1, 1, 0, 1}')::numeric, 6) AS negative_ip FROM v ORDER BY e <#> '{1, 1, 0, 1}' LIMIT 3;
SELECT id, round((e <+> '{1, 1, 0, 1}')::numeric, 6) AS l1 FROM v ORDER BY e <+> '{1, 1, 0, 1}' LIMIT 3;
RESET enable_seqscan;

-- Binary quantization: traversal over sign bits, rows returned in exact distance order.
CREATE INDEX v_l2_bq ON v USING hannoy (e real_l2_ops) WITH (quantization = 'binary');
CREATE INDEX v_cosine_bq ON v USING hannoy (e real_cosine_ops) WITH (quantization = binary);
CREATE INDEX v_l1_bq ON v USING hannoy (e real_l1_ops) WITH (quantization = 'binary');
CREATE INDEX v_ip_bq ON v USING hannoy (e real_ip_ops) WITH (quantization = 'binary');
SELECT ok, items, unreachable FROM hannoy_verify('v_l2_bq');
DROP INDEX v_l2, v_cosine, v_l1;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM v ORDER BY e <-> '{1, 1, 0, 1}' LIMIT 5;
CREATE TEMP TABLE bq AS
SELECT row_number() OVER () AS pos, id, e <-> '{0.2, 0.9, -0.3, 1}' AS d
FROM (SELECT id, e FROM v ORDER BY e <-> '{0.2, 0.9, -0.3, 1}' LIMIT 50) s;
SELECT count(*) AS rows, count(*) FILTER (WHERE b.d < a.d) AS out_of_order
FROM bq a LEFT JOIN bq b ON b.pos = a.pos + 1;
SELECT id FROM v ORDER BY e <=> '{0.2, 0.9, -0.3, 1}' LIMIT 3;
SELECT id FROM v ORDER BY e <+> '{0.2, 0.9, -0.3, 1}' LIMIT 3;
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT id FROM v ORDER BY e <=> '{0.2, 0.9, -0.3, 1}' LIMIT 3;
SELECT id FROM v ORDER BY e <+> '{0.2, 0.9, -0.3, 1}' LIMIT 3;
RESET enable_indexscan;
-- Inserts into a quantized index.
INSERT INTO v VALUES (1001, '{5, 5, 5, 5}');
SET enable_seqscan = off;
SELECT id FROM v ORDER BY e <-> '{5, 5, 5, 4.9}' LIMIT 1;
RESET enable_seqscan;

-- Hamming on bit(n) and bit varying columns.
CREATE TABLE b (id int PRIMARY KEY, fixed bit(64), varying bit varying);
INSERT INTO b SELECT i, (hashint8(i) # (hashint8(i) >> 7))::bit(64), (hashint8(i * 3))::bit(64)::varbit
FROM generate_series(1, 500) i;
CREATE INDEX b_fixed ON b USING hannoy (fixed);
CREATE INDEX b_varying ON b USING hannoy (varying bit_hamming_ops);
SELECT metric, dimensions FROM hannoy_index_info('b_fixed');
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM b ORDER BY fixed <~> B'1010101010101010101010101010101010101010101010101010101010101010' LIMIT 3;
SELECT id, fixed <~> (SELECT fixed FROM b WHERE id = 42) AS distance
FROM b ORDER BY fixed <~> (SELECT fixed FROM b WHERE id = 42) LIMIT 1;
SELECT id FROM b ORDER BY varying <~> (SELECT varying FROM b WHERE id = 7) LIMIT 1;
SELECT id FROM b ORDER BY fixed <~> B'101' LIMIT 1;
RESET enable_seqscan;
INSERT INTO b (id, varying) VALUES (1000, B'1');
CREATE INDEX ON b USING hannoy (fixed) WITH (quantization = 'binary');

-- 3,072 dimensions (pgvector's HNSW stops at 2,000) build and answer.
CREATE TABLE wide (id int, e real[]);
-- A smooth curve through 3,072 dimensions: row i's nearest rows are i +- 1, then i +- 2...
INSERT INTO wide SELECT i, (SELECT array_agg(sin(i * d * 0.00002)::real) FROM generate_series(1, 3072) d WHERE i > 0)
FROM generate_series(1, 200) i;
CREATE INDEX wide_idx ON wide USING hannoy (e);
SELECT dimensions, items FROM hannoy_index_info('wide_idx');
SET enable_seqscan = off;
SELECT id FROM wide ORDER BY e <-> (SELECT e FROM wide WHERE id = 77) LIMIT 3;
-- The ten nearest are those of exact search (a function, which no index serves).
SELECT count(*) AS same_as_exact
FROM (SELECT id FROM wide ORDER BY e <-> (SELECT e FROM wide WHERE id = 77) LIMIT 10) AS by_index
JOIN (SELECT id FROM wide ORDER BY l2_distance(e, (SELECT e FROM wide WHERE id = 77)) LIMIT 10) AS exact
USING (id);
RESET enable_seqscan;
SELECT ok FROM hannoy_verify('wide_idx');
