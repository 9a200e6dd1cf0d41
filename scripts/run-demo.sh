#!/bin/bash
# SPDX-License-Identifier: MIT
#
# run-demo.sh: install what is missing (needs root for apt-get), build
# libmemslot in release mode and run examples/demo, which lays out a small
# PC-like guest's memory and walks through lookups and slot changes.  Then,
# where /dev/kvm is usable, run examples/kvm_vmm, a real VMM whose guest
# memory is 509 libmemslot slots mirrored to KVM; elsewhere say it was
# skipped.
#
# Environment: BUILD_DIR (default ./build-demo).
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-$PWD/build-demo}

# shellcheck source=scripts/deps.sh
. scripts/deps.sh
ensure_packages "${DEMO_PACKAGES[@]}"

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
	meson setup "$BUILD_DIR" --buildtype=release \
		-Dtests=disabled -Dbench=false -Dexamples=true
fi
# kvm_vmm exists only on x86-64 hosts with the kernel's KVM header.
targets=(examples/demo)
if meson introspect "$BUILD_DIR" --targets | grep -q '"name": "kvm_vmm"'; then
	targets+=(examples/kvm_vmm)
fi
meson compile -C "$BUILD_DIR" -j 2 "${targets[@]}"

echo
echo "==== $BUILD_DIR/examples/demo ===="
"$BUILD_DIR/examples/demo"

echo
echo "==== $BUILD_DIR/examples/kvm_vmm ===="
if [ ${#targets[@]} -eq 1 ]; then
	echo "kvm_vmm skipped: it needs an x86-64 host and linux/kvm.h"
	exit 0
fi
# Exit status 77 is the VMM's own "no usable /dev/kvm" (it says why).
rc=0
"$BUILD_DIR/examples/kvm_vmm" || rc=$?
if [ $rc -eq 77 ]; then
	echo "kvm_vmm skipped: /dev/kvm is not usable on this machine"
	rc=0
fi
exit $rc
