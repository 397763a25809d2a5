# One entry point for building, testing and benchmarking ocnix.
# Tests that need root or a kernel feature skip loudly without them; CI runs as root.

GO        ?= go
BIN       := bin/opencode-launcher
# The release version, shared with flake.nix (which cannot use the commit: see there).
VERSION   ?= $(shell cat VERSION)
LDFLAGS   := -X github.com/ocnix/ocnix/launcher.Version=$(VERSION)
# Privileged packages share host-wide state (nft, netns, users): one at a time.
GOTEST    := $(GO) test -count=1 -p 1 -timeout 30m
# A fixed count, not a duration: a time budget ends in `context deadline exceeded` when
# the workers are slow to stop on a loaded machine, which fails a check that found nothing.
FUZZTIME  ?= 300000x
export CGO_ENABLED := 1
SHELL     := /bin/bash
# The whole verbose log of `make test`'s Go tests; the terminal gets the package lines,
# every skipped test with its reason, and every failure.
TESTLOG   ?= test-output.log

.PHONY: all build deps test test-unit test-root test-systemd test-kernels fuzz nixcheck bench demo lint clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/opencode-launcher

deps:
	bash scripts/install-deps.sh

## test: everything CI runs: vet, unit and privileged tests, a short fuzz run, Nix checks.
test: deps build lint
	@# The systemd tier runs on its own below (test-systemd), not here.
	@set -o pipefail; $(GOTEST) -v $$($(GO) list ./... | grep -v -e /systemdtests -e /kerneltests) 2>&1 | tee $(TESTLOG) | \
	  awk '/--- (SKIP|FAIL)/ { print; print "    " prev } /^(ok|FAIL|panic)/ { print } { prev = $$0 }' || \
	  { echo "== failures (full log: $(TESTLOG))"; grep -B1 -A25 -- '--- FAIL' $(TESTLOG) | head -300; exit 1; }
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)
	$(MAKE) nixcheck
	@set -o pipefail; $(MAKE) test-systemd 2>&1 | tee -a $(TESTLOG)
	@set -o pipefail; $(MAKE) test-kernels 2>&1 | tee -a $(TESTLOG)
	@# Top-level tests and subtests alike; any failure has stopped make before this line.
	@echo "tests: $$(grep -c -- '--- PASS' $(TESTLOG)) passed, 0 failed, $$(grep -c -- '--- SKIP' $(TESTLOG)) skipped"

## test-unit: no root, no network: what a laptop runs.
test-unit:
	$(GO) test -count=1 ./launcher/... ./sandbox/... ./netpolicy/...

## test-systemd: the NixOS module's rendered units on a real systemd, booted in a
## systemd-nspawn container (systemdtests/README.md). Skips loudly without root/nspawn.
## Needs no host lock: the container has its own network namespace for every netns,
## veth and nft table that the units make.
test-systemd: build
	OCNIX_SYSTEMD_TIER=1 $(GO) test -count=1 -v -timeout 30m ./systemdtests/

## test-kernels: the sandbox's privileged tests on Debian's 6.1 and 6.12 kernels,
## booted under QEMU (kerneltests/doc.go). About 3-4 minutes on two cores.
test-kernels:
	OCNIX_KERNEL_TIER=1 $(GO) test -count=1 -v -timeout 20m ./kerneltests/

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./launcher
	$(GO) test -run='^$$' -fuzz='^FuzzParseEnvFile$$' -fuzztime=$(FUZZTIME) ./internal/envfile
	$(GO) test -run='^$$' -fuzz='^FuzzParseDomain$$' -fuzztime=$(FUZZTIME) ./netpolicy

nixcheck: build
	@if command -v nix-instantiate >/dev/null; then \
		LAUNCHER=$(CURDIR)/$(BIN) bash nixmodule/check.sh; \
	else \
		echo "nixcheck: SKIPPED: nix-instantiate not found (apt-get install nix-bin, or make deps)"; \
	fi

## bench: benchmarks with ratios against bare runs, printed side by side.
bench: deps build
	$(GO) test -run='^$$' -bench=. -count=1 -p 1 ./sandbox/... ./netpolicy/...
	$(GO) test -run='^$$' -bench=. -benchtime=1x -count=3 ./e2e/...

## demo: a real sandboxed opencode from examples/demo.json, in the foreground until Ctrl-C.
demo: deps build
	bash scripts/demo.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@# check, explain and the plan packages promise to build off Linux (Nix evaluation on macOS).
	GOOS=darwin $(GO) vet ./...
	@# Unused code, suspicious expressions; installed by scripts/install-deps.sh.
	@if [ -x /opt/ocnix/tools/staticcheck ]; then echo /opt/ocnix/tools/staticcheck ./...; /opt/ocnix/tools/staticcheck ./...; else echo "lint: staticcheck not installed (make deps), not run"; fi
	@if command -v nixfmt >/dev/null; then nixfmt --check $$(git ls-files '*.nix'); else echo "lint: nixfmt not installed, Nix formatting not checked"; fi

clean:
	rm -rf bin
