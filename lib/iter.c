/* SPDX-License-Identifier: MIT */
/* gfn-range and hva-range iteration over views and the active sets. */
#include <stddef.h>
#include <string.h>

#include "vm.h"

/* The public iterators carry a struct bpt_iter in their private fields. */
_Static_assert(offsetof(struct memslot_gfn_iter, priv_node) == 0 &&
	       offsetof(struct memslot_gfn_iter, priv_pos) ==
		       offsetof(struct bpt_iter, pos) &&
	       offsetof(struct memslot_gfn_iter, priv_depth) ==
		       offsetof(struct bpt_iter, depth),
	       "memslot_gfn_iter must start with a struct bpt_iter");
_Static_assert(offsetof(struct memslot_hva_iter, priv_node) == 0 &&
	       offsetof(struct memslot_hva_iter, priv_pos) ==
		       offsetof(struct bpt_iter, pos) &&
	       offsetof(struct memslot_hva_iter, priv_depth) ==
		       offsetof(struct bpt_iter, depth),
	       "memslot_hva_iter must start with a struct bpt_iter");

static struct bpt_iter *gfn_pos(struct memslot_gfn_iter *it)
{
	return (struct bpt_iter *)(void *)it;
}

static struct bpt_iter *hva_pos(struct memslot_hva_iter *it)
{
	return (struct bpt_iter *)(void *)it;
}

void memslot_view_gfn_iter_init(struct memslot_gfn_iter *it,
				const struct memslot_view *view,
				uint64_t start, uint64_t end)
{
	const struct memslot_set *set = (const struct memslot_set *)view;

	memset(it, 0, sizeof(*it));
	if (start >= end)
		return;
	it->priv_end = end;
	bpt_iter_seek_le(gfn_pos(it), &set->gfn, start);
	/* The slot at or before @start counts only if it reaches @start. */
	it->priv_next = bpt_iter_next(gfn_pos(it));
	if (it->priv_next && slot_end_gfn(it->priv_next) <= start)
		it->priv_next = bpt_iter_next(gfn_pos(it));
}

void memslot_gfn_iter_init(struct memslot_gfn_iter *it, struct memslot_vm *vm,
			   unsigned int as_id, uint64_t start, uint64_t end)
{
	if (!vm || as_id >= vm->nr_as) {
		memset(it, 0, sizeof(*it));
		return;
	}
	memslot_view_gfn_iter_init(it, view_of(vm, as_id), start, end);
}

const struct memslot_slot *memslot_gfn_iter_next(struct memslot_gfn_iter *it)
{
	const struct memslot_slot *slot = it->priv_next;

	if (!slot || slot->base_gfn >= it->priv_end)
		return NULL;
	it->priv_next = bpt_iter_next(gfn_pos(it));
	return slot;
}

/*
 * Start the walk of the next address space that has a hit, if any.  A walk
 * over one view has no VM and ends with its only tree.
 */
static void hva_next_as(struct memslot_hva_iter *it)
{
	struct memslot_vm *vm = it->priv_vm;

	/* Keep the tree: a swap during the walk must not switch sets under
	 * the saved position. */
	while (vm && ++it->priv_as < vm->nr_as) {
		it->priv_tree = &vm_active(vm, it->priv_as)->hva;
		bpt_overlap_init(hva_pos(it), it->priv_tree, it->priv_start,
				 it->priv_end);
		if (it->priv_depth)
			return;
	}
	it->priv_tree = NULL;
}

/*
 * The fields every walk reads, for an empty walk.  Not a memset: the
 * position stack is read only up to its depth, and clearing its 200 bytes
 * was a third of a short walk's instructions.
 */
static void hva_iter_clear(struct memslot_hva_iter *it)
{
	it->priv_depth = 0;
	it->priv_as = 0;
	it->priv_start = 0;
	it->priv_end = 0;
	it->priv_vm = NULL;
	it->priv_tree = NULL;
}

void memslot_hva_iter_init(struct memslot_hva_iter *it, struct memslot_vm *vm,
			   uint64_t start, uint64_t end)
{
	hva_iter_clear(it);
	if (!vm || start >= end)
		return;
	it->priv_vm = vm;
	it->priv_start = start;
	it->priv_end = end;
	it->priv_as = (unsigned int)-1;
	hva_next_as(it);
}

void memslot_view_hva_iter_init(struct memslot_hva_iter *it,
				const struct memslot_view *view,
				uint64_t start, uint64_t end)
{
	const struct memslot_set *set = (const struct memslot_set *)view;

	hva_iter_clear(it);
	if (start >= end)
		return;
	it->priv_start = start;
	it->priv_end = end;
	it->priv_as = set->as_id;
	it->priv_tree = &set->hva;
	bpt_overlap_init(hva_pos(it), it->priv_tree, start, end);
}

static void fill_hit(const struct memslot_hva_iter *it,
		     const struct memslot_slot *slot, struct memslot_hva_hit *hit)
{
	uint64_t shift = slot->page_shift;
	uint64_t page = 1ull << shift;
	uint64_t end = slot_hva_end(slot);

	hit->slot = slot;
	hit->hva_start = it->priv_start > slot->hva ? it->priv_start : slot->hva;
	hit->hva_end = it->priv_end < end ? it->priv_end : end;
	hit->gfn_start = slot->base_gfn + ((hit->hva_start - slot->hva) >> shift);
	/* A partly covered last page still counts. */
	hit->gfn_end = slot->base_gfn +
		       ((hit->hva_end + page - 1 - slot->hva) >> shift);
}

bool memslot_hva_iter_next(struct memslot_hva_iter *it,
			   struct memslot_hva_hit *hit)
{
	const struct memslot_slot *slot = NULL;

	while (it->priv_tree) {
		slot = bpt_overlap_next(hva_pos(it), it->priv_start,
					it->priv_end);
		if (slot)
			break;
		hva_next_as(it);
	}
	if (!slot)
		return false;
	fill_hit(it, slot, hit);
	return true;
}
