# dbosgen: make demo, make test, make check, make generate, make bench,
# make fuzz, make torture. See README.md.

SHELL := /bin/bash
GO    ?= go

# The PostgreSQL server tests create their databases on (read by the tests).
export DBOSGEN_TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable

# A fresh order number per make demo, so every demo crashes and resumes.
DEMO_ORDER := demo-$(shell date +%s)

FUZZTIME   ?= 60s
BENCHTIME  ?= 2s
BENCHCOUNT ?= 1
TEST_TIMEOUT ?= 15m
# One test binary at a time: each runtime test opens pools of up to 16
# PostgreSQL connections, and two packages at once can exhaust the server's
# default max_connections of 100. On 2 cores little is lost.
TEST_PARALLEL ?= 1
# The tests talk to PostgreSQL and build and run programs: results the go
# command cannot cache safely.
TEST_FLAGS ?= -count=1

.PHONY: help demo test vet fmt-check gotest interop browser chromium screenshot deps postgres generate check bench bench-peers peers-check fuzz torture clean

help:
	@echo "make demo      run examples/orders: crash it after step 2, watch it resume (embedded SQLite, no setup)"
	@echo "make test      go vet, gofmt check, go test -race ./... on PostgreSQL and SQLite (starts local PostgreSQL)"
	@echo "make interop   the DBOS interoperability suite (interop/): DBOS's Go SDK, CLI and an executor on dbosgen's database"
	@echo "make check     fail if a generated dbos_gen.go is out of date, or dbosgen vet finds nondeterminism in a workflow"
	@echo "make browser   the inspector in headless Chromium (runtime/dbosweb/browsertest); make screenshot updates docs/inspector.png"
	@echo "make generate  regenerate examples/*/dbos_gen.go and the generator's golden files"
	@echo "make bench     runtime benchmarks next to raw pgx / database/sql baselines, as a table"
	@echo "make bench-peers  queue drain and latency next to River and the DBOS Go SDK (bench/peers/, about 4 minutes)"
	@echo "make peers-check  bench/peers/: generated code up to date, go vet, and its smoke test (a -quick run of every system)"
	@echo "make fuzz      fuzz the directive parser for FUZZTIME ($(FUZZTIME))"
	@echo "make torture   the fault-injection suite (about 5 minutes of faults)"

# The first command of the quickstart: a durable checkout on the embedded
# SQLite default (.dbos/orders.sqlite). The first run kills itself with
# SIGKILL after two steps; the second resumes after them; the third returns
# the recorded receipt without running anything.
demo:
	@$(GO) build -o bin/orders ./examples/orders
	@echo
	@echo "=== 1/3: place order $(DEMO_ORDER); the process kills itself (SIGKILL) after step 2 ==="
	@./bin/orders -order $(DEMO_ORDER) -crash-after 2 || echo "=== the process died (exit status $$?), as asked ==="
	@echo
	@echo "=== 2/3: run it again: dbos.Launch resumes the workflow after its last completed step ==="
	@./bin/orders -order $(DEMO_ORDER)
	@echo
	@echo "=== 3/3: and again: the workflow has finished; its recorded receipt comes back ==="
	@./bin/orders -order $(DEMO_ORDER)
	@echo
	@echo "Done. The state is in .dbos/orders.sqlite; the code is in examples/orders/main.go."
	@echo "Try: go run ./examples/greetings    (the DBOS steps & transactions tutorial, in Go)"

test: deps vet fmt-check postgres gotest interop browser
	@echo "==> make test passed"

# Installs what a fresh machine with only Go lacks: a C compiler for -race.
deps:
	@command -v $(GO) >/dev/null || { echo "Go is required: https://go.dev/dl/" >&2; exit 1; }
	@if ! command -v gcc >/dev/null && ! command -v cc >/dev/null; then \
		echo "==> go test -race needs a C compiler; installing gcc"; \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null; \
		else echo "install gcc (e.g. apt-get install gcc) and run make test again" >&2; exit 1; fi; \
	fi

vet:
	@echo "==> go vet ./..."
	@$(GO) vet ./...

fmt-check:
	@echo "==> gofmt check"
	@files=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go' | grep -v '/testdata/')); \
	if [ -n "$$files" ]; then echo "these files are not gofmt-clean (run gofmt -w on them):"; echo "$$files"; exit 1; fi

postgres:
	@.ci/ensure-postgres

# Each package's result is printed as it finishes.
# The generator and vet packages type-check user code with go/packages,
# which checks packages concurrently with one shared types.Context; go/types
# then caches an instantiated generic alias (dbos.WorkflowHandle[R]) from
# two goroutines at once, a benign write the race detector reports inside
# the standard library. Their own code is single-threaded: they run without
# -race; everything else, the runtime above all, runs with it.
NORACE_PKGS := ./gen/... ./cmd/...

gotest:
	@echo "==> go test -race -p $(TEST_PARALLEL) (all but $(NORACE_PKGS)), then go test $(NORACE_PKGS) (PostgreSQL at $(DBOSGEN_TEST_POSTGRES_URL) and SQLite)"
	@start=$$(date +%s); \
	race=$$($(GO) list ./... | grep -v -e '/gen$$' -e '/gen/' -e '/cmd/'); \
	$(GO) test -race -p $(TEST_PARALLEL) $(TEST_FLAGS) -timeout $(TEST_TIMEOUT) $$race ; status=$$?; \
	$(GO) test -p $(TEST_PARALLEL) $(TEST_FLAGS) -timeout $(TEST_TIMEOUT) $(NORACE_PKGS) || status=1; \
	echo "==> go test took $$(( $$(date +%s) - start ))s"; exit $$status

# The interoperability suite, a module of its own (interop/go.mod) so the main
# module never depends on DBOS: dbosgen workflows read and operated by the DBOS
# Go SDK v1.8.0's client and CLI, next to a DBOS executor on one database.
interop: postgres
	@echo "==> cd interop && go test -count=1 ./... (DBOS SDK v1.8.0 against dbosgen, PostgreSQL at $(DBOSGEN_TEST_POSTGRES_URL))"
	@cd interop && $(GO) test -count=1 -timeout 10m ./...

# The inspector driven in headless Chromium by chromedp, a module of its own
# (runtime/dbosweb/browsertest/go.mod) so the main module does not depend on
# chromedp. Chromium is Debian's chromium package, installed when missing.
browser: chromium
	@echo "==> cd runtime/dbosweb/browsertest && go test -count=1 -v ./... (the inspector in headless Chromium)"
	@cd runtime/dbosweb/browsertest && $(GO) test -count=1 -v -timeout 5m ./... | grep -E '^(---|ok|FAIL|PASS)|browser test ran|_test.go'; exit $${PIPESTATUS[0]}

# The README's screenshot: the failed workflow's page, from the browser test.
screenshot: chromium
	@mkdir -p docs
	@cd runtime/dbosweb/browsertest && $(GO) test -count=1 ./... -args -screenshot $(CURDIR)/docs/inspector.png -list-screenshot $(CURDIR)/docs/inspector-list.png
	@echo "==> wrote docs/inspector.png and docs/inspector-list.png"

chromium:
	@if [ -z "$$CHROMIUM" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			echo "==> the browser test needs Chromium; installing Debian's chromium package"; \
			apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "the browser test needs Chromium: install it (sudo apt-get install chromium, or your system's package) or set CHROMIUM=/path/to/chrome, and run make test again" >&2; exit 1; fi; \
	fi

# Regenerates the examples' dbos_gen.go and the generator's golden files.
generate:
	$(GO) generate ./examples/... ./runtime/internal/torture/worker/
	cd interop && $(GO) generate ./...
	cd bench/peers && $(GO) generate ./...
	$(GO) test ./gen -run TestGolden -update

# Generated code up to date (what CI runs).
check:
	$(GO) run ./cmd/dbosgen -check ./...
	cd interop && $(GO) run github.com/dbosgen/dbosgen/cmd/dbosgen -check ./...
	$(GO) run ./cmd/dbosgen vet ./...
	cd interop && $(GO) run github.com/dbosgen/dbosgen/cmd/dbosgen vet ./...

bench: postgres
	@echo "==> go test -bench . -benchmem ./runtime/internal/engine ./runtime/internal/sysdb (BENCHTIME=$(BENCHTIME), BENCHCOUNT=$(BENCHCOUNT)); raw output in bin/bench.txt"
	@mkdir -p bin
	@$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) -timeout 60m ./runtime/internal/engine ./runtime/internal/sysdb | tee bin/bench.txt
	@echo
	@$(GO) run ./internal/benchtable < bin/bench.txt

# The side-by-side queue benchmark, a module of its own (bench/peers/go.mod)
# so the main module depends on neither River nor DBOS: for River v0.51.2 and
# the DBOS Go SDK v1.8.0 at their defaults and fastest polling, and dbosgen at
# its defaults, a drain of 3,000 preloaded one-step jobs by 16 workers and
# enqueue-to-completion latency with 16 producers, next to raw INSERTs, each
# on fresh databases. PEERS_FLAGS passes flags (e.g. -only dbosgen, -quick).
PEERS_FLAGS ?=
bench-peers: postgres
	@cd bench/peers && $(GO) run . $(PEERS_FLAGS)

# Not part of make test: the smoke test takes about a minute.
peers-check: postgres
	@echo "==> bench/peers: dbosgen -check, go vet, go test (a -quick run of River, DBOS and dbosgen)"
	@start=$$(date +%s); \
	cd bench/peers && $(GO) run github.com/dbosgen/dbosgen/cmd/dbosgen -check ./... && \
	$(GO) vet ./... && $(GO) test -count=1 -timeout 10m ./... ; status=$$?; \
	echo "==> peers-check took $$(( $$(date +%s) - start ))s"; exit $$status

fuzz:
	$(GO) test ./gen -run '^$$' -fuzz FuzzParseDirective -fuzztime $(FUZZTIME)

torture: postgres
	$(GO) test -race -run TestTorture -timeout 40m ./runtime/internal/torture -v -args -torture.duration=5m

clean:
	rm -rf bin .dbos
