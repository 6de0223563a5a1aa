# hannoy: HNSW index access method for PostgreSQL, graph and vectors in a per-index LMDB file.
#
#   make / make install        build and install the extension (PGXS)
#   make unittest              GoogleTest suite of the PostgreSQL-free core
#   make unittest-sanitize     the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make kernels-bench         Google Benchmark of the distance kernels
#   make installcheck          pg_regress suite (needs a server with shared_preload_libraries)
#   make format / format-check clang-format over src/, test/, bench/

EXTENSION = hannoy
EXTVERSION = 0.1.0
MODULE_big = hannoy
DATA = sql/hannoy--$(EXTVERSION).sql
PGFILEDESC = "hannoy - HNSW vector index stored in LMDB"

CORE_SRCS = $(sort $(wildcard src/core/*.cpp src/core/*/*.cpp))
PG_SRCS = $(sort $(wildcard src/pg/*.cpp))
OBJS = $(CORE_SRCS:.cpp=.o) $(PG_SRCS:.cpp=.o)

REGRESS = $(shell sed -n 's/^test: *//p' test/schedule)
REGRESS_OPTS = --temp-config=$(srcdir)/test/regress.conf --load-extension=hannoy

WARNINGS = -Wall -Wextra -Wshadow -Werror -Wno-missing-field-initializers
# -MMD -MP: PGXS tracks no header dependencies for C++; the compiler writes them next to each object.
PG_CXXFLAGS = -std=c++17 $(WARNINGS) -fvisibility=hidden -fno-omit-frame-pointer -Wno-register -MMD -MP
PG_CPPFLAGS = -Isrc
SHLIB_LINK = -llmdb -lroaring -lstdc++ -lm

# JIT inlining of index AM code has no value, and the bitcode step would compile C++ without
# our flags; PostgreSQL's own C++ support for bitcode is not needed.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The server's CXXFLAGS are for C; keep them but make sure the core never sees server headers.
src/core/%.o: override CPPFLAGS := -Isrc -D_GNU_SOURCE
src/pg/%.o: CPPFLAGS += -isystem $(shell $(PG_CONFIG) --includedir-server)

# Per-instruction-set kernels: only these files may use AVX instructions; dispatch picks
# them at run time, so the library runs on any x86-64 CPU.
AVX2_FLAGS = -mavx2 -mfma -mpopcnt
AVX512_FLAGS = -mavx512f -mavx512bw -mavx512vl -mavx512vpopcntdq -mavx2 -mfma -mpopcnt
src/core/distance/kernels_avx2.o: CXXFLAGS += $(AVX2_FLAGS)
src/core/distance/kernels_avx512.o: CXXFLAGS += $(AVX512_FLAGS)

-include $(OBJS:.o=.d)
EXTRA_CLEAN = $(OBJS:.o=.d)

# ---------------------------------------------------------------------------------------------
# Standalone builds of the core (no PostgreSQL include path at all).

BUILD = build
UNIT_CXX ?= g++
UNIT_FLAGS = -std=c++17 $(WARNINGS) -g -O2 -Isrc -pthread
UNIT_LIBS = -llmdb -lroaring -lgtest -lgtest_main -pthread
UNIT_TEST_SRCS = $(sort $(wildcard test/unit/*_test.cpp))
SANITIZE_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1
THREAD_SANITIZE_FLAGS = -fsanitize=thread -O1

define core_objects
$(patsubst src/core/%.cpp,$(BUILD)/$(1)/core/%.o,$(CORE_SRCS))
endef

$(BUILD)/unit/core/%.o: src/core/%.cpp $(wildcard src/core/*.hpp src/core/*/*.hpp)
	@mkdir -p $(dir $@)
	$(UNIT_CXX) $(UNIT_FLAGS) $(if $(findstring kernels_avx512,$@),$(AVX512_FLAGS),$(if $(findstring kernels_avx2,$@),$(AVX2_FLAGS))) -c -o $@ $<

$(BUILD)/sanitize/core/%.o: src/core/%.cpp $(wildcard src/core/*.hpp src/core/*/*.hpp)
	@mkdir -p $(dir $@)
	$(UNIT_CXX) $(UNIT_FLAGS) $(SANITIZE_FLAGS) $(if $(findstring kernels_avx512,$@),$(AVX512_FLAGS),$(if $(findstring kernels_avx2,$@),$(AVX2_FLAGS))) -c -o $@ $<

$(BUILD)/thread/core/%.o: src/core/%.cpp $(wildcard src/core/*.hpp src/core/*/*.hpp)
	@mkdir -p $(dir $@)
	$(UNIT_CXX) $(UNIT_FLAGS) $(THREAD_SANITIZE_FLAGS) $(if $(findstring kernels_avx512,$@),$(AVX512_FLAGS),$(if $(findstring kernels_avx2,$@),$(AVX2_FLAGS))) -c -o $@ $<

$(BUILD)/unit/hannoy_unit: $(call core_objects,unit) $(UNIT_TEST_SRCS) $(wildcard test/unit/*.hpp)
	$(UNIT_CXX) $(UNIT_FLAGS) -Itest/unit -o $@ $(UNIT_TEST_SRCS) $(call core_objects,unit) $(UNIT_LIBS)

$(BUILD)/sanitize/hannoy_unit: $(call core_objects,sanitize) $(UNIT_TEST_SRCS) $(wildcard test/unit/*.hpp)
	$(UNIT_CXX) $(UNIT_FLAGS) $(SANITIZE_FLAGS) -Itest/unit -o $@ $(UNIT_TEST_SRCS) $(call core_objects,sanitize) $(UNIT_LIBS)

# ThreadSanitizer build of the tests that run threads (concurrent graph construction).
$(BUILD)/thread/hannoy_unit: $(call core_objects,thread) test/unit/graph_test.cpp $(wildcard test/unit/*.hpp)
	$(UNIT_CXX) $(UNIT_FLAGS) $(THREAD_SANITIZE_FLAGS) -Itest/unit -o $@ test/unit/graph_test.cpp $(call core_objects,thread) $(UNIT_LIBS)

$(BUILD)/unit/kernels_bench: $(call core_objects,unit) bench/kernels_bench.cpp
	$(UNIT_CXX) $(UNIT_FLAGS) -O3 -o $@ bench/kernels_bench.cpp $(call core_objects,unit) -llmdb -lroaring -lbenchmark -pthread

.PHONY: unittest unittest-sanitize unittest-thread kernels-bench format format-check

unittest: $(BUILD)/unit/hannoy_unit
	$(BUILD)/unit/hannoy_unit $(GTEST_ARGS)

unittest-sanitize: $(BUILD)/sanitize/hannoy_unit
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(BUILD)/sanitize/hannoy_unit $(GTEST_ARGS)

unittest-thread: $(BUILD)/thread/hannoy_unit
	TSAN_OPTIONS=halt_on_error=1 $(BUILD)/thread/hannoy_unit --gtest_filter='ParallelBuild.ManyThreads*:ParallelBuild.AFailing*' $(GTEST_ARGS)

kernels-bench: $(BUILD)/unit/kernels_bench
	$(BUILD)/unit/kernels_bench

FORMAT_FILES = $(shell git ls-files 'src/*.cpp' 'src/*.hpp' 'test/*.cpp' 'test/*.hpp' 'bench/*.cpp' 2>/dev/null)
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

clean: clean-unit
clean-unit:
	rm -rf $(BUILD)

# The benchmark (scripts/bench.sh): `make bench`, or `make bench BENCH_ARGS=--quick`.
.PHONY: bench
bench:
	scripts/bench.sh $(BENCH_ARGS)
