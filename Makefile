# enroll: the two entry points are `make demo` and `make check`; both install
# missing Debian packages first (as root; otherwise they say what to install).
BUILD      ?= build
ASAN_BUILD ?= build-asan
RELEASE_BUILD ?= build-release
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME  ?= 60
SMOKE_TIME ?= 10
JOBS       ?= $(shell nproc)

.PHONY: all deps build release-build test asan fuzz-build fuzz-smoke fuzz check demo bench fresh-check install package clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DENROLL_WERROR=ON >/dev/null
	@ninja -C $(BUILD)

# What packagers build (-O3, gcc), warnings as errors here: -O3 finds
# maybe-uninitialized paths the other builds do not.
release-build: deps
	@cmake -S . -B $(RELEASE_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DENROLL_WERROR=ON >/dev/null
	@ninja -C $(RELEASE_BUILD)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole suite again with AddressSanitizer + UndefinedBehaviorSanitizer,
# the CLI tests included (they run the sanitized `enroll`).
asan: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	    -DENROLL_SANITIZE=ON -DENROLL_WERROR=ON >/dev/null
	@ninja -C $(ASAN_BUILD)
	@cd $(ASAN_BUILD) && \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	    ctest --output-on-failure -j $(JOBS)

fuzz-build: deps
	@cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DENROLL_FUZZ=ON -DENROLL_WERROR=OFF >/dev/null
	@ninja -C $(FUZZ_BUILD)

# Each fuzz target briefly on its corpus (part of `make check`).
fuzz-smoke: fuzz-build
	@scripts/fuzz.sh $(FUZZ_BUILD) $(SMOKE_TIME)

# Each fuzz target for FUZZ_TIME seconds (default 60).
fuzz: fuzz-build
	@scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_TIME)

check: test release-build asan fuzz-smoke
	@n=$$(cd $(BUILD) && ctest -N | sed -n 's/^Total Tests: //p'); \
	 a=$$(cd $(ASAN_BUILD) && ctest -N | sed -n 's/^Total Tests: //p'); \
	 f=$$(ls $(FUZZ_BUILD)/fuzz/fuzz_* 2>/dev/null | wc -l); \
	 echo "make check: $$n test programs, again $$a under ASan+UBSan, $$f fuzz targets; the Release build built"; \
	 echo "check: $$((n + a + f)) passed, 0 failed"

# cmake --install of the build: PREFIX (default /usr/local) and DESTDIR as
# usual; what goes where: docs/operations.md, "Installing".
PREFIX ?= /usr/local
install: build
	@DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

# The .deb (cpack; /usr): $(BUILD)/enroll_VERSION_ARCH.deb
package: build
	@cd $(BUILD) && cpack -G DEB

demo: build
	@scripts/demo.sh $(BUILD)

bench: build
	@for b in $(BUILD)/bench/bench_*; do [ -x "$$b" ] && "$$b"; done; bench/run_load.sh $(BUILD); \
	 bench/run_flat.sh $(BUILD); bench/run_instructions.sh $(BUILD); \
	 bench/run_store_compare.sh $(BUILD)

# The README's two commands, as root, in a fresh Debian 12 root (debootstrap
# minbase + git + make) holding a clone of HEAD: what a new machine sees,
# which CI cannot. Slow (a whole install and `make check`), so not in check.
fresh-check:
	@scripts/fresh-check.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(RELEASE_BUILD)
