# Encoders of the producer and the framecast command (docs/producer.md,
# "Encoders"). ENCODERS=turbo builds them with -tags turbo: JPEG through
# libjpeg-turbo and lossy WEBP through libwebp, by cgo, with both archives
# and glibc linked statically (netgo and osusergo keep glibc's resolver and
# user lookups out), so the binaries still run in the scratch images.
# ENCODERS=go builds the pure-Go encoders with CGO_ENABLED=0. The default,
# auto, is turbo when gcc finds the static archives of Debian's
# libturbojpeg0-dev and libwebp-dev (make deps installs them), else go.
ENCODERS ?= auto
ifeq ($(ENCODERS),auto)
override ENCODERS := $(if $(and $(filter /%,$(shell gcc -print-file-name=libturbojpeg.a 2>/dev/null)),$(filter /%,$(shell gcc -print-file-name=libwebp.a 2>/dev/null))),turbo,go)
endif
ifeq ($(ENCODERS),turbo)
ENCODER_ENV := CGO_ENABLED=1
ENCODER_TAGS := nodynamic,turbo
ENCODER_STATIC := -tags nodynamic,turbo,netgo,osusergo -ldflags='-s -w -extldflags=-static'
else ifeq ($(ENCODERS),go)
ENCODER_ENV := CGO_ENABLED=0
ENCODER_TAGS := nodynamic
ENCODER_STATIC := -tags nodynamic -ldflags='-s -w'
else
$(error ENCODERS=$(ENCODERS) is not known; allowed: auto, turbo, go)
endif
# A static binary of the producer or the framecast command: append -o and
# the package.
ENCODER_BUILD := $(ENCODER_ENV) $(GO) build -trimpath $(ENCODER_STATIC)
# go run with the chosen encoders (make run, make producer).
ENCODER_RUN := $(ENCODER_ENV) $(GO) run -tags $(ENCODER_TAGS)

.PHONY: encoders
encoders: ## say which encoders make build, run and images use (ENCODERS=auto|turbo|go)
	@echo "ENCODERS=$(ENCODERS)"

.PHONY: test-encoders
test-encoders: ## go vet and go test -race the encoders and the producer built with -tags turbo (libjpeg-turbo, libwebp; make deps installs them)
	CGO_ENABLED=1 $(GO) vet -tags nodynamic,turbo ./shared/encode/
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags nodynamic,turbo ./shared/encode/ ./services/producer/...

test-encoders: deps
