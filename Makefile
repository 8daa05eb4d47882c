# Thin wrapper over CMake. On a fresh Debian machine:
#   make demo   installs what is missing, builds, trains an MLP on Fashion-MNIST (samples/mlp.c)
#   make test   installs what is missing, builds, runs the whole suite (ctest + cmocka)
#   make build  builds only
#   make bench-gpu  Kiln's CUDA target beside PyTorch eager and torch.compile on this machine's
#               GPU (bench/gpu.sh); installs nothing: the GPU machines have no package registry
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build test demo demo-cnn demo-gpt bench bench-gpu format format-check clean install

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_C_COMPILER=$${CC:-clang} $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	./$(BUILD)/samples/mlp --checkpoint $(BUILD)/mlp.safetensors

demo-cnn: build
	./$(BUILD)/samples/cnn --checkpoint $(BUILD)/cnn.safetensors

demo-gpt: build
	./$(BUILD)/samples/gpt

bench: build
	./$(BUILD)/bench/bench_compile_time
	bash bench/cpu.sh ./$(BUILD)/bench/bench_cpu
	if [ -x ./$(BUILD)/bench/bench_dp ]; then bash bench/mpi.sh ./$(BUILD)/bench/bench_dp; fi

bench-gpu: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS) --target bench_gpu
	bash bench/gpu.sh ./$(BUILD)/bench/bench_gpu

install: build
	cmake --install $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.inc')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h' '*.inc')

clean:
	rm -rf $(BUILD)
