.PHONY: test-browser
test-browser: ## run the headless Chromium tests of framecast.js and the viewer (needs: apt-get install chromium)
	@test -x "$${FRAMECAST_CHROMIUM:-/usr/bin/chromium}" || { echo "no Chromium: apt-get install chromium (or set FRAMECAST_CHROMIUM)"; exit 1; }
	CGO_ENABLED=1 $(GO) test -race -count=1 ./services/gateway/web/... ./integration/browser/...
