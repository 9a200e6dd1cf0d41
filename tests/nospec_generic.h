/* SPDX-License-Identifier: MIT */
/*
 * The portable index-masking path of <memslot/nospec.h>, compiled in its own
 * translation unit (nospec_generic.c) so that test_nospec can compare it
 * with the architecture path in the same program.
 */
#ifndef MEMSLOT_TESTS_NOSPEC_GENERIC_H
#define MEMSLOT_TESTS_NOSPEC_GENERIC_H

#include <stdint.h>

uint64_t generic_index_mask(uint64_t index, uint64_t size);
uint64_t generic_array_index(uint64_t index, uint64_t size);

#endif
