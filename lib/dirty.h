/* SPDX-License-Identifier: MIT */
/*
 * Private: dirty bitmaps of slots.  A bitmap belongs to a chain of slot
 * states: a MOVE or FLAGS_ONLY that keeps logging gives the new object the
 * same pointer, and so does the INVALID copy (which never marks).  It is
 * freed with the last state that uses it: by the change engine in
 * blocking mode, by the reclaim thread in deferred mode, or at VM
 * teardown.
 */
#ifndef MEMSLOT_LIB_DIRTY_H
#define MEMSLOT_LIB_DIRTY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <memslot/dirty.h>
#include <memslot/memslot.h>

#include "alloc.h"
#include "slot.h"

/* The VM's dirty-logging mode and hook; zero means KVM's defaults. */
struct dirty_vm {
	uint64_t manual;	/* MEMSLOT_DIRTY_LOG_* bits */
	void (*protect)(void *ctx, const struct memslot_slot *slot,
			uint64_t offset, uint64_t mask);
	void *ctx;
};

/* Give @s a bitmap: zeroed, or with @all_set its npages bits set.
 * Return: 0 or -ENOMEM. */
int dirty_alloc(struct mem_alloc *a, struct memslot_slot *s, bool all_set);
/* Free @s's bitmap (if any); the caller knows no other state uses it. */
void dirty_free(struct mem_alloc *a, struct memslot_slot *s);
/* Whether freeing @old must free its bitmap: @cur (the state after the
 * change, or NULL) does not share it. */
static inline bool dirty_owned_by(const struct memslot_slot *old,
				  const struct memslot_slot *cur)
{
	return old->dirty && (!cur || cur->dirty != old->dirty);
}

/*
 * Mark pages [@first_page, @first_page + @npages) of @slot (offsets in
 * the slot), one atomic OR per word; nothing for a slot without bitmap or
 * an INVALID slot; the part beyond the slot is ignored.
 * Context: inside a read section.
 */
void slot_mark_dirty(const struct memslot_slot *slot, uint64_t first_page,
		     uint64_t npages);

/* The hot path: one page by gfn, for the lookup-and-mark calls. */
static inline void dirty_mark_gfn(const struct memslot_slot *slot,
				  uint64_t gfn)
{
	_Atomic uint64_t *map = slot->dirty;
	uint64_t off = gfn - slot->base_gfn;

	if (!map || off >= slot->npages || (slot->flags & MEMSLOT_INVALID))
		return;
	/* The offset is guest-controlled: clamp before it indexes. */
	off = memslot_array_index_nospec(off, slot->npages);
	atomic_fetch_or_explicit(&map[off / 64], 1ull << (off % 64),
				 memory_order_relaxed);
}

#endif
