# Container images and the docker-compose stack (docs/deploy.md).
#
# Every image is FROM scratch around one static binary built here on the
# host, so building an image never pulls from a registry.

DOCKER ?= docker
COMPOSE_PROJECT ?= framecast
COMPOSE ?= $(shell if docker compose version >/dev/null 2>&1; then echo 'docker compose'; else echo docker-compose; fi) -p $(COMPOSE_PROJECT)
IMAGE_TAG ?= dev
IMAGES_DIR := $(BIN)/images
# The NATS server is the version the services are built and tested against.
NATS_VERSION = $(shell cd shared && GOWORK=off $(GO) list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
CADDY_VERSION ?= v2.11.9
IMAGE_NAMES := gateway producer framecast nats caddy
# nodynamic keeps the WEBP encoder on wazero instead of dlopen'ing a system
# libwebp: without it the binary is dynamically linked and cannot run in a
# scratch image. The producer is built with ENCODER_BUILD (mk/encode.mk):
# the accelerated encoders, statically linked, where their archives are
# installed.
SERVICE_BUILD := CGO_ENABLED=0 $(GO) build -trimpath -tags nodynamic -ldflags='-s -w'

# Each image's build context is its own directory holding the binary and
# an empty data/ (copied in as the non-root user's writable /data).
$(IMAGES_DIR)/%/data:
	@mkdir -p $@

.PHONY: image-bins
image-bins: $(addsuffix /data,$(addprefix $(IMAGES_DIR)/,$(IMAGE_NAMES))) ## build the static binaries the images hold
	$(SERVICE_BUILD) -o $(IMAGES_DIR)/gateway/gateway ./services/gateway/cmd/gateway
	$(SERVICE_BUILD) -o $(IMAGES_DIR)/framecast/framecast ./services/framecast/cmd/framecast
	$(ENCODER_BUILD) -o $(IMAGES_DIR)/producer/producer ./services/producer/cmd/producer
	@if readelf -d $(IMAGES_DIR)/producer/producer | grep -q NEEDED; then \
	  echo "$(IMAGES_DIR)/producer/producer needs shared libraries; a scratch image cannot run it"; exit 1; fi
	@if [ ! -x $(IMAGES_DIR)/nats/nats-server ] || [ "$$(cat $(IMAGES_DIR)/nats/version 2>/dev/null)" != "$(NATS_VERSION)" ]; then \
	  echo "building nats-server $(NATS_VERSION)"; \
	  GOWORK=off GOBIN=$(CURDIR)/$(IMAGES_DIR)/nats CGO_ENABLED=0 $(GO) install -trimpath -ldflags='-s -w' github.com/nats-io/nats-server/v2@$(NATS_VERSION) && \
	  echo "$(NATS_VERSION)" > $(IMAGES_DIR)/nats/version; fi
	@if [ ! -x $(IMAGES_DIR)/caddy/caddy ] || [ "$$(cat $(IMAGES_DIR)/caddy/version 2>/dev/null)" != "$(CADDY_VERSION)" ]; then \
	  echo "building caddy $(CADDY_VERSION)"; \
	  GOWORK=off GOBIN=$(CURDIR)/$(IMAGES_DIR)/caddy CGO_ENABLED=0 $(GO) install -trimpath -ldflags='-s -w' github.com/caddyserver/caddy/v2/cmd/caddy@$(CADDY_VERSION) && \
	  echo "$(CADDY_VERSION)" > $(IMAGES_DIR)/caddy/version; fi

.PHONY: images
images: image-bins ## build the scratch images framecast/{gateway,producer,framecast,nats,caddy}:dev
	@set -e; for n in $(IMAGE_NAMES); do \
	  echo "== framecast/$$n:$(IMAGE_TAG)"; \
	  DOCKER_BUILDKIT=0 $(DOCKER) build -q -f deploy/docker/$$n.Dockerfile -t framecast/$$n:$(IMAGE_TAG) $(IMAGES_DIR)/$$n; \
	done

.PHONY: compose-up
compose-up: ## start the compose stack (3 NATS; 2 gateways, viewer and producer API behind Caddy on :8080; producer also on :8081)
	$(COMPOSE) up -d

.PHONY: compose-down
compose-down: ## stop the compose stack and remove its volumes
	$(COMPOSE) down -v --remove-orphans

.PHONY: compose-smoke
compose-smoke: ## end-to-end smoke of the compose stack (installs and starts Docker if needed)
	bash deploy/smoke/compose-smoke.sh

# Compose v2 is a Go module too; its go.mod has exclude directives, so it
# is built from a copy of the module's source, not with go install.
COMPOSE_V2_VERSION ?= v2.40.3
COMPOSE_PLUGIN_DIR ?= $(HOME)/.docker/cli-plugins

.PHONY: compose-v2-plugin
compose-v2-plugin: ## build compose $(COMPOSE_V2_VERSION) from its Go module into $(COMPOSE_PLUGIN_DIR) ('docker compose'; the smoke test then uses it)
	@set -e; src=$$(GOWORK=off GOFLAGS= $(GO) mod download -json github.com/docker/compose/v2@$(COMPOSE_V2_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cp -r "$$src/." "$$tmp"; chmod -R u+w "$$tmp"; mkdir -p $(COMPOSE_PLUGIN_DIR); \
	cd "$$tmp" && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 $(GO) build -trimpath \
	  -ldflags='-s -w -X github.com/docker/compose/v2/internal.Version=$(COMPOSE_V2_VERSION)' -o $(COMPOSE_PLUGIN_DIR)/docker-compose ./cmd; \
	echo "installed $(COMPOSE_PLUGIN_DIR)/docker-compose: $$(docker compose version --short)"; \
	echo "remove it to go back to docker-compose 1.29"
