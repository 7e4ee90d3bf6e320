# What the tests need besides Go: gcc and libc6-dev for -race,
# libturbojpeg0-dev and libwebp-dev for the accelerated encoders, /usr/bin/python3
# with numpy and PIL, and /usr/bin/chromium (tools/deps.sh). The test targets
# run deps first, so `make test` sets up a fresh Debian machine by itself.

.PHONY: deps
deps: ## install the Debian packages the tests need (as root; otherwise name them and stop); FRAMECAST_SKIP_BROWSER=1 leaves out chromium
	@tools/deps.sh

test-go test-comfyui test-browser test-integration: deps
