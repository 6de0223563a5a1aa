/*
 * hannoy_vector.cpp: real[] values as vectors: validation, the SQL distance functions behind
 * the operators, and the metric of an opclass.
 *
 * These functions hold no C++ objects, so they may raise PostgreSQL errors directly.
 */
#include "hannoy.hpp"

#include <cmath>

#pragma GCC visibility push(default)
extern "C" {
PG_FUNCTION_INFO_V1(hannoy_l2_distance);
PG_FUNCTION_INFO_V1(hannoy_cosine_distance);
}
#pragma GCC visibility pop

namespace hannoy::pg
{

FloatVector
float_vector_from_datum(Datum datum)
{
	ArrayType *array = DatumGetArrayTypeP(datum);
	if (ARR_ELEMTYPE(array) != FLOAT4OID)
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH), errmsg("vector must be an array of real")));
	int ndim = ARR_NDIM(array);
	if (ndim == 0)
		ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION), errmsg("vector must have at least 1 dimension")));
	if (ndim != 1)
		ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION), errmsg("vector must be a one-dimensional array"),
						errdetail("The array has %d dimensions.", ndim)));
	int dims = ARR_DIMS(array)[0];
	if (ARR_HASNULL(array)) {
		bits8 *nulls = ARR_NULLBITMAP(array);
		for (int i = 0; i < dims; i++)
			if (!(nulls[i / 8] & (1 << (i % 8))))
				ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
								errmsg("vector must not contain NULL elements"),
								errdetail("Element %d (counting from 1) is NULL.", i + 1)));
	}
	if (dims > static_cast<int>(kMaxFloatDims))
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("vector cannot have more than %u dimensions", kMaxFloatDims),
						errdetail("The vector has %d dimensions.", dims)));
	const float *data = reinterpret_cast<const float *>(ARR_DATA_PTR(array));
	int64_t bad = first_non_finite(data, static_cast<uint32_t>(dims));
	if (bad >= 0)
		ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION),
						errmsg(std::isnan(data[bad]) ? "NaN not allowed in vector"
													 : "infinite value not allowed in vector"),
						errdetail("Element %lld (counting from 1) is %s.", static_cast<long long>(bad + 1),
								  std::isnan(data[bad]) ? "NaN" : "infinite")));
	return FloatVector{data, static_cast<uint32>(dims)};
}

Metric
index_metric(Relation index)
{
	FmgrInfo *info = index_getprocinfo(index, 1, 2);
	Datum value = FunctionCall1(info, PointerGetDatum(nullptr));
	Metric metric;
	if (!metric_from_u8(static_cast<uint8_t>(DatumGetInt32(value)), &metric))
		elog(ERROR, "hannoy opclass of \"%s\" names an unknown metric %d", RelationGetRelationName(index),
			 DatumGetInt32(value));
	return metric;
}

namespace
{

/* Both arguments as vectors of equal dimension, or an error. */
void
distance_arguments(FunctionCallInfo fcinfo, FloatVector *a, FloatVector *b)
{
	*a = float_vector_from_datum(PG_GETARG_DATUM(0));
	*b = float_vector_from_datum(PG_GETARG_DATUM(1));
	if (a->dims != b->dims)
		ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION),
						errmsg("different vector dimensions %u and %u", a->dims, b->dims)));
}

} // namespace

} // namespace hannoy::pg

using namespace hannoy::pg;

extern "C" Datum
hannoy_l2_distance(PG_FUNCTION_ARGS)
{
	FloatVector a, b;
	distance_arguments(fcinfo, &a, &b);
	PG_RETURN_FLOAT8(hannoy::exact_l2(a.data, b.data, a.dims));
}

extern "C" Datum
hannoy_cosine_distance(PG_FUNCTION_ARGS)
{
	FloatVector a, b;
	distance_arguments(fcinfo, &a, &b);
	PG_RETURN_FLOAT8(hannoy::exact_cosine(a.data, b.data, a.dims));
}
