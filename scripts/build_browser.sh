#!/usr/bin/env bash
# The headless browser the browser test drives ComfyUI's frontend with: Chromium from the npm package
# @sparticuz/chromium (the binary ships inside it) and puppeteer-core, pinned by
# tests/browser/package-lock.json, into tests/browser/node_modules (ignored). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../tests/browser"
if ! command -v npm > /dev/null; then
    echo "browser test: no npm on this machine; tests/test_host_browser.py will be skipped (CI fails it)"
    exit 0
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
echo "browser ready: $(node -p 'require("./node_modules/puppeteer-core/package.json").version') puppeteer-core, Chromium $(node -p 'require("./node_modules/@sparticuz/chromium/package.json").version')"
