#!/bin/bash
# SPDX-License-Identifier: MIT
#
# run-tests.sh: every check CI runs, on a fresh Debian 12 machine or a
# prepared one.  Installs missing packages (needs root for apt-get), then
#   gcc       gcc build, -Werror: suites unit, dirty, abi, kvm, stress,
#             notifier
#   clang     clang build, -Werror: suites unit, dirty
#   asan      clang, AddressSanitizer + UBSan: suites unit, dirty, abi,
#             stress, kvm, notifier
#   tsan      gcc, ThreadSanitizer: suites stress, notifier
#   valgrind  gcc, every unit and dirty test under valgrind
#   fuzz      libFuzzer (clang, ASan+UBSan, meson's fuzz/fuzz_ops): seed
#             corpus, then FUZZ_SECONDS (default 60) of fuzzing against the
#             reference model
#   bench     a quick benchmark smoke run, when bench/ defines benchmarks
# and ends with "run-tests: N passed, M failed, K skipped"; exits non-zero
# if any build or test failed.  Later sections run even if one fails.
#
# Environment:
#   BUILD_ROOT  where build directories go (default ./build-ci); each run
#               starts them afresh
#   SECTIONS    sections to run (default: all of the above)
#   JOBS        parallel compile and test jobs (default 2)
set -euo pipefail

cd "$(dirname "$0")/.."
SRC=$PWD
BUILD_ROOT=${BUILD_ROOT:-$SRC/build-ci}
SECTIONS=${SECTIONS:-gcc clang asan tsan valgrind fuzz bench}
JOBS=${JOBS:-2}

# shellcheck source=scripts/deps.sh
. scripts/deps.sh

passed=0
failed=0
skipped=0
problems=()
timings=()
start_all=$(date +%s)

banner() {
	printf '\n==================== %s ====================\n' "$*"
}

want() {
	[[ " $SECTIONS " == *" $1 "* ]]
}

# Sanitizer runtimes map shadow memory at fixed places; with the kernel's
# larger ASLR ranges that can fail, so run them with ASLR off where the
# machine allows it.
no_aslr=()
if setarch "$(uname -m)" -R true 2>/dev/null; then
	no_aslr=(setarch "$(uname -m)" -R)
fi
# Prefix for meson test in the current section.
test_wrap=()

# configure NAME [MESON OPTION...]: set up $BUILD_ROOT/NAME from scratch
# and compile it.  Compiler choice comes from CC/CXX in the environment.
configure() {
	local dir=$BUILD_ROOT/$1

	shift
	rm -rf "$dir"
	if meson setup "$dir" -Dtests=enabled -Dwerror=true "$@" &&
		meson compile -C "$dir" -j "$JOBS"; then
		return 0
	fi
	problems+=("build $(basename "$dir")")
	failed=$((failed + 1))
	return 1
}

# existing_suites DIR SUITE...: those of SUITE... that have tests in DIR.
existing_suites() {
	local dir=$1

	shift
	meson introspect --tests "$dir" | python3 -c '
import json, sys
have = {s.split(":")[-1] for t in json.load(sys.stdin) for s in t["suite"]}
print(" ".join(s for s in sys.argv[1:] if s in have))' "$@"
}

# count LOG: add the summary of one meson test run to the totals and set
# last_fail to the number of failures it reports.
count() {
	local log=$1 ok xfail fail xpass skip timeout

	ok=$(awk '/^Ok:/ { print $2 }' "$log")
	xfail=$(awk '/^Expected Fail:/ { print $3 }' "$log")
	fail=$(awk '/^Fail:/ { print $2 }' "$log")
	xpass=$(awk '/^Unexpected Pass:/ { print $3 }' "$log")
	skip=$(awk '/^Skipped:/ { print $2 }' "$log")
	timeout=$(awk '/^Timeout:/ { print $2 }' "$log")
	last_fail=$((${fail:-0} + ${xpass:-0} + ${timeout:-0}))
	passed=$((passed + ${ok:-0} + ${xfail:-0}))
	failed=$((failed + last_fail))
	skipped=$((skipped + ${skip:-0}))
}

# failed_tests LOG: the names of the tests a meson test log reports as
# failed, so the summary at the end says which ones.
failed_tests() {
	awk '/^ *[0-9]+\/[0-9]+ / && / (FAIL|TIMEOUT|UNEXPECTEDPASS|ERROR) / {
		print $4 }' "$1" | sort -u | tr '\n' ' '
}

# run_meson_test NAME LABEL [ENV=VALUE...] -- [MESON TEST ARG...]
# Runs meson test in $BUILD_ROOT/NAME, logging both streams (cmocka
# reports on stderr), and records the results.
run_meson_test() {
	local name=$1 label=$2 dir=$BUILD_ROOT/$1 envs=() log rc

	shift 2
	while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	log=$dir/run-tests-$(echo "$label" | tr -c 'a-z0-9\n' -).log
	set +e
	env "${envs[@]}" "${test_wrap[@]}" meson test -C "$dir" --no-rebuild \
		--print-errorlogs --num-processes "$JOBS" "$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	set -e
	count "$log"
	if [ "$rc" -ne 0 ]; then
		problems+=("$name: $label: $(failed_tests "$log")")
		# meson itself failing leaves no summary to count.
		[ "$last_fail" -gt 0 ] || failed=$((failed + 1))
	fi
}

# run_suites NAME [ENV=VALUE...] -- SUITE... [-- MESON TEST ARG...]
# Runs those of the suites that have tests in $BUILD_ROOT/NAME.
run_suites() {
	local name=$1 envs=() suites=() have s args=()

	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do suites+=("$1"); shift; done
	[ $# -gt 0 ] && shift

	have=$(existing_suites "$BUILD_ROOT/$name" "${suites[@]}")
	if [ -z "$have" ]; then
		echo "no tests yet in suites: ${suites[*]}"
		return 0
	fi
	for s in $have; do
		args+=(--suite "$s")
	done
	run_meson_test "$name" "suites $have" "${envs[@]}" -- "$@" "${args[@]}"
}

# section NAME: time a section; call section_end when done.
section_start() {
	banner "$1"
	section_t0=$(date +%s)
}

section_end() {
	timings+=("$(printf '%-9s %4ds' "$1" $(($(date +%s) - section_t0)))")
}

banner "dependencies"
ensure_packages "${TEST_PACKAGES[@]}"
mkdir -p "$BUILD_ROOT"
echo "build directories under $BUILD_ROOT"

if want gcc; then
	section_start "gcc: build, suites unit dirty abi kvm stress notifier"
	# The bench section below runs its smoke test in this build.
	if CC=gcc CXX=g++ configure gcc --buildtype=debugoptimized \
		-Dbench=true; then
		run_suites gcc -- unit dirty abi kvm stress notifier
	fi
	section_end gcc
fi

if want clang; then
	section_start "clang: build, suites unit dirty"
	if CC=clang CXX=clang++ configure clang --buildtype=debugoptimized \
		-Dbench=false; then
		run_suites clang -- unit dirty
	fi
	section_end clang
fi

if want asan; then
	section_start "clang ASan+UBSan: suites unit dirty abi stress kvm notifier"
	if CC=clang CXX=clang++ configure asan --buildtype=debug \
		-Db_sanitize=address,undefined -Dbench=false; then
		test_wrap=("${no_aslr[@]}")
		run_suites asan \
			ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
			UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
			-- unit dirty abi stress kvm notifier -- --timeout-multiplier 3
		test_wrap=()
	fi
	section_end asan
fi

if want tsan; then
	section_start "gcc TSan: suites stress notifier"
	if CC=gcc CXX=g++ configure tsan --buildtype=debugoptimized \
		-Db_sanitize=thread -Dbench=false; then
		test_wrap=("${no_aslr[@]}")
		run_suites tsan \
			"TSAN_OPTIONS=halt_on_error=1 second_deadlock_stack=1" \
			-- stress notifier -- --timeout-multiplier 5
		test_wrap=()
	fi
	section_end tsan
fi

if want valgrind; then
	section_start "valgrind (gcc): suites unit dirty"
	if CC=gcc CXX=g++ configure valgrind --buildtype=debugoptimized \
		-Dbench=false; then
		run_suites valgrind -- unit dirty -- --setup valgrind
	fi
	section_end valgrind
fi

if want fuzz; then
	section_start "fuzz: seed corpus + ${FUZZ_SECONDS:-60} s libFuzzer"
	# A meson build with -Dfuzz=enabled, made afresh like the others;
	# fuzz/run.sh then finds it built.
	rm -rf "$BUILD_ROOT/fuzz"
	if ! CC_FUZZ=clang JOBS=$JOBS sh fuzz/build.sh "$BUILD_ROOT/fuzz"; then
		failed=$((failed + 1))
		problems+=("build fuzz")
	elif sh fuzz/run.sh "${FUZZ_SECONDS:-60}" "$BUILD_ROOT/fuzz"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		problems+=("fuzz")
	fi
	section_end fuzz
fi

# ---- benchmark hook --------------------------------------------------------
# bench/meson.build registers its programs with benchmark(); here they get a
# short smoke run in the gcc build so a broken harness fails CI.  Real
# measurements are made separately (see doc/benchmarks.md).  Benchmarks that
# accept it get MEMSLOT_BENCH_QUICK=1 to keep the run short.
if want bench && [ -f "$SRC/bench/meson.build" ] && [ -d "$BUILD_ROOT/gcc" ]; then
	section_start "bench: quick smoke run (gcc build)"
	# The vm-memory peer is optional: install its packages if possible and
	# reconfigure, so meson builds it if they are there now.
	if ensure_packages "${BENCH_PACKAGES[@]}" &&
		meson setup --reconfigure "$BUILD_ROOT/gcc" >/dev/null &&
		! meson compile -C "$BUILD_ROOT/gcc" -j "$JOBS"; then
		problems+=("gcc: build with the vm-memory peer")
		failed=$((failed + 1))
	fi
	run_suites gcc -- bench
	if [ -n "$(meson introspect --benchmarks "$BUILD_ROOT/gcc" | python3 -c 'import json,sys; print("y" if json.load(sys.stdin) else "")')" ]; then
		run_meson_test gcc benchmarks MEMSLOT_BENCH_QUICK=1 -- --benchmark
	else
		echo "bench/ defines no benchmarks in this build"
	fi
	section_end bench
fi

banner "summary"
for t in "${timings[@]}"; do
	echo "  $t"
done
for p in "${problems[@]}"; do
	echo "  FAILED: $p"
done
echo "total elapsed: $(($(date +%s) - start_all))s"
echo "run-tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
