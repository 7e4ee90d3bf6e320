# Gateway at scale, separate processes (integration/cmd/gwbench): the
# gateway built from BASE (a commit) and from HEAD (the working tree, or a
# commit) run the same scenarios in one run on one machine, each against
# its own nats-server, producer and client-load process; the tables give
# each figure for both and the ratio HEAD/BASE (BENCHMARKS.md).
BASE ?= 2831485
HEAD ?=
STORM_FLAGS ?=

.PHONY: bench-storm
bench-storm: ## gateway as separate processes, BASE=<commit> (default 2831485) against the working tree (or HEAD=<commit>): reconnect storm, 10k connects, idle RSS, saturation, fan-out; STORM_FLAGS=-quick runs in under 2 minutes
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/gwbench ./integration/cmd/gwbench
	set -o pipefail; $(BIN)/gwbench -base $(BASE) $(if $(HEAD),-head $(HEAD)) $(STORM_FLAGS) | tee $(BIN)/bench-storm.md
