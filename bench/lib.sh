# Shared by the bench/*.sh scripts: source it after cd to the repository.

# calc EXPR [DECIMALS]: floating-point arithmetic without bc.
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

# machine_info [EXTRA TOOLS LINE]: the machine, tools, date and load, for the
# figures in docs/benchmarks.md.
machine_info() {
	echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "tools:   $(go version | cut -d' ' -f3-)${1:+, $1}"
	echo "date:    $(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
}
