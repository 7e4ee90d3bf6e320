.PHONY: test-browser
test-browser: ## run the headless Chromium tests of framecast.js and the viewer (make deps installs chromium)
	CGO_ENABLED=1 $(GO) test -race -count=1 ./services/gateway/web/... ./integration/browser/...

.PHONY: gallery-screenshot
gallery-screenshot: ## run the gallery's browser test and save its screenshot to docs/gallery.png
	CGO_ENABLED=1 FRAMECAST_GALLERY_SCREENSHOT=$(CURDIR)/docs/gallery.png $(GO) test -count=1 -run 'TestGallery$$' ./integration/browser/
