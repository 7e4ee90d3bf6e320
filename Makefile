# framecast — every target is listed by `make help`.
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED ?= 0
# nodynamic: the WebP encoder (gen2brain/webp) runs libwebp under wazero and
# never dlopens a system libwebp, so binaries are static and behave the same
# everywhere.
# The producer's accelerated encoders (tag turbo) need cgo: mk/encode.mk
# sets CGO_ENABLED=1 on the commands that build them.
export GOFLAGS := -buildvcs=false -tags=nodynamic
BIN := bin
MODULES := shared services/producer services/gateway services/framecast integration
FUZZTIME ?= 30s

.DEFAULT_GOAL := help

# Each area adds its own targets in mk/<area>.mk.
-include mk/*.mk

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## build static binaries into bin/; the producer and framecast with the encoders ENCODERS picks (mk/encode.mk)
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./services/gateway/cmd/...
	$(ENCODER_BUILD) -o $(BIN)/ ./services/producer/cmd/... ./services/framecast/cmd/...

.PHONY: fmt-check
fmt-check: ## fail when gofmt would change a file
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet every module
	$(GO) vet work

.PHONY: test
test: deps fmt-check vet test-go test-encoders test-comfyui ## install what the tests need (make deps), gofmt check, go vet, go test -race over every module (pure-Go encoders), then the encoders and producer again with -tags turbo, the ComfyUI node's tests

.PHONY: test-go
test-go: ## go test -race over every module, uncached (integration builds its binaries at run time, which the test cache cannot see)
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 25m work

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (default 30s) each
	FUZZTIME=$(FUZZTIME) tools/fuzz.sh $(MODULES)

.PHONY: bench
bench: bench-encode bench-gateway bench-storm bench-leaf ## run every benchmark (figures go in BENCHMARKS.md)

.PHONY: bench-encode
bench-encode: ## encoder benchmarks for the 1024x1024 photo-like image, and PIL's figures for the same bytes; the accelerated encoders beside PIL in one loop
	@mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 20x ./shared/encode/
	CGO_ENABLED=1 $(GO) test -tags nodynamic,turbo -run '^$$' -bench 'VsPIL' -benchtime 20x ./shared/encode/
	FRAMECAST_BENCH_IMAGE=$(CURDIR)/$(BIN)/bench.rgb $(GO) test -count=1 -run '^TestWriteBenchImage$$' ./shared/encode/
	/usr/bin/python3 bench/pil_encode.py $(CURDIR)/$(BIN)/bench.rgb || echo "PIL figures skipped: /usr/bin/python3 with PIL (Debian python3-pil) is needed"
	$(GO) test -count=1 -run '^$$' -bench 'ShrinkVsPIL' -benchtime 20x ./services/producer/publish/
	$(GO) test -count=1 -run '^$$' -bench 'PublishEncodedPreviews' -benchtime 10x ./services/producer/

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)
