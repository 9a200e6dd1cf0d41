# SPDX-License-Identifier: MIT
# Sourced by run-demo.sh and run-tests.sh: install missing Debian packages.

# ensure_packages PACKAGE... : apt-get install the ones not installed yet.
# Runs apt-get only when something is missing, so a prepared machine (or a
# second run) does not touch the network.
ensure_packages() {
	local missing=() p

	if ! command -v dpkg-query >/dev/null; then
		echo "deps: not a Debian system; make sure these are installed: $*"
		return 0
	fi
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		echo "deps: all $# packages already installed"
		return 0
	fi
	echo "deps: installing ${missing[*]}"
	local as_root=()
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null; then
			echo "deps: apt-get needs root: run this script as root" >&2
			return 1
		fi
		as_root=(sudo)
	fi
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Enough to build the library and the demo.
DEMO_PACKAGES=(meson ninja-build pkg-config gcc libc6-dev liburcu-dev)

# Everything scripts/run-tests.sh uses: both compilers and their sanitizer
# runtimes, cmocka, Google Benchmark, valgrind, nm, cmake (the install test
# builds a find_package consumer), doxygen (the API reference).
TEST_PACKAGES=("${DEMO_PACKAGES[@]}" g++ clang libclang-rt-14-dev
	libcmocka-dev libbenchmark-dev valgrind python3 binutils
	libc6-dev-arm64-cross llvm-14 cmake doxygen)

# Optional: what the vm-memory peer of the benchmarks (bench/vm-memory)
# needs, Debian's packaged vm-memory crate, and Debian's cargo where no
# cargo is installed.  Nothing else needs them: without them meson skips
# that peer.
BENCH_PACKAGES=(librust-vm-memory-dev)
if ! command -v cargo >/dev/null && [ ! -x "${HOME-}/.cargo/bin/cargo" ]; then
	BENCH_PACKAGES+=(cargo)
fi
