/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page marking for guest-memory writes.
 *
 * Slots have no dirty bitmap yet: the bitmap (live bits and a snapshot
 * half, allocated when MEMSLOT_MEM_LOG_DIRTY_PAGES is set) lands with dirty
 * logging, and with it the body of this function.  Until then every slot
 * is a slot without a bitmap, and marking one does nothing.
 */
#include "dirty.h"

void slot_mark_dirty(const struct memslot_slot *slot, uint64_t first_page,
		     uint64_t npages)
{
	(void)slot;
	(void)first_page;
	(void)npages;
}
