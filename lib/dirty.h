/* SPDX-License-Identifier: MIT */
/*
 * Private: the hook through which guest-memory writes reach a slot's dirty
 * log.  The access code (access.c) calls it after each copy into a slot, so
 * that marking is in one place when dirty logging lands.
 */
#ifndef MEMSLOT_LIB_DIRTY_H
#define MEMSLOT_LIB_DIRTY_H

#include <stdint.h>

#include "slot.h"

/*
 * Mark pages [@first_page, @first_page + @npages) of @slot dirty; page
 * numbers count from the slot's first page (KVM's rel_gfn), and the caller
 * has checked the range against the slot.  Call it after the bytes are
 * written.  A slot with no dirty bitmap is left alone.
 *
 * Context: a read section in which @slot is reachable; any thread (the
 * bits are set with atomic operations once they exist).
 */
void slot_mark_dirty(const struct memslot_slot *slot, uint64_t first_page,
		     uint64_t npages);

#endif
