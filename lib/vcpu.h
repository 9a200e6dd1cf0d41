/* SPDX-License-Identifier: MIT */
/*
 * Private: the per-vCPU cache object, and its hit test inline, so that
 * other read-side modules (guest-memory access) take a hit without a call.
 */
#ifndef MEMSLOT_LIB_VCPU_H
#define MEMSLOT_LIB_VCPU_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "set.h"
#include "slot.h"

/*
 * The cache entry is the cell of the gfn index the last lookup found,
 * copied: the slot's first gfn, size and aux word (set_slot_aux()).  A hit
 * compares and translates from this object alone; checking a cached slot
 * pointer instead would load the slot object, which a lookup through the
 * index never touches, so with random gfns every check would wait for a
 * cache miss of its own before the search could start.  The VM's
 * active-layout array, its size and page shift are copied in too, so a
 * hit needs no load of the VM object.  The hit path's fields come first.
 */
struct memslot_vcpu {
	uint64_t gen;
	uint64_t base;		/* the cached slot's first gfn */
	uint64_t npages;	/* its size; 0 when nothing is cached */
	uint64_t mark_npages;	/* npages if it marks dirty pages, else 0 */
	uint64_t aux;		/* set_slot_aux() */
	const struct memslot_slot *slot;
	struct memslot_set *_Atomic *active;
	unsigned int nr_as;
	unsigned int page_shift;
	struct memslot_vm *vm;
};

/* Whether the entry belongs to the layout of generation @gen and holds
 * @gfn.  An empty entry has npages 0 and holds nothing. */
static inline bool vcpu_holds(const struct memslot_vcpu *vcpu, uint64_t gen,
			      uint64_t gfn)
{
	return gen == vcpu->gen && gfn - vcpu->base < vcpu->npages;
}

/* Whether the entry belongs to @set's layout and holds @gfn (the held
 * entry's slot is then never NULL). */
static inline bool vcpu_holds_in(const struct memslot_vcpu *vcpu,
				 const struct memslot_set *set, uint64_t gfn)
{
	return vcpu_holds(vcpu, atomic_load_explicit(&set->generation,
						     memory_order_relaxed),
			  gfn);
}

/* memslot_slot_gfn_to_hva()'s verdicts for @gfn, which the entry holds,
 * from the entry alone. */
static inline int vcpu_entry_to_hva(const struct memslot_vcpu *vcpu,
				    uint64_t gfn, bool write, uint64_t *hva)
{
	return set_aux_to_hva(vcpu->base, vcpu->base + vcpu->npages,
			      vcpu->aux, gfn, vcpu->page_shift, write, hva);
}

#endif
