/*
 * test_util.hpp: helpers shared by the core's unit tests: temporary index files, seeded
 * random data and brute-force ground truth.
 */
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "core/distance/metric.hpp"
#include "core/graph/hnsw.hpp"
#include "core/store/index_store.hpp"

namespace hannoy::test
{

/// A fresh path in a private temporary directory, removed (with its lock file) at the end.
class TempPath
{
public:
	TempPath()
	{
		char templ[] = "/tmp/hannoy-unit-XXXXXX";
		char *dir = ::mkdtemp(templ);
		if (dir == nullptr)
			std::abort();
		dir_ = dir;
		path_ = dir_ + "/pgsql_tmp_hannoy_test";
	}
	~TempPath()
	{
		IndexStore::remove_files(path_);
		::rmdir(dir_.c_str());
	}
	const std::string &path() const { return path_; }

private:
	std::string dir_;
	std::string path_;
};

/// Row-major matrix of n vectors of `dims` floats, uniform in [-1, 1], from a seed.
inline std::vector<float>
random_vectors(uint32_t n, uint32_t dims, uint32_t seed)
{
	std::mt19937 rng(seed);
	std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
	std::vector<float> data(static_cast<size_t>(n) * dims);
	for (float &x : data)
		x = uniform(rng);
	return data;
}

/// Clustered data (Gaussian blobs of unit variance whose centres have standard deviation
/// `spread`), closer to real embeddings than uniform noise.
inline std::vector<float>
clustered_vectors(uint32_t n, uint32_t dims, uint32_t clusters, uint32_t seed, float spread = 3.0f)
{
	std::mt19937 rng(seed);
	std::normal_distribution<float> normal(0.0f, 1.0f);
	std::vector<float> centers(static_cast<size_t>(clusters) * dims);
	for (float &x : centers)
		x = normal(rng) * spread;
	std::vector<float> data(static_cast<size_t>(n) * dims);
	std::uniform_int_distribution<uint32_t> pick(0, clusters - 1);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t c = pick(rng);
		for (uint32_t d = 0; d < dims; d++)
			data[static_cast<size_t>(i) * dims + d] =
				centers[static_cast<size_t>(c) * dims + d] + normal(rng);
	}
	return data;
}

/// The same mixture with rows ordered cluster by cluster, as a table loaded sorted by
/// category would store them.
inline std::vector<float>
cluster_sorted_vectors(uint32_t n, uint32_t dims, uint32_t clusters, uint32_t seed)
{
	std::mt19937 rng(seed);
	std::normal_distribution<float> normal(0.0f, 1.0f);
	std::vector<float> centers(static_cast<size_t>(clusters) * dims);
	for (float &x : centers)
		x = normal(rng) * 3.0f;
	std::vector<float> data(static_cast<size_t>(n) * dims);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t c = static_cast<uint32_t>(static_cast<uint64_t>(i) * clusters / n);
		for (uint32_t d = 0; d < dims; d++)
			data[static_cast<size_t>(i) * dims + d] =
				centers[static_cast<size_t>(c) * dims + d] + normal(rng);
	}
	return data;
}

/// Queries near stored rows: row (q * 7919) % n shifted by `shift` in every dimension.
inline std::vector<float>
shifted_rows(const std::vector<float> &data, uint32_t dims, uint32_t count, float shift)
{
	uint32_t n = static_cast<uint32_t>(data.size() / dims);
	std::vector<float> queries(static_cast<size_t>(count) * dims);
	for (uint32_t q = 0; q < count; q++) {
		uint32_t row = static_cast<uint32_t>((static_cast<uint64_t>(q) * 7919) % n);
		for (uint32_t d = 0; d < dims; d++)
			queries[static_cast<size_t>(q) * dims + d] = data[static_cast<size_t>(row) * dims + d] + shift;
	}
	return queries;
}

/// Exact k nearest ids of `query` among `stored` (stored-form vectors) by the space's proxy.
inline std::vector<uint32_t>
brute_force(const Space &space, const std::vector<std::vector<uint8_t>> &stored, const uint8_t *query,
			size_t k)
{
	std::vector<Candidate> all;
	for (uint32_t i = 0; i < stored.size(); i++)
		if (!stored[i].empty())
			all.push_back(Candidate{space.distance(query, stored[i].data()), i});
	std::sort(all.begin(), all.end(), closer);
	std::vector<uint32_t> ids;
	for (size_t i = 0; i < std::min(k, all.size()); i++)
		ids.push_back(all[i].id);
	return ids;
}

/// Fraction of `truth` found in `got`.
inline double
recall(const std::vector<uint32_t> &truth, const std::vector<uint32_t> &got)
{
	if (truth.empty())
		return 1.0;
	size_t hits = 0;
	for (uint32_t id : truth)
		hits += std::find(got.begin(), got.end(), id) != got.end();
	return static_cast<double>(hits) / static_cast<double>(truth.size());
}

/// Stored form of a float vector for a metric.
inline std::vector<uint8_t>
stored_form(Metric metric, const float *v, uint32_t dims)
{
	std::vector<uint8_t> out(vector_bytes(metric, dims));
	preprocess_floats(metric, v, dims, reinterpret_cast<float *>(out.data()));
	return out;
}

/// The floats of an item's stored vector, whatever its encoding; empty when it has none.
inline std::vector<float>
stored_floats(StoreReader &reader, uint32_t id)
{
	VectorRef v = reader.vector(id);
	if (!v)
		return {};
	const IndexMeta &meta = reader.store().cached_meta();
	std::vector<float> out(meta.params.dims);
	decode_vector(v, meta.vector_bytes, meta.params.dims, reinterpret_cast<uint8_t *>(out.data()));
	return out;
}

} // namespace hannoy::test
