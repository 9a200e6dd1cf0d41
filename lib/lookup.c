/* SPDX-License-Identifier: MIT */
/*
 * Lookups: the product's hot path.  No locks, no atomic read-modify-write;
 * the only store is the set-wide last-used cache (a plain relaxed store,
 * as KVM's last_used_slot).
 */
#include <errno.h>

#include "vm.h"

/* Out of line so that a cache hit needs no stack frame. */
__attribute__((noinline))
static const struct memslot_slot *set_wide_miss(struct memslot_set *set,
						uint64_t gfn)
{
	struct memslot_slot *slot = set_search(set, gfn);

	if (slot)
		atomic_store_explicit(&set->last_used, slot,
				      memory_order_relaxed);
	return slot;
}

const struct memslot_slot *memslot_gfn_to_slot(struct memslot_vm *vm,
					       unsigned int as_id,
					       uint64_t gfn)
{
	struct memslot_set *set;
	struct memslot_slot *slot;

	if (as_id >= vm->nr_as)
		return NULL;
	set = vm_active(vm, as_id);
	slot = atomic_load_explicit(&set->last_used, memory_order_relaxed);
	/* Unsigned: a gfn below base_gfn wraps and fails the compare. */
	if (slot && gfn - slot->base_gfn < slot->npages)
		return slot;
	return set_wide_miss(set, gfn);
}

const struct memslot_slot *memslot_search(struct memslot_vm *vm,
					  unsigned int as_id, uint64_t gfn,
					  bool approx)
{
	struct memslot_set *set;
	struct memslot_slot *slot;

	if (!vm || as_id >= vm->nr_as)
		return NULL;
	set = vm_active(vm, as_id);
	slot = set_search(set, gfn);
	return slot || !approx ? slot : set_search_approx(set, gfn);
}

const struct memslot_slot *memslot_id_to_slot(struct memslot_vm *vm,
					      unsigned int as_id, uint32_t id)
{
	if (!vm || as_id >= vm->nr_as || id >= vm->cfg.total_slots)
		return NULL;
	return idt_find(&vm_active(vm, as_id)->ids, id);
}

int memslot_slot_gfn_to_hva(const struct memslot_slot *slot, uint64_t gfn,
			    bool write, uint64_t *hva)
{
	uint64_t off;

	if (!slot || gfn - slot->base_gfn >= slot->npages)
		return -ENOENT;
	if (slot->flags & MEMSLOT_INVALID)
		return -EFAULT;
	if (write && (slot->flags & MEMSLOT_MEM_READONLY))
		return -EROFS;
	/* The offset is guest-controlled: clamp it so a mispredicted bounds
	 * check cannot form an address outside the slot. */
	off = memslot_array_index_nospec(gfn - slot->base_gfn, slot->npages);
	*hva = slot->hva + (off << slot->page_shift);
	return 0;
}

int memslot_gfn_to_hva(struct memslot_vm *vm, unsigned int as_id,
		       uint64_t gfn, bool write, uint64_t *hva)
{
	return memslot_slot_gfn_to_hva(memslot_gfn_to_slot(vm, as_id, gfn),
				       gfn, write, hva);
}

uint64_t memslot_slot_base_gfn(const struct memslot_slot *slot)
{
	return slot->base_gfn;
}

uint64_t memslot_slot_npages(const struct memslot_slot *slot)
{
	return slot->npages;
}

uint64_t memslot_slot_hva(const struct memslot_slot *slot)
{
	return slot->hva;
}

uint32_t memslot_slot_flags(const struct memslot_slot *slot)
{
	return slot->flags;
}

uint32_t memslot_slot_id(const struct memslot_slot *slot)
{
	return slot->id;
}

unsigned int memslot_slot_as_id(const struct memslot_slot *slot)
{
	return slot->as_id;
}

void *memslot_slot_user_data(const struct memslot_slot *slot)
{
	return slot->user_data;
}

void memslot_slot_region(const struct memslot_vm *vm,
			 const struct memslot_slot *slot,
			 struct memslot_region *region)
{
	uint64_t as_bits = vm->cfg.id_bits >= 32 ? 0
			   : (uint64_t)slot->as_id << vm->cfg.id_bits;

	region->slot = (uint32_t)(as_bits | slot->id);
	region->flags = slot->flags & 0xffffu;
	region->guest_phys_addr = slot->base_gfn << slot->page_shift;
	region->memory_size = slot->npages << slot->page_shift;
	region->userspace_addr = slot->hva;
	region->user_data = slot->user_data;
	region->guest_memfd_offset = slot->gmem_offset;
	region->guest_memfd = slot->gmem_fd;
}
