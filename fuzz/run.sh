#!/bin/sh
# SPDX-License-Identifier: MIT
# fuzz/run.sh SECONDS [BUILD_DIR]: build the harness with meson through
# fuzz/build.sh (BUILD_DIR is set up on first use; later runs rebuild what
# changed), replay the seed corpus (every input once), then fuzz for at
# most SECONDS on one worker with a 2 GiB RSS cap.  New inputs
# go to BUILD_DIR/corpus (the seeds in fuzz/corpus are only read), crashes
# to BUILD_DIR/crash-*.  Extra libFuzzer flags may be given in FUZZ_ARGS.
set -eu

secs=${1:?usage: fuzz/run.sh SECONDS [BUILD_DIR]}
out=${2:-/tmp/memslot-fuzz}
here=$(cd "$(dirname "$0")" && pwd)
bin=$("$here/build.sh" "$out")
mkdir -p "$out/corpus"
echo "replaying $(ls "$here/corpus" | wc -l) seed inputs"
"$bin" -rss_limit_mb=2048 "$here"/corpus/*
echo "fuzzing for up to $secs s"
# shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
exec "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 \
	-print_final_stats=1 -artifact_prefix="$out/" ${FUZZ_ARGS:-} \
	"$out/corpus" "$here/corpus"
