/* SPDX-License-Identifier: MIT */
/*
 * Tests of <memslot/nospec.h>: memslot_index_mask_nospec() and
 * memslot_array_index_nospec() against the plain "index < size ? index : 0".
 *
 * Both code paths run in one program: the arch path (cmp/sbb on x86-64,
 * cmp/sbc/CSDB on arm64) from this file, and the portable path from
 * nospec_generic.c, built with MEMSLOT_NOSPEC_GENERIC.  The arch path must
 * be exact for every pair.  The portable path computes the mask from the
 * sign bit of index | (size - 1 - index), so it is exact whenever
 * size <= 2^63 (which covers the header's promise, "exact up to
 * INT64_MAX"); above that it may clamp an in-range index to 0, which is
 * safe, but it must never let an out-of-range index through.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <memslot/nospec.h>

#include "common.h"
#include "nospec_generic.h"

#define BIT63 (UINT64_C(1) << 63)

struct path {
	const char *name;
	uint64_t (*mask)(uint64_t index, uint64_t size);
	uint64_t (*index)(uint64_t index, uint64_t size);
	/* Largest size for which the path must be exact. */
	uint64_t exact_size_max;
};

/* Out of line, called through pointers, so constant folding cannot stand
 * in for the instructions under test. */
static uint64_t arch_mask(uint64_t index, uint64_t size)
{
	return memslot_index_mask_nospec(index, size);
}

static uint64_t arch_index(uint64_t index, uint64_t size)
{
	return memslot_array_index_nospec(index, size);
}

static const struct path paths[] = {
	{ "arch", arch_mask, arch_index, UINT64_MAX },
	{ "generic", generic_index_mask, generic_array_index, BIT63 },
};

static uint64_t expected(uint64_t index, uint64_t size)
{
	return index < size ? index : 0;
}

/* Check one pair on one path; return false (after printing) on a wrong
 * answer, so loops can stop at the first one. */
static bool check(const struct path *p, uint64_t index, uint64_t size)
{
	uint64_t want_mask = index < size ? UINT64_MAX : 0;
	uint64_t mask = p->mask(index, size);
	uint64_t got = p->index(index, size);

	if (size <= p->exact_size_max) {
		if (mask == want_mask && got == expected(index, size))
			return true;
	} else if ((mask == want_mask || mask == 0) &&
		   got == (index & mask) && (index < size || mask == 0)) {
		/* Inexact range: clamping to 0 is allowed, leaking is not. */
		return true;
	}
	print_error("%s: index %#llx size %#llx: mask %#llx index %#llx\n",
		    p->name, (unsigned long long)index,
		    (unsigned long long)size, (unsigned long long)mask,
		    (unsigned long long)got);
	return false;
}

static void check_all_paths(uint64_t index, uint64_t size)
{
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		assert_true(check(&paths[i], index, size));
}

static const uint64_t sizes[] = {
	0, 1, 2, 3, 7, 4096, UINT32_MAX, (uint64_t)UINT32_MAX + 1,
	INT64_MAX - 1, INT64_MAX, BIT63, BIT63 + 1, UINT64_MAX - 1, UINT64_MAX,
};

/* The edge indices the issue lists, for each edge size. */
static void test_edges(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t s = sizes[i];
		const uint64_t idx[] = {
			0, s - 1, s, s + 1, UINT64_MAX, INT64_MAX, BIT63,
		};

		for (size_t j = 0; j < sizeof(idx) / sizeof(idx[0]); j++)
			check_all_paths(idx[j], s);
	}
}

/* Spot values written out, so a wrong "expected" cannot hide a bug. */
static void test_known_answers(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		const struct path *p = &paths[i];

		assert_int_equal(p->index(0, 0), 0);
		assert_int_equal(p->mask(0, 0), 0);
		assert_int_equal(p->mask(0, 1), UINT64_MAX);
		assert_int_equal(p->index(0, 1), 0);
		assert_int_equal(p->mask(1, 1), 0);
		assert_int_equal(p->index(5, 6), 5);
		assert_int_equal(p->index(6, 6), 0);
		assert_int_equal(p->index(7, 6), 0);
		assert_int_equal(p->index(UINT64_MAX, 6), 0);
		assert_int_equal(p->index(BIT63, 6), 0);
		assert_int_equal(p->index(INT64_MAX - 1, INT64_MAX),
				 INT64_MAX - 1);
		assert_int_equal(p->index(INT64_MAX, INT64_MAX), 0);
		assert_int_equal(p->index(INT64_MAX, BIT63), INT64_MAX);
		assert_int_equal(p->index(BIT63, BIT63), 0);
	}
	/* Only the arch path handles sizes above 2^63 exactly. */
	assert_int_equal(arch_index(BIT63, UINT64_MAX), BIT63);
	assert_int_equal(arch_index(UINT64_MAX - 1, UINT64_MAX),
			 UINT64_MAX - 1);
	assert_int_equal(arch_index(UINT64_MAX, UINT64_MAX), 0);
	assert_int_equal(generic_array_index(BIT63, UINT64_MAX), 0);
}

/* Every pair in [0, 256)^2, and 256-wide windows around the sign bit and
 * the top of the range, where arithmetic forms go wrong. */
static void test_exhaustive_windows(void **state)
{
	const uint64_t bases[] = { 0, INT64_MAX - 127, UINT64_MAX - 255 };

	(void)state;
	for (size_t a = 0; a < 3; a++) {
		for (size_t b = 0; b < 3; b++) {
			for (uint64_t i = 0; i < 256; i++) {
				for (uint64_t s = 0; s < 256; s++)
					check_all_paths(bases[a] + i,
							bases[b] + s);
			}
		}
	}
}

/* Random pairs of random widths, so that both small and huge values and
 * near-equal pairs are common. */
static void test_random(void **state)
{
	uint64_t seed = UINT64_C(0x9e3779b97f4a7c15);

	(void)state;
	for (int n = 0; n < 1000000; n++) {
		uint64_t size = tc_rng(&seed) >> (tc_rng(&seed) & 63);
		uint64_t index = tc_rng(&seed) >> (tc_rng(&seed) & 63);
		uint64_t near = size + (tc_rng(&seed) & 7) - 4;

		check_all_paths(index, size);
		check_all_paths(near, size);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_edges),
		cmocka_unit_test(test_known_answers),
		cmocka_unit_test(test_exhaustive_windows),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests_name("nospec", tests, NULL, NULL);
}
