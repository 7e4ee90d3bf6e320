# Gateway targets (services/gateway).

.PHONY: test-gateway
test-gateway: ## go test -race the gateway packages
	CGO_ENABLED=1 $(GO) test -race -count=1 ./services/gateway/ ./services/gateway/auth ./services/gateway/hub ./services/gateway/replay

.PHONY: bench-gateway
bench-gateway: ## gateway benchmarks beside baselines from the same run: latency, throughput, 1000-socket fan-out, idle memory at 10k sockets, other clients' events
	$(GO) test -count=1 -run '^$$' -bench 'Latency|Throughput' -benchtime 2000x ./services/gateway/
	$(GO) test -count=1 -run '^$$' -bench 'Fanout' -benchtime 60x ./services/gateway/
	$(GO) test -count=1 -run '^$$' -bench 'IdleMemory' -benchtime 1x ./services/gateway/
	$(GO) test -count=1 -run '^$$' -bench 'OthersEvents' -benchtime 2000x ./services/gateway/
