-- hannoy: HNSW vector index access method with per-index LMDB storage.
\echo Use "CREATE EXTENSION hannoy" to load this file. \quit

-- Loading the library fails with a clear message unless hannoy is in
-- shared_preload_libraries: its lifecycle hooks must run in every backend.
CREATE FUNCTION hannoy_handler(internal) RETURNS index_am_handler
	AS 'MODULE_PATHNAME', 'hannoy_handler' LANGUAGE C;

CREATE ACCESS METHOD hannoy TYPE INDEX HANDLER hannoy_handler;
COMMENT ON ACCESS METHOD hannoy IS 'HNSW vector index stored in a per-index LMDB file';

-- Distances (exact, computed in double precision) and their operators. Operator spelling
-- follows pgvector: <-> euclidean, <=> cosine distance, <#> negative inner product,
-- <+> manhattan, <~> hamming.

CREATE FUNCTION l2_distance(real[], real[]) RETURNS float8
	AS 'MODULE_PATHNAME', 'hannoy_l2_distance' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION l2_distance(real[], real[]) IS 'euclidean distance';

CREATE FUNCTION cosine_distance(real[], real[]) RETURNS float8
	AS 'MODULE_PATHNAME', 'hannoy_cosine_distance' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cosine_distance(real[], real[]) IS 'cosine distance, 1 - cos (1 when either vector is zero)';

CREATE FUNCTION inner_product(real[], real[]) RETURNS float8
	AS 'MODULE_PATHNAME', 'hannoy_inner_product' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION inner_product(real[], real[]) IS 'inner product';

CREATE FUNCTION negative_inner_product(real[], real[]) RETURNS float8
	AS 'MODULE_PATHNAME', 'hannoy_negative_inner_product' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION negative_inner_product(real[], real[]) IS 'negative inner product (smaller is more similar)';

CREATE FUNCTION l1_distance(real[], real[]) RETURNS float8
	AS 'MODULE_PATHNAME', 'hannoy_l1_distance' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION l1_distance(real[], real[]) IS 'manhattan (L1) distance';

CREATE FUNCTION hamming_distance(bit varying, bit varying) RETURNS float8
	AS 'MODULE_PATHNAME', 'hannoy_hamming_distance' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION hamming_distance(bit varying, bit varying) IS 'number of differing bits';

CREATE OPERATOR <-> (
	LEFTARG = real[], RIGHTARG = real[], FUNCTION = l2_distance, COMMUTATOR = '<->'
);
COMMENT ON OPERATOR <->(real[], real[]) IS 'euclidean distance';

CREATE OPERATOR <=> (
	LEFTARG = real[], RIGHTARG = real[], FUNCTION = cosine_distance, COMMUTATOR = '<=>'
);
COMMENT ON OPERATOR <=>(real[], real[]) IS 'cosine distance';

CREATE OPERATOR <#> (
	LEFTARG = real[], RIGHTARG = real[], FUNCTION = negative_inner_product, COMMUTATOR = '<#>'
);
COMMENT ON OPERATOR <#>(real[], real[]) IS 'negative inner product';

CREATE OPERATOR <+> (
	LEFTARG = real[], RIGHTARG = real[], FUNCTION = l1_distance, COMMUTATOR = '<+>'
);
COMMENT ON OPERATOR <+>(real[], real[]) IS 'manhattan distance';

CREATE OPERATOR <~> (
	LEFTARG = bit varying, RIGHTARG = bit varying, FUNCTION = hamming_distance, COMMUTATOR = '<~>'
);
COMMENT ON OPERATOR <~>(bit varying, bit varying) IS 'hamming distance';

-- Vector helpers.

CREATE FUNCTION l2_normalize(real[]) RETURNS real[]
	AS 'MODULE_PATHNAME', 'hannoy_l2_normalize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION l2_normalize(real[]) IS 'the vector scaled to unit length (a zero vector stays zero)';

CREATE FUNCTION vector_dims(real[]) RETURNS integer
	AS 'MODULE_PATHNAME', 'hannoy_vector_dims' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION vector_dims(real[]) IS 'number of dimensions of a vector';

CREATE FUNCTION binary_quantize(real[]) RETURNS bit varying
	AS 'MODULE_PATHNAME', 'hannoy_binary_quantize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION binary_quantize(real[]) IS 'one bit per dimension: 1 where the element is positive';

-- Opclass support: the metric each opclass stands for.

CREATE FUNCTION hannoy_real_l2_support(internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'hannoy_real_l2_support' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hannoy_real_cosine_support(internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'hannoy_real_cosine_support' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hannoy_real_ip_support(internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'hannoy_real_ip_support' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hannoy_real_l1_support(internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'hannoy_real_l1_support' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION hannoy_bit_hamming_support(internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'hannoy_bit_hamming_support' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR CLASS real_l2_ops DEFAULT FOR TYPE real[] USING hannoy AS
	OPERATOR 1 <-> (real[], real[]) FOR ORDER BY float_ops,
	FUNCTION 1 l2_distance(real[], real[]),
	FUNCTION 2 hannoy_real_l2_support(internal);

CREATE OPERATOR CLASS real_cosine_ops FOR TYPE real[] USING hannoy AS
	OPERATOR 1 <=> (real[], real[]) FOR ORDER BY float_ops,
	FUNCTION 1 cosine_distance(real[], real[]),
	FUNCTION 2 hannoy_real_cosine_support(internal);

CREATE OPERATOR CLASS real_ip_ops FOR TYPE real[] USING hannoy AS
	OPERATOR 1 <#> (real[], real[]) FOR ORDER BY float_ops,
	FUNCTION 1 negative_inner_product(real[], real[]),
	FUNCTION 2 hannoy_real_ip_support(internal);

CREATE OPERATOR CLASS real_l1_ops FOR TYPE real[] USING hannoy AS
	OPERATOR 1 <+> (real[], real[]) FOR ORDER BY float_ops,
	FUNCTION 1 l1_distance(real[], real[]),
	FUNCTION 2 hannoy_real_l1_support(internal);

-- For bit varying columns, and bit(n) columns through the binary-compatible cast.
CREATE OPERATOR CLASS bit_hamming_ops DEFAULT FOR TYPE bit varying USING hannoy AS
	OPERATOR 1 <~> (bit varying, bit varying) FOR ORDER BY float_ops,
	FUNCTION 1 hamming_distance(bit varying, bit varying),
	FUNCTION 2 hannoy_bit_hamming_support(internal);

-- Administration.

CREATE FUNCTION hannoy_index_info(index regclass,
	OUT file text, OUT file_exists boolean, OUT file_bytes bigint, OUT matches_metapage boolean,
	OUT metric text, OUT dimensions integer, OUT m integer, OUT ef_construction integer,
	OUT items bigint, OUT deleted_items bigint, OUT max_level integer, OUT format_version integer,
	OUT entry_point bigint, OUT layers integer, OUT resident_bytes bigint)
	AS 'MODULE_PATHNAME', 'hannoy_index_info' LANGUAGE C STRICT;
COMMENT ON FUNCTION hannoy_index_info(regclass) IS 'storage file, size and contents of a hannoy index';

CREATE FUNCTION hannoy_verify(index regclass, reachability boolean DEFAULT true,
	OUT ok boolean, OUT items bigint, OUT deleted_items bigint, OUT link_lists bigint, OUT links bigint,
	OUT unreachable bigint, OUT max_level integer, OUT problems text[], OUT heap_tids bigint)
	AS 'MODULE_PATHNAME', 'hannoy_verify' LANGUAGE C STRICT;
COMMENT ON FUNCTION hannoy_verify(regclass, boolean) IS 'checks every structural invariant of a hannoy index';

CREATE FUNCTION hannoy_index_size(index regclass) RETURNS bigint
	AS 'MODULE_PATHNAME', 'hannoy_index_size' LANGUAGE C STRICT;
COMMENT ON FUNCTION hannoy_index_size(regclass) IS 'bytes of a hannoy index: storage file and relation';

CREATE FUNCTION hannoy_cleanup_orphans(OUT file text, OUT bytes bigint) RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'hannoy_cleanup_orphans' LANGUAGE C STRICT;
COMMENT ON FUNCTION hannoy_cleanup_orphans() IS 'removes hannoy storage files of this database that belong to no index';

CREATE FUNCTION hannoy_kernels() RETURNS text
	AS 'MODULE_PATHNAME', 'hannoy_kernels' LANGUAGE C STRICT PARALLEL SAFE;
COMMENT ON FUNCTION hannoy_kernels() IS 'instruction set of the distance kernels in use';

REVOKE ALL ON FUNCTION hannoy_index_info(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION hannoy_verify(regclass, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION hannoy_cleanup_orphans() FROM PUBLIC;
