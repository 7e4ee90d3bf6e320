# The framecast command (services/framecast): the one-command development
# stack and the publish/tail client (docs/cli.md).

FRAMECAST_RUN_FLAGS ?=

.PHONY: run
run: ## start NATS, producer API and gateway with the live viewer on :8080 (flags: FRAMECAST_RUN_FLAGS)
	$(ENCODER_RUN) ./services/framecast/cmd/framecast run $(FRAMECAST_RUN_FLAGS)

.PHONY: cli
cli: ## build bin/framecast (run, publish, tail)
	@mkdir -p $(BIN)
	$(ENCODER_BUILD) -o $(BIN)/framecast ./services/framecast/cmd/framecast
