-- Reloptions, GUCs and opclass validation.
CREATE SCHEMA hannoy_options;
SET search_path = hannoy_options, public;
CREATE TABLE t (id int, v real[]);
INSERT INTO t SELECT i, ARRAY[i, i * 2]::real[] FROM generate_series(1, 20) i;

-- Bounds of m and ef_construction, and their relation.
CREATE INDEX ON t USING hannoy (v) WITH (m = 1);
CREATE INDEX ON t USING hannoy (v) WITH (m = 101);
CREATE INDEX ON t USING hannoy (v) WITH (ef_construction = 3);
CREATE INDEX ON t USING hannoy (v) WITH (ef_construction = 1001);
CREATE INDEX ON t USING hannoy (v) WITH (m = 40, ef_construction = 64);
CREATE INDEX ON t USING hannoy (v) WITH (m = 'many');
CREATE INDEX ON t USING hannoy (v) WITH (quantization = 'pq');
CREATE INDEX ON t USING hannoy (v) WITH (unknown_option = 1);
CREATE INDEX t_small ON t USING hannoy (v) WITH (m = 2, ef_construction = 4);
CREATE INDEX t_large ON t USING hannoy (v) WITH (m = 100, ef_construction = 1000);
SELECT m, ef_construction FROM hannoy_index_info('t_small');
SELECT m, ef_construction FROM hannoy_index_info('t_large');
SELECT ok FROM hannoy_verify('t_small');
-- Options are frozen at build time: ALTER INDEX changes them only for the next REINDEX.
ALTER INDEX t_small SET (ef_construction = 8);
SELECT ef_construction FROM hannoy_index_info('t_small');
REINDEX INDEX t_small;
SELECT ef_construction FROM hannoy_index_info('t_small');
-- An invalid combination is refused when the index is rebuilt.
ALTER INDEX t_small SET (m = 8);
REINDEX INDEX t_small;
SELECT m, ef_construction FROM hannoy_index_info('t_small');

-- hannoy.ef_search bounds; other names under hannoy. are reserved.
SHOW hannoy.ef_search;
SET hannoy.ef_search = 0;
SET hannoy.ef_search = 1001;
SET hannoy.ef_search = 1;
SET hannoy.ef_search = 1000;
SET hannoy.no_such_setting = 1;
RESET hannoy.ef_search;

-- Index shapes that are not supported.
CREATE INDEX ON t USING hannoy (id);
CREATE INDEX ON t USING hannoy (v, id);
CREATE UNIQUE INDEX ON t USING hannoy (v);
CREATE INDEX ON t USING hannoy (v) INCLUDE (id);
CREATE INDEX ON t USING hannoy (v int4_ops);

-- The opclasses are valid; a broken one is reported.
SELECT opcname, amvalidate(oid) FROM pg_opclass
WHERE opcmethod = (SELECT oid FROM pg_am WHERE amname = 'hannoy') ORDER BY opcname;
CREATE OPERATOR FAMILY broken_ops USING hannoy;
CREATE OPERATOR CLASS broken_ops FOR TYPE real[] USING hannoy FAMILY broken_ops AS
	OPERATOR 1 <-> (real[], real[]) FOR ORDER BY float_ops;
SELECT amvalidate(oid) FROM pg_opclass WHERE opcname = 'broken_ops';
