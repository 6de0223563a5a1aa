/*
 * hannoy_vector.cpp: vector values (real[] and bit strings): validation, stored form, the SQL
 * distance functions behind the operators, helper functions, and the metric of an opclass.
 *
 * These functions hold no C++ objects, so they may raise PostgreSQL errors directly.
 */
#include "hannoy.hpp"

#include <cmath>

#pragma GCC visibility push(default)
extern "C" {
PG_FUNCTION_INFO_V1(hannoy_l2_distance);
PG_FUNCTION_INFO_V1(hannoy_cosine_distance);
PG_FUNCTION_INFO_V1(hannoy_inner_product);
PG_FUNCTION_INFO_V1(hannoy_negative_inner_product);
PG_FUNCTION_INFO_V1(hannoy_l1_distance);
PG_FUNCTION_INFO_V1(hannoy_hamming_distance);
PG_FUNCTION_INFO_V1(hannoy_l2_normalize);
PG_FUNCTION_INFO_V1(hannoy_vector_dims);
PG_FUNCTION_INFO_V1(hannoy_binary_quantize);
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

VectorValue
vector_from_datum(Datum datum, Metric metric)
{
	if (metric_uses_floats(metric)) {
		FloatVector floats = float_vector_from_datum(datum);
		return VectorValue{floats.data, floats.dims};
	}
	VarBit *bits = DatumGetVarBitP(datum);
	int length = VARBITLEN(bits);
	if (length == 0)
		ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION), errmsg("bit string must have at least 1 bit")));
	if (length > static_cast<int>(kMaxBits))
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("bit string cannot have more than %u bits", kMaxBits),
						errdetail("The bit string has %d bits.", length)));
	return VectorValue{VARBITS(bits), static_cast<uint32>(length)};
}

void
write_stored_vector(Metric metric, const VectorValue &value, uint8_t *out)
{
	if (metric_uses_floats(metric))
		preprocess_floats(metric, static_cast<const float *>(value.data), value.dims,
						  reinterpret_cast<float *>(out));
	else
		memcpy(out, value.data, vector_bytes(metric, value.dims)); /* padding bits of a bit string are zero */
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

/* Both arguments as bit strings of equal length, or an error. */
void
bit_arguments(FunctionCallInfo fcinfo, VectorValue *a, VectorValue *b)
{
	*a = vector_from_datum(PG_GETARG_DATUM(0), Metric::Hamming);
	*b = vector_from_datum(PG_GETARG_DATUM(1), Metric::Hamming);
	if (a->dims != b->dims)
		ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION),
						errmsg("different bit lengths %u and %u", a->dims, b->dims)));
}

Datum
float_array_datum(const float *values, uint32 dims)
{
	Datum *elements = static_cast<Datum *>(palloc(sizeof(Datum) * dims));
	for (uint32 i = 0; i < dims; i++)
		elements[i] = Float4GetDatum(values[i]);
	return PointerGetDatum(
		construct_array(elements, static_cast<int>(dims), FLOAT4OID, sizeof(float4), true, TYPALIGN_INT));
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

extern "C" Datum
hannoy_inner_product(PG_FUNCTION_ARGS)
{
	FloatVector a, b;
	distance_arguments(fcinfo, &a, &b);
	PG_RETURN_FLOAT8(hannoy::exact_inner_product(a.data, b.data, a.dims));
}

extern "C" Datum
hannoy_negative_inner_product(PG_FUNCTION_ARGS)
{
	FloatVector a, b;
	distance_arguments(fcinfo, &a, &b);
	PG_RETURN_FLOAT8(-hannoy::exact_inner_product(a.data, b.data, a.dims));
}

extern "C" Datum
hannoy_l1_distance(PG_FUNCTION_ARGS)
{
	FloatVector a, b;
	distance_arguments(fcinfo, &a, &b);
	PG_RETURN_FLOAT8(hannoy::exact_l1(a.data, b.data, a.dims));
}

extern "C" Datum
hannoy_hamming_distance(PG_FUNCTION_ARGS)
{
	VectorValue a, b;
	bit_arguments(fcinfo, &a, &b);
	PG_RETURN_FLOAT8(static_cast<double>(
		hannoy::exact_hamming(static_cast<const uint8_t *>(a.data), static_cast<const uint8_t *>(b.data),
							  hannoy::vector_bytes(hannoy::Metric::Hamming, a.dims))));
}

extern "C" Datum
hannoy_l2_normalize(PG_FUNCTION_ARGS)
{
	FloatVector v = float_vector_from_datum(PG_GETARG_DATUM(0));
	float *normalized = static_cast<float *>(palloc(sizeof(float) * v.dims));
	hannoy::preprocess_floats(hannoy::Metric::Cosine, v.data, v.dims, normalized);
	PG_RETURN_DATUM(float_array_datum(normalized, v.dims));
}

extern "C" Datum
hannoy_vector_dims(PG_FUNCTION_ARGS)
{
	FloatVector v = float_vector_from_datum(PG_GETARG_DATUM(0));
	PG_RETURN_INT32(static_cast<int32>(v.dims));
}

/* Sign bits, first element first: bit i of the result is 1 when element i is positive. */
extern "C" Datum
hannoy_binary_quantize(PG_FUNCTION_ARGS)
{
	FloatVector v = float_vector_from_datum(PG_GETARG_DATUM(0));
	int bytes = VARBITTOTALLEN(v.dims);
	VarBit *result = static_cast<VarBit *>(palloc0(bytes));
	SET_VARSIZE(result, bytes);
	VARBITLEN(result) = static_cast<int32>(v.dims);
	bits8 *out = VARBITS(result);
	for (uint32 i = 0; i < v.dims; i++)
		if (v.data[i] > 0)
			out[i / BITS_PER_BYTE] |= static_cast<bits8>(1 << (BITS_PER_BYTE - 1 - i % BITS_PER_BYTE));
	PG_RETURN_VARBIT_P(result);
}
