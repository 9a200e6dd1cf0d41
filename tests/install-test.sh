#!/bin/bash
# SPDX-License-Identifier: MIT
#
# install-test.sh BUILD_DIR PREFIX LIBDIR PROGRAM.c
#
# Installs the build into a scratch DESTDIR and builds PROGRAM.c the way a
# user of the installed library would: flags from pkg-config only, the
# shared library found at run time through LD_LIBRARY_PATH.  Then links the
# static archive too.  Any failing step fails the test.
set -euo pipefail

builddir=${1:?usage: install-test.sh BUILD_DIR PREFIX LIBDIR PROGRAM.c}
prefix=${2:?}
libdir=${3:?}
program=${4:?}
cc=${CC:-cc}

destdir=$(mktemp -d)
trap 'rm -rf "$destdir"' EXIT

step() { echo "--- $*"; }

step "meson install into $destdir"
meson install -C "$builddir" --destdir "$destdir" --no-rebuild --quiet

root=$destdir$prefix
case $libdir in
/*) libpath=$destdir$libdir ;;
*) libpath=$root/$libdir ;;
esac

for f in include/memslot/memslot.h include/memslot/alloc.h \
	include/memslot/rcu.h include/memslot/nospec.h \
	include/memslot/access.h; do
	[ -f "$root/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
[ -L "$libpath/libmemslot.so" ] || { echo "FAIL: no libmemslot.so link"; exit 1; }
[ -f "$libpath/libmemslot.a" ] || { echo "FAIL: no libmemslot.a"; exit 1; }

# The .pc file names the final prefix; point it at the scratch copy.
export PKG_CONFIG_PATH=$libpath/pkgconfig
pc=(pkg-config --define-variable=prefix="$root")
step "pkg-config: $("${pc[@]}" --modversion libmemslot)"
cflags=$("${pc[@]}" --cflags libmemslot)
libs=$("${pc[@]}" --libs libmemslot)
echo "cflags: $cflags"
echo "libs:   $libs"

step "build $(basename "$program") against the shared library"
# shellcheck disable=SC2086
$cc -std=c11 -Wall -Wextra -Werror $cflags "$program" $libs -o "$destdir/prog"
LD_LIBRARY_PATH=$libpath ldd "$destdir/prog" | grep -q "$libpath/libmemslot.so.0" ||
	{ echo "FAIL: the program does not use the installed libmemslot.so.0"; exit 1; }

step "run it"
LD_LIBRARY_PATH=$libpath "$destdir/prog" >"$destdir/out.shared"
echo "ok ($(wc -l <"$destdir/out.shared") lines of output)"

step "build and run it against the static archive"
# Requires.private must name what the archive needs.
"${pc[@]}" --print-requires-private libmemslot | grep -q liburcu-memb ||
	{ echo "FAIL: Requires.private lacks liburcu-memb"; exit 1; }
priv_libs=$(pkg-config --libs liburcu-memb)
# shellcheck disable=SC2086
$cc -std=c11 -Wall -Wextra -Werror $cflags "$program" "$libpath/libmemslot.a" \
	$priv_libs -pthread -o "$destdir/prog-static"
if ldd "$destdir/prog-static" | grep -q libmemslot; then
	echo "FAIL: the static build still loads libmemslot.so"
	exit 1
fi
"$destdir/prog-static" >"$destdir/out.static"
cmp -s "$destdir/out.shared" "$destdir/out.static" ||
	{ echo "FAIL: static and shared builds print different output"; exit 1; }
echo "PASS: installed headers, pkg-config file, shared and static library work"
