/* SPDX-License-Identifier: MIT */
/* One slot set: gfn index, hva index, id table, last-used cache. */
#include <errno.h>
#include <stdbool.h>

#include "set.h"

static uint64_t hva_end_of(const void *val)
{
	return slot_hva_end(val);
}

int set_init(struct memslot_set *s, unsigned int idx, unsigned int as_id,
	     struct mem_alloc *alloc)
{
	atomic_init(&s->generation, as_id);
	atomic_init(&s->last_used, NULL);
	bpt_init(&s->gfn, NULL);
	bpt_init(&s->hva, hva_end_of);
	s->idx = idx;
	s->as_id = as_id;
	return idt_init(&s->ids, idx, alloc);
}

void set_destroy(struct memslot_set *s, struct bpt_pool *pool)
{
	bpt_clear(&s->gfn, pool);
	bpt_clear(&s->hva, pool);
	idt_destroy(&s->ids);
}

static void retarget(struct memslot_set *s, struct memslot_slot *old,
		     struct memslot_slot *successor)
{
	if (atomic_load_explicit(&s->last_used, memory_order_relaxed) == old)
		atomic_store_explicit(&s->last_used, successor,
				      memory_order_relaxed);
}

void set_insert(struct memslot_set *s, struct bpt_pool *pool,
		struct memslot_slot *slot)
{
	bpt_insert(&s->gfn, pool, slot->base_gfn, slot);
	bpt_insert(&s->hva, pool, slot->hva, slot);
	idt_add(&s->ids, slot);
}

void set_remove(struct memslot_set *s, struct bpt_pool *pool,
		struct memslot_slot *old, struct memslot_slot *successor)
{
	bpt_remove(&s->gfn, pool, old->base_gfn, old);
	bpt_remove(&s->hva, pool, old->hva, old);
	idt_del(&s->ids, old);
	retarget(s, old, successor);
}

/*
 * The gfn index swaps the value in place (the key is unique there).  The
 * hva index orders aliases by slot address, so the new object goes through
 * remove + insert there even though its hva is unchanged.
 */
void set_replace(struct memslot_set *s, struct bpt_pool *pool,
		 struct memslot_slot *old, struct memslot_slot *new_slot)
{
	bpt_replace(&s->gfn, old->base_gfn, old, new_slot);
	bpt_remove(&s->hva, pool, old->hva, old);
	bpt_insert(&s->hva, pool, new_slot->hva, new_slot);
	idt_del(&s->ids, old);
	idt_add(&s->ids, new_slot);
	retarget(s, old, new_slot);
}

struct memslot_slot *set_search_approx(const struct memslot_set *s,
				       uint64_t gfn)
{
	struct memslot_slot *slot = bpt_find_le(&s->gfn, gfn);

	return slot ? slot : bpt_first(&s->gfn);
}

bool set_overlaps(const struct memslot_set *s, uint32_t id, uint64_t start,
		  uint64_t end)
{
	struct bpt_iter it;
	struct memslot_slot *slot;

	bpt_iter_seek_le(&it, &s->gfn, start);
	while ((slot = bpt_iter_next(&it)) && slot->base_gfn < end) {
		if (slot_end_gfn(slot) > start && slot->id != id)
			return true;
	}
	return false;
}

/* TEMPORARY until bptree.c provides it: per-insert worst case. */
void bpt_nodes_for_inserts(const struct bpt *t, size_t k, size_t *leaves,
			   size_t *inners)
{
	size_t grow = 0;

	for (size_t v = k; v; v >>= 1)
		grow++;
	*leaves += k;
	*inners += k * (bpt_insert_inners(t) + 1 + grow);
}
