# End-to-end and fault suite (integration/, docs/reliability.md): real
# nats-server, producer and gateway processes built by the tests.
SOAK ?= 10m
ACCOUNTING ?= $(BIN)/accounting.md

.PHONY: test-integration
test-integration: ## run the fault and security suite with -race; accounting rows go to bin/accounting.md
	@mkdir -p $(BIN) && rm -f $(ACCOUNTING)
	CGO_ENABLED=1 FRAMECAST_ACCOUNTING=$(CURDIR)/$(ACCOUNTING) $(GO) test -race -count=1 -timeout 15m -v ./integration/...
	@echo "accounting rows ($(ACCOUNTING)):"; cat $(ACCOUNTING)

.PHONY: soak
soak: ## run the soak for SOAK (default 10m): 100 clients, 50 frames/s, gateway RSS and goroutines flat within 10% (not in CI)
	FRAMECAST_SOAK=$(SOAK) $(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./integration/

.PHONY: bench-leaf
bench-leaf: ## publish-to-websocket latency through a GPU host's leaf node against a producer on the hub, in the same run (BENCHMARKS.md)
	$(GO) test -count=1 -run '^$$' -bench LeafHop -benchtime 500x ./integration/
