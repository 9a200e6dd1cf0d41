/* SPDX-License-Identifier: MIT */
/*
 * Private: dirty bitmaps of slots.  A bitmap is two halves in one
 * allocation (slot->dirty); marks go to the half slot->dirty_live points
 * at, and a whole-slot harvest switches halves, waits one grace period and
 * reads the quiet half with plain loads.  The allocation belongs to a
 * chain of slot states: a MOVE or FLAGS_ONLY that keeps logging gives the
 * new object the same pointers; an INVALID copy has none.  It is freed
 * with the last state that uses it: by the change engine in blocking mode,
 * by the reclaim thread in deferred mode, or at VM teardown.
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
	/* Whole-slot harvests of at least this many words switch halves
	 * (0: DIRTY_FLIP_WORDS); tests set it to reach both paths. */
	uint64_t flip_words;
};

/* Give @s a bitmap, both halves: the live one zeroed, or with @all_set
 * its npages bits set.  Return: 0 or -ENOMEM. */
int dirty_alloc(struct mem_alloc *a, struct memslot_slot *s, bool all_set);
/* Free @s's bitmap (if any); the caller knows no other state uses it. */
void dirty_free(struct mem_alloc *a, struct memslot_slot *s);
/* Bytes of @npages' bitmap allocation: two halves, as KVM allocates. */
uint64_t dirty_alloc_bytes(uint64_t npages);

/* @cur, the state after a MOVE or FLAGS_ONLY that keeps logging, takes
 * over @old's bitmap as it is.  Context: writer lock held. */
static inline void dirty_share(struct memslot_slot *cur,
			       const struct memslot_slot *old)
{
	cur->dirty = old->dirty;
	atomic_init(&cur->dirty_live, atomic_load_explicit(&old->dirty_live,
						memory_order_relaxed));
	cur->mark_npages = cur->npages;
}

/* An INVALID copy never marks: it gets no bitmap at all, so the mark
 * path needs no flag test. */
static inline void dirty_detach(struct memslot_slot *s)
{
	s->dirty = NULL;
	atomic_init(&s->dirty_live, NULL);
	s->mark_npages = 0;
}

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

/* One page at offset @off < slot->mark_npages, already clamped.  Acquire:
 * a half a harvest switched to was cleared before the switch.  Release
 * OR: a harvest that takes the bit (acquire) also sees the bytes written
 * to the page before the mark, so a VMM that copies the page after the
 * harvest never sends stale contents.  Free on x86-64 (a locked OR). */
static inline void dirty_mark_offset(const struct memslot_slot *slot,
				     uint64_t off)
{
	_Atomic uint64_t *map =
		atomic_load_explicit(&slot->dirty_live, memory_order_acquire);

	atomic_fetch_or_explicit(&map[off / 64], 1ull << (off % 64),
				 memory_order_release);
}

/* The hot path: one page by gfn, for the lookup-and-mark calls.  One
 * bounds check covers "in the slot", "has a bitmap" and "not INVALID". */
static inline void dirty_mark_gfn(const struct memslot_slot *slot,
				  uint64_t gfn)
{
	uint64_t off = gfn - slot->base_gfn;

	if (off >= slot->mark_npages)
		return;
	/* The offset is guest-controlled: clamp before it indexes. */
	dirty_mark_offset(slot,
			  memslot_array_index_nospec(off, slot->mark_npages));
}

#endif
