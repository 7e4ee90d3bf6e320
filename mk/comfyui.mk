# ComfyUI custom node (comfyui/): Python unit tests against a real producer.
PYTHON3 ?= /usr/bin/python3

.PHONY: test-comfyui
test-comfyui: ## run the ComfyUI node's unit tests against a real producer
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/producer ./services/producer/cmd/producer
	PYTHONDONTWRITEBYTECODE=1 FRAMECAST_PRODUCER_BIN=$(CURDIR)/$(BIN)/producer $(PYTHON3) -m unittest discover -s comfyui/tests -v

.PHONY: bench-comfyui
bench-comfyui: ## time the ComfyUI node on a 1024x1024 batch against one real producer: the seed's code path, PIL in the node, raw upload, FRAMECAST_ASYNC; bytes sent per image (BENCHMARKS.md)
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/producer ./services/producer/cmd/producer
	FRAMECAST_BENCH_IMAGE=$(CURDIR)/$(BIN)/bench.rgb $(GO) test -count=1 -run '^TestWriteBenchImage$$' ./shared/encode/
	$(PYTHON3) bench/node_publish.py --producer $(CURDIR)/$(BIN)/producer $(CURDIR)/$(BIN)/bench.rgb
