/* SPDX-License-Identifier: MIT */
/*
 * Private: the per-vCPU cache object, and its hit test inline, so that
 * other read-side modules (guest-memory access) take a hit without a call.
 */
#ifndef MEMSLOT_LIB_VCPU_H
#define MEMSLOT_LIB_VCPU_H

#include <stdatomic.h>
#include <stdint.h>

#include "set.h"
#include "slot.h"

/* The VM's active-layout array, its size and page shift are copied in, so
 * a hit needs no load of the VM object. */
struct memslot_vcpu {
	const struct memslot_slot *slot;
	uint64_t gen;
	struct memslot_set *_Atomic *active;
	unsigned int nr_as;
	unsigned int page_shift;
	struct memslot_vm *vm;
};

/* The cached slot if it belongs to @set's layout and holds @gfn. */
static inline const struct memslot_slot *
vcpu_hit(const struct memslot_vcpu *vcpu, const struct memslot_set *set,
	 uint64_t gfn)
{
	const struct memslot_slot *slot = vcpu->slot;
	uint64_t gen = atomic_load_explicit(&set->generation,
					    memory_order_relaxed);

	if (gen == vcpu->gen && slot && gfn - slot->base_gfn < slot->npages)
		return slot;
	return NULL;
}

#endif
