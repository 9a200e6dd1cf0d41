/* SPDX-License-Identifier: MIT */
/* One slot set: gfn index, hva index, id table, last-used cache. */
#include <errno.h>
#include <stdbool.h>

#include "set.h"

static uint64_t hva_end_of(const void *val)
{
	return slot_hva_end(val);
}

/* Aliases (equal hva) are ordered by id, which a replacement keeps, so
 * replacing a slot by its next state is an in-place store there. */
static uint64_t id_of(const void *val)
{
	return ((const struct memslot_slot *)val)->id;
}

int set_init(struct memslot_set *s, unsigned int idx, unsigned int as_id,
	     struct mem_alloc *alloc)
{
	atomic_init(&s->generation, as_id);
	atomic_init(&s->last_used, NULL);
	bpt_init(&s->gfn, NULL);
	bpt_init(&s->hva, hva_end_of);
	s->hva.tie = id_of;
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

static void replace_rest(struct memslot_set *s, struct memslot_slot *old,
			 struct memslot_slot *new_slot)
{
	bpt_replace(&s->hva, old->hva, old, new_slot);
	idt_del(&s->ids, old);
	idt_add(&s->ids, new_slot);
	retarget(s, old, new_slot);
}

void set_replace(struct memslot_set *s, struct memslot_slot *old,
		 struct memslot_slot *new_slot)
{
	bpt_replace(&s->gfn, old->base_gfn, old, new_slot);
	replace_rest(s, old, new_slot);
}

void set_move_out(struct memslot_set *s, struct bpt_pool *pool,
		  struct memslot_slot *old)
{
	bpt_remove(&s->gfn, pool, old->base_gfn, old);
}

void set_move_in(struct memslot_set *s, struct bpt_pool *pool,
		 struct memslot_slot *old, struct memslot_slot *new_slot)
{
	bpt_insert(&s->gfn, pool, new_slot->base_gfn, new_slot);
	replace_rest(s, old, new_slot);
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

