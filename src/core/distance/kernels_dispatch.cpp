/*
 * kernels_dispatch.cpp: picks the kernel table the rest of the core uses.
 *
 * The choice is made once per process from the running CPU's features, so one binary runs
 * on any x86-64 machine; HANNOY_KERNELS can force a narrower table for tests and benchmarks.
 */
#include "kernels.hpp"

#include <cstdlib>
#include <cstring>

#include "../pure_cpp.hpp"

namespace hannoy::simd
{

namespace
{

const Kernels &
best_kernels()
{
	if (const Kernels *k = avx512_kernels())
		return *k;
	if (const Kernels *k = avx2_kernels())
		return *k;
	return scalar_kernels();
}

} // namespace

const Kernels &
select_kernels(const char *requested)
{
	if (requested != nullptr) {
		if (std::strcmp(requested, "scalar") == 0)
			return scalar_kernels();
		if (std::strcmp(requested, "avx2") == 0) {
			if (const Kernels *k = avx2_kernels())
				return *k;
		} else if (std::strcmp(requested, "avx512") == 0) {
			if (const Kernels *k = avx512_kernels())
				return *k;
		}
	}
	return best_kernels();
}

const Kernels &
active_kernels()
{
	/* A function-local static: initialised exactly once even when first called concurrently. */
	static const Kernels &chosen = select_kernels(std::getenv("HANNOY_KERNELS"));
	return chosen;
}

} // namespace hannoy::simd
