#!/usr/bin/env bash
# Installs Chromium, the headless browser that package report's tests render
# the HTML reports in (report/browser_test.go): they check the DOM Chromium
# builds and take a screenshot. The tests start chromium themselves with a
# temporary profile; this script only makes sure the binary is there.
# Idempotent; run as root:
#   bash .ci/browser.sh
set -euo pipefail

chromium_bin() { command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null; }

if ! bin=$(chromium_bin); then
	echo "chromium missing: installing Debian package chromium"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q chromium
	bin=$(chromium_bin)
fi
echo "chromium: $bin, $("$bin" --version 2>/dev/null || echo '(version unknown)')"
