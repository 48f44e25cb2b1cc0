# Shared by the bench/*.sh scripts: source it first, as
#   . "$(dirname "$0")/lib.sh"
# It sets the shell options, changes to the repository's root and sets
# size_mib from SIZE_MIB (default 2048).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${SIZE_MIB:-2048}

# calc EXPR [DECIMALS]: floating-point arithmetic without bc.
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

# machine_info [EXTRA TOOLS LINE]: the machine, tools, date and load, for the
# figures in docs/benchmarks.md.
machine_info() {
	echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "tools:   $(go version | cut -d' ' -f3-)${1:+, $1}"
	echo "date:    $(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# need_qemu_img: exits with an install hint when qemu-img is missing.
need_qemu_img() {
	if ! command -v qemu-img >/dev/null 2>&1; then
		echo "$0 needs qemu-img: apt-get install -y qemu-utils" >&2
		exit 1
	fi
}

# make_workdir [PREFIX]: sets work to a new scratch directory, removed on exit.
make_workdir() {
	work=$(mktemp -d "${TMPDIR:-/tmp}/${1:-draas-bench}.XXXXXX")
	trap 'rm -rf "$work"' EXIT
}

# build_tools DIR...: builds each Go command DIR into $work under its base name.
build_tools() {
	local dir
	for dir in "$@"; do
		go build -o "$work/$(basename "$dir")" "./$dir"
	done
}

# make_image OUT [MKIMAGE FLAGS...]: a raw image of $size_mib MiB whose 512 KiB
# blocks are half random data and half written zeros (bench/mkimage, which
# build_tools must have built).
make_image() {
	local out=$1
	shift
	"$work/mkimage" -size-mib "$size_mib" -block-kib 512 -data-percent 50 "$@" -o "$out"
}

# timeit NAME OUT CMD...: runs CMD $runs times after removing OUT and prints
# the median wall time in seconds (all the runs' times go to stderr). The
# script defines after_run OUT, run inside the timing right after CMD, and
# check NAME OUT RUN, run outside it.
timeit() {
	local name=$1 out=$2
	shift 2
	local times=() i start end sorted
	for i in $(seq "$runs"); do
		rm -f "$out" "$out.draas-partial"
		sync
		start=$(date +%s.%N)
		"$@" >/dev/null
		after_run "$out"
		end=$(date +%s.%N)
		check "$name" "$out" "$i"
		times+=("$(calc "$end - $start" 3)")
	done
	sorted=$(printf '%s\n' "${times[@]}" | sort -g)
	echo "$name: runs $(echo "$sorted" | tr '\n' ' ')" >&2
	echo "$sorted" | sed -n "$(((runs + 1) / 2))p"
}

# start_drbench: the knobs of bench/cmd/drbench (CHANGE_PERCENT, default 1;
# ROUNDS, default 3; CONCURRENCY, default 8), a work directory, the machine,
# and bench/mkimage and drbench built into it.
start_drbench() {
	change=${CHANGE_PERCENT:-1}
	rounds=${ROUNDS:-3}
	concurrency=${CONCURRENCY:-8}
	make_workdir
	machine_info
	build_tools bench/mkimage bench/cmd/drbench
}

# start_qemu_bench [PREFIX]: runs from RUNS (default 3), qemu-img present, a
# work directory (make_workdir PREFIX), and the machine with qemu-img's
# version.
start_qemu_bench() {
	runs=${RUNS:-3}
	need_qemu_img
	make_workdir "$@"
	machine_info "$(qemu-img --version | head -n 1)"
}

# make_bench_image: img, make_image's image in $work, timed.
make_bench_image() {
	local t0
	img=$work/img.raw
	t0=$(date +%s.%N)
	make_image "$img"
	echo "image:   $size_mib MiB, half random / half zero 512 KiB blocks, made in $(calc "$(date +%s.%N) - $t0") s"
}
