# Gateway targets (services/gateway).

.PHONY: test-gateway
test-gateway: ## go test -race the gateway packages
	CGO_ENABLED=1 $(GO) test -race -count=1 ./services/gateway/ ./services/gateway/auth ./services/gateway/hub ./services/gateway/replay

.PHONY: bench-gateway
bench-gateway: ## gateway benchmarks: latency vs plain NATS, 1000-socket fan-out, idle memory at 10k sockets
	$(GO) test -run '^$$' -bench 'Latency' -benchtime 500x ./services/gateway/
	$(GO) test -run '^$$' -bench 'Fanout' -benchtime 50x ./services/gateway/
	$(GO) test -run '^$$' -bench 'IdleMemory' -benchtime 1x ./services/gateway/
