/*
 * exports.hpp: every symbol PostgreSQL looks up by name in hannoy's shared library.
 *
 * They are declared here, with default visibility and C linkage, before any definition;
 * the library is otherwise built with hidden visibility.
 */
#pragma once

#include "postgres_headers.hpp"

#pragma GCC visibility push(default)
extern "C" {

void _PG_init(void);

/* Entry point of the parallel workers of an index build. */
void hannoy_parallel_build_main(dsm_segment *seg, shm_toc *toc);

/* Access method handler. */
Datum hannoy_handler(PG_FUNCTION_ARGS);

/* Opclass support: which metric an opclass means. */
Datum hannoy_real_l2_support(PG_FUNCTION_ARGS);
Datum hannoy_real_cosine_support(PG_FUNCTION_ARGS);
Datum hannoy_real_ip_support(PG_FUNCTION_ARGS);
Datum hannoy_real_l1_support(PG_FUNCTION_ARGS);
Datum hannoy_bit_hamming_support(PG_FUNCTION_ARGS);

/* Distance functions behind the operators, and vector helpers. */
Datum hannoy_l2_distance(PG_FUNCTION_ARGS);
Datum hannoy_cosine_distance(PG_FUNCTION_ARGS);
Datum hannoy_inner_product(PG_FUNCTION_ARGS);
Datum hannoy_negative_inner_product(PG_FUNCTION_ARGS);
Datum hannoy_l1_distance(PG_FUNCTION_ARGS);
Datum hannoy_hamming_distance(PG_FUNCTION_ARGS);
Datum hannoy_l2_normalize(PG_FUNCTION_ARGS);
Datum hannoy_vector_dims(PG_FUNCTION_ARGS);
Datum hannoy_binary_quantize(PG_FUNCTION_ARGS);

/* Administration. */
Datum hannoy_verify(PG_FUNCTION_ARGS);
Datum hannoy_index_info(PG_FUNCTION_ARGS);
Datum hannoy_kernels(PG_FUNCTION_ARGS);
}
#pragma GCC visibility pop
