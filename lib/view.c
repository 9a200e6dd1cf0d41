/* SPDX-License-Identifier: MIT */
/*
 * Views: a reader pins one published layout (a struct memslot_set) and
 * does every lookup on it, so two lookups in one read section can never
 * straddle a change.  The VM-level lookups at the end are wrappers that
 * pin the active layout for a single call (same file, so they inline).
 *
 * The lookup path is the product: no locks, no atomic read-modify-write;
 * the only store is the set-wide last-used cache (a relaxed store, as
 * KVM's last_used_slot).
 */
#include <errno.h>

#include "vm.h"

static struct memslot_set *set_of(struct memslot_view *view)
{
	return (struct memslot_set *)view;
}

static const struct memslot_set *cset_of(const struct memslot_view *view)
{
	return (const struct memslot_set *)view;
}

struct memslot_view *memslot_view_get(struct memslot_vm *vm,
				      unsigned int as_id)
{
	if (as_id >= vm->nr_as)
		return NULL;
	return (struct memslot_view *)vm_active(vm, as_id);
}

uint64_t memslot_view_generation(const struct memslot_view *view)
{
	return atomic_load_explicit(&cset_of(view)->generation,
				    memory_order_relaxed);
}

unsigned int memslot_view_as_id(const struct memslot_view *view)
{
	return cset_of(view)->as_id;
}

/* Out of line so that a cache hit needs no stack frame. */
__attribute__((noinline))
static const struct memslot_slot *set_wide_miss(struct memslot_set *set,
						uint64_t gfn)
{
	uintptr_t cell;

	return set_search_cached(set, gfn, &cell);
}

/* A cell the cache names holds a slot: the hit returns it untested. */
const struct memslot_slot *memslot_view_gfn_to_slot(struct memslot_view *view,
						    uint64_t gfn)
{
	struct memslot_set *set = set_of(view);
	uintptr_t cell;

	if (!set_cache_cell(set, gfn, &cell))
		return set_wide_miss(set, gfn);
	return cell_slot(cell);
}

/* Inline in both entry points: a tail call between them costs the
 * VM-level one a jump and its argument moves. */
static inline const struct memslot_slot *
view_search(const struct memslot_set *set, uint64_t gfn, bool approx)
{
	struct memslot_slot *slot = set_search(set, gfn);

	return slot || !approx ? slot : set_search_approx(set, gfn);
}

const struct memslot_slot *memslot_view_search(const struct memslot_view *view,
					       uint64_t gfn, bool approx)
{
	return view_search(cset_of(view), gfn, approx);
}

const struct memslot_slot *
memslot_view_id_to_slot(const struct memslot_view *view, uint32_t id)
{
	return set_find_id(cset_of(view), id);
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

/* memslot_slot_gfn_to_hva() from the gfn index's cell @cell, which holds
 * @gfn: the slot object is not read. */
static inline int cell_to_hva(const struct memslot_set *set, uintptr_t cell,
			      uint64_t gfn, bool write, uint64_t *hva)
{
	return set_aux_to_hva(cell_key(cell), cell_end(cell), cell_aux(cell),
			      gfn, set->page_shift, write, hva);
}

/* Out of line, so that a cache hit needs no stack frame. */
__attribute__((noinline))
static int hva_miss(struct memslot_set *set, uint64_t gfn, bool write,
		    uint64_t *hva)
{
	uintptr_t cell;

	if (!set_search_cached(set, gfn, &cell))
		return -ENOENT;
	return cell_to_hva(set, cell, gfn, write, hva);
}

int memslot_view_gfn_to_hva(struct memslot_view *view, uint64_t gfn,
			    bool write, uint64_t *hva)
{
	struct memslot_set *set = set_of(view);
	uintptr_t cell;

	if (!set_cache_cell(set, gfn, &cell))
		return hva_miss(set, gfn, write, hva);
	return cell_to_hva(set, cell, gfn, write, hva);
}

/* ---- VM-level wrappers: pin the active layout for one call --------- */

const struct memslot_slot *memslot_gfn_to_slot(struct memslot_vm *vm,
					       unsigned int as_id,
					       uint64_t gfn)
{
	if (as_id >= vm->nr_as)
		return NULL;
	return memslot_view_gfn_to_slot(view_of(vm, as_id), gfn);
}

const struct memslot_slot *memslot_search(struct memslot_vm *vm,
					  unsigned int as_id, uint64_t gfn,
					  bool approx)
{
	if (!vm || as_id >= vm->nr_as)
		return NULL;
	return view_search(cset_of(view_of(vm, as_id)), gfn, approx);
}

const struct memslot_slot *memslot_id_to_slot(struct memslot_vm *vm,
					      unsigned int as_id, uint32_t id)
{
	if (!vm || as_id >= vm->nr_as || id >= vm->cfg.total_slots)
		return NULL;
	return memslot_view_id_to_slot(view_of(vm, as_id), id);
}

int memslot_gfn_to_hva(struct memslot_vm *vm, unsigned int as_id,
		       uint64_t gfn, bool write, uint64_t *hva)
{
	if (as_id >= vm->nr_as)
		return -ENOENT;
	return memslot_view_gfn_to_hva(view_of(vm, as_id), gfn, write, hva);
}
