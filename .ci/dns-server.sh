#!/usr/bin/env bash
# Installs BIND 9 (named), the real DNS server that the tests of package
# dns/rfc2136 run against. The tests start named themselves, on a free
# loopback port with a config in a temporary directory, and stop it; this
# script only makes sure the binary is there. Idempotent; run as root:
#   bash .ci/dns-server.sh
set -euo pipefail

named_bin() { command -v named 2>/dev/null || { [ -x /usr/sbin/named ] && echo /usr/sbin/named; }; }

if ! bin=$(named_bin); then
	echo "named missing: installing Debian packages bind9 and bind9-utils"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q bind9 bind9-utils
	bin=$(named_bin)
fi
echo "named: $bin, $("$bin" -v)"
