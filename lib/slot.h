/* SPDX-License-Identifier: MIT */
/*
 * Private: the slot object.  One object per slot state, shared by every
 * published layout that holds it; never changed while a reader can reach
 * it (a change makes a new object; only dirty_live, the bitmap half
 * marks go to, is switched in place by a harvest).  The fields lookups
 * read come first so a hit touches one cache line.
 */
#ifndef MEMSLOT_LIB_SLOT_H
#define MEMSLOT_LIB_SLOT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct memslot_slot {
	uint64_t base_gfn;
	uint64_t npages;
	uint64_t hva;
	uint32_t flags;
	uint32_t id;
	void *user_data;
	/* Small fields packed together: a slot is 80 bytes, not 88. */
	uint16_t as_id;		/* < 256 (config check) */
	uint16_t page_shift;	/* 9..30 (config check) */
	/* KVM_SET_USER_MEMORY_REGION2's binding, kept for the VMM; zero
	 * unless flags has MEMSLOT_MEM_GUEST_MEMFD (with gmem_offset). */
	uint32_t gmem_fd;
	/* Dirty logging (dirty.h).  The mark path reads only these two, so
	 * they share the first cache line with base_gfn and npages: the
	 * half of the bitmap marks go to now (a harvest switches it), and
	 * the pages a mark may set (npages if this state logs and is not
	 * INVALID, else 0). */
	_Atomic uint64_t *_Atomic dirty_live;
	uint64_t mark_npages;
	uint64_t gmem_offset;
	/* The bitmap's memory, both halves; shared by the states of one
	 * logging run, NULL without logging. */
	_Atomic uint64_t *dirty;
};

/* memory_per_slot's budget counts on it (benchmarks.md). */
_Static_assert(sizeof(struct memslot_slot) <= 80, "slot object grew");

/* The gfn after the slot's last page. */
static inline uint64_t slot_end_gfn(const struct memslot_slot *s)
{
	return s->base_gfn + s->npages;
}

/* The hva after the slot's last byte. */
static inline uint64_t slot_hva_end(const struct memslot_slot *s)
{
	return s->hva + (s->npages << s->page_shift);
}

/*
 * Start loading what the index keys and ends of @s are made of (base gfn
 * to page shift): both lines, since an allocator's 16-byte alignment lets
 * those bytes straddle two.  For passes over many slot objects, a few
 * slots ahead.  A prefetch never faults, so @s may be NULL.
 */
static inline __attribute__((always_inline)) void
slot_prefetch(const struct memslot_slot *s)
{
	__builtin_prefetch(s);
	__builtin_prefetch((const char *)s +
			   offsetof(struct memslot_slot, gmem_fd) - 1);
}

#endif
