# The producer service (services/producer): ingest HTTP API and the Go
# publish library (docs/producer.md).

.PHONY: producer
producer: ## run the producer on :8081 with an embedded NATS server
	$(ENCODER_RUN) ./services/producer/cmd/producer --embedded-nats

.PHONY: test-producer
test-producer: ## go test -race the producer and its publish library
	CGO_ENABLED=1 $(GO) test -race -count=1 ./services/producer/...

.PHONY: fuzz-producer
fuzz-producer: ## fuzz the producer's request parsing for FUZZTIME
	cd services/producer && $(GO) test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME) .
