/* SPDX-License-Identifier: MIT */
/*
 * Per-vCPU lookup cache: the last slot this vCPU found, tagged with the
 * generation of the set it came from.  One shared set-wide cache thrashes
 * when vCPUs work in different slots; this one is private to its thread,
 * so a hit stores nothing to shared memory.
 */
#include <errno.h>

#include "vm.h"

struct memslot_vcpu {
	const struct memslot_slot *slot;
	uint64_t gen;
	struct memslot_vm *vm;
};

int memslot_vcpu_create(struct memslot_vm *vm, struct memslot_vcpu **out)
{
	struct memslot_vcpu *v;

	if (!vm || !out)
		return -EINVAL;
	/* The allocator's byte count belongs to the writer side. */
	pthread_mutex_lock(&vm->writer);
	v = mem_zalloc(&vm->alloc, sizeof(*v));
	pthread_mutex_unlock(&vm->writer);
	if (!v)
		return -ENOMEM;
	v->vm = vm;
	/* No real generation has bit 63 without a swap in flight, and a
	 * cache is dropped on any mismatch, so this never matches. */
	v->gen = UINT64_MAX;
	*out = v;
	return 0;
}

void memslot_vcpu_destroy(struct memslot_vcpu *vcpu)
{
	struct memslot_vm *vm;

	if (!vcpu)
		return;
	vm = vcpu->vm;
	pthread_mutex_lock(&vm->writer);
	mem_free(&vm->alloc, vcpu, sizeof(*vcpu));
	pthread_mutex_unlock(&vm->writer);
}

const struct memslot_slot *memslot_vcpu_gfn_to_slot(struct memslot_vcpu *vcpu,
						    unsigned int as_id,
						    uint64_t gfn)
{
	struct memslot_vm *vm = vcpu->vm;
	const struct memslot_slot *slot;
	struct memslot_set *set;
	uint64_t gen;

	if (as_id >= vm->nr_as)
		return NULL;
	set = vm_active(vm, as_id);
	gen = atomic_load_explicit(&set->generation, memory_order_relaxed);
	/* Generations differ across address spaces too, so this also drops
	 * a slot cached for another address space. */
	if (gen != vcpu->gen) {
		vcpu->slot = NULL;
		vcpu->gen = gen;
	}
	slot = vcpu->slot;
	if (slot && gfn - slot->base_gfn < slot->npages)
		return slot;
	/* Search without the set-wide cache, so vCPUs working in different
	 * slots do not thrash one shared line; keep the entry on a miss. */
	slot = set_search(set, gfn);
	if (slot)
		vcpu->slot = slot;
	return slot;
}
