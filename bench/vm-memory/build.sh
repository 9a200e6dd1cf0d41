#!/bin/sh
# SPDX-License-Identifier: MIT
#
# build.sh: build the vm-memory benchmark peer offline from Debian's
# packaged crates.  bench/meson.build calls it; by hand:
#
#   build.sh check REGISTRY
#       exit 0 and print the vm-memory version if REGISTRY (Debian:
#       /usr/share/cargo/registry) holds a vm-memory 0.10 crate
#   build.sh build CARGO REGISTRY WORKDIR OUTPUT
#       copy this crate to WORKDIR/crate, point crates.io at REGISTRY
#       there, run CARGO build --offline --release with its target
#       directory WORKDIR/target, and copy the static library to OUTPUT
#
# The copy keeps Cargo.lock and the target directory out of the source
# tree.
set -eu

here=$(cd "$(dirname "$0")" && pwd)

check() {
	for d in "$1"/vm-memory-0.10.*; do
		if [ -f "$d/Cargo.toml" ]; then
			echo "${d##*/vm-memory-}"
			return 0
		fi
	done
	return 1
}

build() {
	cargo=$1 registry=$2 work=$3 out=$4

	mkdir -p "$work/crate/src" "$work/crate/.cargo"
	cp "$here/Cargo.toml" "$work/crate/"
	cp "$here/src/lib.rs" "$work/crate/src/"
	sed "s|/usr/share/cargo/registry|$registry|" \
		"$here/.cargo/config.toml" >"$work/crate/.cargo/config.toml"
	# Cargo reads .cargo/config.toml from the directory it runs in.
	(cd "$work/crate" && "$cargo" build --offline --release --quiet \
		--target-dir "$work/target")
	cp "$work/target/release/libmemslot_bench_vmm.a" "$out"
}

case "${1-}" in
check) shift; check "$@" ;;
build) shift; build "$@" ;;
*) echo "usage: $0 check REGISTRY | build CARGO REGISTRY WORKDIR OUTPUT" >&2
   exit 2 ;;
esac
