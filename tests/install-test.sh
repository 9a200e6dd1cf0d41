#!/bin/bash
# SPDX-License-Identifier: MIT
#
# install-test.sh BUILD_DIR PREFIX LIBDIR PROGRAM.c
#
# Installs the build into a scratch DESTDIR and builds PROGRAM.c the way a
# user of the installed library would: flags from pkg-config only, the
# shared library found at run time through LD_LIBRARY_PATH.  Then links the
# static archive too, and builds it once more with CMake through
# find_package(libmemslot) (skipped when cmake is not installed).  Any
# failing step fails the test.
#
# Environment (tests/meson.build sets them from the build):
#   CC                    the build's C compiler (default cc)
#   MEMSLOT_SANITIZE      the build's b_sanitize; the library's objects then
#                         need the sanitizer runtime, so the programs are
#                         built with the same -fsanitize.  When it is
#                         unset or none, the installed library is read
#                         with nm instead (a sanitizer given in CFLAGS or
#                         c_args leaves its runtime's symbols there)
#   MEMSLOT_LIBRARY_KIND  the build's default_library: shared, static or both
set -euo pipefail

builddir=${1:?usage: install-test.sh BUILD_DIR PREFIX LIBDIR PROGRAM.c}
prefix=${2:?}
libdir=${3:?}
program=${4:?}
cc=${CC:-cc}
kind=${MEMSLOT_LIBRARY_KIND:-both}
sanitize=${MEMSLOT_SANITIZE:-none}

destdir=$(mktemp -d)
trap 'rm -rf "$destdir"' EXIT

step() { echo "--- $*"; }
fail() { echo "FAIL: $*"; exit 1; }
has_shared() { [ "$kind" != static ]; }
has_static() { [ "$kind" != shared ]; }

step "meson install into $destdir (library kind: $kind, sanitize: $sanitize)"
meson install -C "$builddir" --destdir "$destdir" --no-rebuild --quiet

root=$destdir$prefix
case $libdir in
/*) libpath=$destdir$libdir ;;
*) libpath=$root/$libdir ;;
esac

# sanitizers_of LIB...: the -fsanitize list that the instrumented objects
# of the libraries need, from the runtime entry points they reference
# (empty for a plain build).  The whole nm output is read before grep, as
# in uses_installed_so below.
sanitizers_of() {
	local syms list=()

	syms=$(nm -D "$@" 2>/dev/null; nm "$@" 2>/dev/null) || true
	grep -qw __asan_init <<<"$syms" && list+=(address)
	grep -qw __tsan_init <<<"$syms" && list+=(thread)
	grep -q '__ubsan_handle_' <<<"$syms" && list+=(undefined)
	local IFS=,
	echo "${list[*]}"
}

for f in include/memslot/memslot.h include/memslot/alloc.h \
	include/memslot/rcu.h include/memslot/nospec.h \
	include/memslot/access.h; do
	[ -f "$root/$f" ] || fail "$f not installed"
done
if has_shared; then
	[ -L "$libpath/libmemslot.so" ] || fail "no libmemslot.so link"
else
	[ ! -e "$libpath/libmemslot.so" ] || fail "libmemslot.so installed by a static-only build"
fi
if has_static; then
	[ -f "$libpath/libmemslot.a" ] || fail "no libmemslot.a"
else
	[ ! -e "$libpath/libmemslot.a" ] || fail "libmemslot.a installed by a shared-only build"
fi

# An instrumented library calls into the sanitizer runtime, which must be
# in the program (clang links it statically into executables only) and
# loaded first (gcc's libasan refuses to start otherwise).
if [ "$sanitize" = none ]; then
	libs_built=()
	has_shared && libs_built+=("$libpath/libmemslot.so")
	has_static && libs_built+=("$libpath/libmemslot.a")
	found=$(sanitizers_of "${libs_built[@]}")
	if [ -n "$found" ]; then
		echo "the library is instrumented (nm): -fsanitize=$found"
		sanitize=$found
	fi
fi
san_flags=()
if [ "$sanitize" != none ]; then
	san_flags=("-fsanitize=$sanitize")
fi

# The .pc file names the final prefix; point it at the scratch copy.
export PKG_CONFIG_PATH=$libpath/pkgconfig
pc=(pkg-config --define-variable=prefix="$root")
step "pkg-config: $("${pc[@]}" --modversion libmemslot)"
cflags=$("${pc[@]}" --cflags libmemslot)
libs=$("${pc[@]}" --libs libmemslot)
echo "cflags: $cflags"
echo "libs:   $libs"

# uses_installed_so PROGRAM: the program loads the installed library.  ldd's
# whole output is read first: grep -q would stop reading early and, under
# pipefail, ldd's SIGPIPE would fail the check at random.
uses_installed_so() {
	local deps

	deps=$(LD_LIBRARY_PATH=$libpath ldd "$1")
	grep -qF "$libpath/libmemslot.so.0" <<<"$deps"
}

if has_shared; then
	step "build $(basename "$program") against the shared library"
	# shellcheck disable=SC2086
	$cc -std=c11 -Wall -Wextra -Werror "${san_flags[@]}" $cflags "$program" \
		$libs -o "$destdir/prog"
	uses_installed_so "$destdir/prog" ||
		fail "the program does not use the installed libmemslot.so.0"

	step "run it"
	LD_LIBRARY_PATH=$libpath "$destdir/prog" >"$destdir/out.shared"
	echo "ok ($(wc -l <"$destdir/out.shared") lines of output)"
fi

if has_static; then
	step "build and run it against the static archive"
	# Static linking must pull in what the archive needs (from
	# Requires.private, or Requires when there is no shared library).
	static_libs=$("${pc[@]}" --static --libs libmemslot)
	grep -qw -- -lurcu-memb <<<"$static_libs" ||
		fail "pkg-config --static --libs lacks liburcu-memb: $static_libs"
	priv_libs=$(pkg-config --libs liburcu-memb)
	# shellcheck disable=SC2086
	$cc -std=c11 -Wall -Wextra -Werror "${san_flags[@]}" $cflags "$program" \
		"$libpath/libmemslot.a" $priv_libs -pthread -o "$destdir/prog-static"
	if ldd "$destdir/prog-static" | grep libmemslot; then
		fail "the static build still loads libmemslot.so"
	fi
	"$destdir/prog-static" >"$destdir/out.static"
	if has_shared; then
		cmp -s "$destdir/out.shared" "$destdir/out.static" ||
			fail "static and shared builds print different output"
	fi
fi

# cmake_consumer: a CMake project that finds the installed package and
# builds PROGRAM.c against libmemslot::memslot (and the static target).
cmake_consumer() {
	local src=$destdir/cmake-src bld=$destdir/cmake-build

	mkdir -p "$src"
	cp "$program" "$src/prog.c"
	cat >"$src/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.13)
project(memslot_consumer C)
set(CMAKE_C_STANDARD 11)
# A newer major version than the one installed must be refused.
find_package(libmemslot 99 QUIET)
if(libmemslot_FOUND)
  message(FATAL_ERROR "find_package(libmemslot 99) accepted version ${libmemslot_VERSION}")
endif()
find_package(libmemslot 0.1 REQUIRED)
message(STATUS "libmemslot ${libmemslot_VERSION} from ${libmemslot_DIR}")
add_executable(prog prog.c)
target_link_libraries(prog PRIVATE libmemslot::memslot)
if(TARGET libmemslot::memslot_static)
  add_executable(prog-static prog.c)
  target_link_libraries(prog-static PRIVATE libmemslot::memslot_static)
endif()
CMAKE
	# CC may start with a launcher such as ccache; CMake wants the compiler.
	cmake -S "$src" -B "$bld" -G Ninja -DCMAKE_PREFIX_PATH="$root" \
		-DCMAKE_C_COMPILER="${cc##* }" \
		-DCMAKE_C_FLAGS="-Wall -Wextra -Werror ${san_flags[*]}" \
		-DCMAKE_EXE_LINKER_FLAGS="${san_flags[*]}" >"$destdir/cmake.log" ||
		{ cat "$destdir/cmake.log"; fail "cmake could not configure the consumer"; }
	grep 'libmemslot' "$destdir/cmake.log"
	grep -qF "$libpath/cmake/libmemslot" "$destdir/cmake.log" ||
		fail "find_package did not use the installed package"
	cmake --build "$bld" >"$destdir/cmake-build.log" ||
		{ cat "$destdir/cmake-build.log"; fail "the CMake consumer does not build"; }

	if has_shared; then
		uses_installed_so "$bld/prog" ||
			fail "the CMake-built program does not use the installed libmemslot.so.0"
	fi
	LD_LIBRARY_PATH=$libpath "$bld/prog" >"$destdir/out.cmake"
	if has_static; then
		[ -x "$bld/prog-static" ] || fail "no libmemslot::memslot_static target"
		"$bld/prog-static" >"$destdir/out.cmake-static"
		cmp -s "$destdir/out.cmake" "$destdir/out.cmake-static" ||
			fail "CMake static and shared builds print different output"
	fi
	for out in "$destdir"/out.shared "$destdir"/out.static; do
		[ ! -f "$out" ] || cmp -s "$out" "$destdir/out.cmake" ||
			fail "the CMake build prints other output than the pkg-config one"
	done
	echo "ok"
}

if command -v cmake >/dev/null; then
	step "build it with CMake: find_package(libmemslot), libmemslot::memslot"
	[ -f "$libpath/cmake/libmemslot/libmemslotConfig.cmake" ] ||
		fail "no libmemslotConfig.cmake installed"
	[ -f "$libpath/cmake/libmemslot/libmemslotConfigVersion.cmake" ] ||
		fail "no libmemslotConfigVersion.cmake installed"
	cmake_consumer
	cmake_note="CMake package"
else
	echo "--- SKIP the CMake consumer: cmake is not installed"
	cmake_note="(CMake not checked)"
fi
echo "PASS: installed headers, pkg-config file, $cmake_note and library ($kind) work"
