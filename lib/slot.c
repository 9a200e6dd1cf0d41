/* SPDX-License-Identifier: MIT */
/* The slot accessors. */
#include <errno.h>

#include "vm.h"

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
