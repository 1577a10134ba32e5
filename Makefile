# Targets for newcomers and CI. `make help` lists them.
GO        ?= go
GOLANGCI  ?= $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
BIN       := bin

.PHONY: help build demo test check-alerts dashboard bench lint clean

help: ## List the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-z-]+:.*## /{printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build the worker, offboardctl and the simulator into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/worker ./cmd/offboardctl ./cmd/mdesim

# Built, then run itself: under go run, a Ctrl-C reaches the go command
# too, which then exits 1 whatever the demo's own exit, and make reported
# "Error 1" for a DEMO_KEEP run stopped cleanly.
demo: ## Run the whole job end to end: embedded NATS, simulator, worker, sample batch
	$(GO) build -o $(BIN)/demo ./cmd/demo
	$(BIN)/demo

# Most tests wait (for NATS, a timeout, a worker's next step) far more than
# they compute: at the default, one at a time per core, the largest
# package kept half a core busy; four at a time nearly halve the run.
TESTFLAGS ?= -race -count=1 -parallel 4 -timeout 20m

test: ## go vet, every test with the race detector, then the alert rules
	$(GO) vet ./...
	@echo '$(GO) test $(TESTFLAGS) ./...'
	@log=$$(mktemp) && rc=$$(mktemp) && \
	{ $(GO) test $(TESTFLAGS) ./... 2>&1; echo $$? > $$rc; } | tee $$log; \
	status=$$(cat $$rc); \
	if [ "$$status" != 0 ]; then \
		echo; echo "make test: what failed (the whole output is above):"; \
		grep -E '^ *--- FAIL|^FAIL|^panic: ' $$log | head -40; \
		grep -E -A6 '^panic: test timed out' $$log | grep -E '^panic|running tests|^	+Test' | head -20; \
	fi; \
	rm -f $$log $$rc; exit $$status
	@$(MAKE) --no-print-directory check-alerts

# The promtool of the Prometheus module the deploy tests use (go.mod), built
# when no promtool is installed and none can be.
PROMTOOL_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/prometheus/prometheus 2>/dev/null)

check-alerts: ## promtool check and unit tests of deploy/prometheus (on CI, installs promtool or fails)
	@ci=false; case "$${CI:-}" in ""|false|0) ;; *) ci=true ;; esac; \
	if ! command -v promtool >/dev/null 2>&1 && [ "$$ci" = true ]; then \
		if [ "$$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi; \
		if [ "$$sudo" != none ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing promtool (Debian package prometheus)"; \
			$$sudo apt-get update -qq >/dev/null 2>&1; \
			$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; \
		fi; \
		if ! command -v promtool >/dev/null 2>&1; then \
			echo "building promtool from the Go module proxy into bin/ (a few minutes)"; \
			GOBIN="$(CURDIR)/bin" $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION) && PATH="$(CURDIR)/bin:$$PATH"; \
		fi; \
	fi; \
	if [ -x bin/promtool ]; then PATH="$(CURDIR)/bin:$$PATH"; fi; \
	if command -v promtool >/dev/null 2>&1; then \
		promtool check rules deploy/prometheus/alerts.yaml deploy/prometheus/rules.yaml && \
		promtool test rules deploy/prometheus/alerts_test.yaml; \
	elif [ "$$ci" = true ]; then \
		echo "*** deploy/prometheus NOT CHECKED: promtool is not installed and could not be installed or built (Debian: apt-get install prometheus); CI fails ***" >&2; \
		exit 1; \
	else \
		echo "*** deploy/prometheus NOT CHECKED: promtool is not installed (Debian: apt-get install prometheus) ***"; \
	fi

dashboard: ## Write deploy/grafana/mde-offboard.json from deploy/grafana/dashboard.go
	$(GO) run ./deploy/grafana/gen -o deploy/grafana/mde-offboard.json

bench: ## Print the benchmark figures (drain efficiency, ...); BENCH_SCALE=60 compresses time
	$(GO) test -p 1 -run '^$$' -bench . -benchtime 1x -timeout 60m ./internal/limiter/ ./internal/bench/

lint: ## golangci-lint with the checks listed in .golangci.yml
	$(GOLANGCI) run ./...

clean: ## Remove build output and demo data
	rm -rf $(BIN) data demo-data
