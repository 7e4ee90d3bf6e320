# ComfyUI custom node (comfyui/): Python unit tests against a real producer.
PYTHON3 ?= /usr/bin/python3

.PHONY: test-comfyui
test-comfyui: ## run the ComfyUI node's unit tests against a real producer
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/producer ./services/producer/cmd/producer
	PYTHONDONTWRITEBYTECODE=1 FRAMECAST_PRODUCER_BIN=$(CURDIR)/$(BIN)/producer $(PYTHON3) -m unittest discover -s comfyui/tests -v
