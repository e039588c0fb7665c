# Thin wrapper over CMake + Ninja. `make` builds everything, `make run` serves the embedded
# IM core in the foreground, `make test` runs the whole test suite (installing
# Redis, PostgreSQL, etcd and NATS for the backend tests, which start them). All set-up is automatic.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
CONFIG ?= config/flare.toml
JOBS ?= 2

.PHONY: all deps configure build run test clean

all: build

deps:
	@scripts/install_deps.sh

$(BUILD_DIR)/build.ninja: CMakeLists.txt | deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	@cmake --build $(BUILD_DIR)

run: build
	exec $(BUILD_DIR)/bin/flare serve embedded --config $(CONFIG)

test: build
	@scripts/install_deps.sh --servers
	@cd $(BUILD_DIR) && ctest --output-on-failure --timeout 600 -j $(JOBS)

clean:
	rm -rf $(BUILD_DIR)
