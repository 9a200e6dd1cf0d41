/* SPDX-License-Identifier: MIT */
/* One published layout: gfn, hva and id indexes, last-used cache. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "set.h"

static uint64_t hva_end_of(const void *val)
{
	return slot_hva_end(val);
}

/* The gfn and id indexes keep each entry's end in their leaves, so that a
 * lookup decides hit or miss without reading the slot object. */
static uint64_t gfn_end_of(const void *val)
{
	return slot_end_gfn(val);
}

static uint64_t gfn_aux_of(const void *val)
{
	return set_slot_aux(val);
}

static uint64_t id_end_of(const void *val)
{
	return (uint64_t)((const struct memslot_slot *)val)->id + 1;
}

/* Every index orders equal keys by slot id (only the hva index has equal
 * keys: aliases).  A slot's next state keeps its id, so replacing a slot
 * never reorders an index. */
static uint64_t id_of(const void *val)
{
	return ((const struct memslot_slot *)val)->id;
}

struct memslot_set *set_new_empty(struct mem_alloc *alloc, unsigned int as_id,
				  unsigned int page_shift)
{
	struct memslot_set *s = mem_zalloc(alloc, sizeof(*s));

	if (!s)
		return NULL;
	atomic_init(&s->generation, as_id);
	atomic_init(&s->last_used, set_cache_empty());
	bpt_init(&s->gfn, gfn_end_of);
	bpt_init(&s->hva, hva_end_of);
	bpt_init(&s->ids, id_end_of);
	s->gfn.tie = id_of;
	s->gfn.aux = gfn_aux_of;
	s->hva.tie = id_of;
	s->ids.tie = id_of;
	s->as_id = as_id;
	s->page_shift = page_shift;
	return s;
}

void set_free(struct mem_alloc *alloc, struct memslot_set *s)
{
	mem_free(alloc, s, sizeof(*s));
}

void set_copy(struct memslot_set *dst, const struct memslot_set *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->gfn = src->gfn;
	dst->hva = src->hva;
	dst->ids = src->ids;
	dst->as_id = src->as_id;
	dst->page_shift = src->page_shift;
	atomic_init(&dst->generation,
		    atomic_load_explicit(&src->generation, memory_order_relaxed));
	/* Positions are the source's: the copy's cache is settled after its
	 * edits, from the slot. */
	dst->cache_slot = set_cached_slot(src);
	atomic_init(&dst->last_used, set_cache_empty());
}

const struct bpt_wide set_cache_none;

struct memslot_slot *set_cached_slot(const struct memslot_set *s)
{
	return cell_slot(atomic_load_explicit(&s->last_used,
					      memory_order_relaxed));
}

void set_cache_settle(struct memslot_set *s)
{
	struct memslot_slot *slot = s->cache_slot;
	const struct bpt_node *leaf;
	unsigned int pos;
	uintptr_t w = set_cache_empty();

	if (slot &&
	    bpt_cover_cell(&s->gfn, slot->base_gfn, false, &leaf, &pos) &&
	    leaf->vals[pos] == slot)
		w = set_cell(leaf, pos);
	atomic_store_explicit(&s->last_used, w, memory_order_relaxed);
	s->cache_slot = NULL;
}

void set_clear(struct memslot_set *s, struct bpt_pool *pool)
{
	bpt_clear(&s->gfn, pool);
	bpt_clear(&s->hva, pool);
	bpt_clear(&s->ids, pool);
}

static void retarget(struct memslot_set *s, struct memslot_slot *old,
		     struct memslot_slot *successor)
{
	if (s->cache_slot == old)
		s->cache_slot = successor;
}

void set_insert(struct memslot_set *s, struct bpt_pool *pool,
		struct memslot_slot *slot)
{
	bpt_insert(&s->gfn, pool, slot->base_gfn, slot);
	bpt_insert(&s->hva, pool, slot->hva, slot);
	bpt_insert(&s->ids, pool, slot->id, slot);
}

void set_remove(struct memslot_set *s, struct bpt_pool *pool,
		struct memslot_slot *old, struct memslot_slot *successor)
{
	bpt_remove(&s->gfn, pool, old->base_gfn, old);
	bpt_remove(&s->hva, pool, old->hva, old);
	bpt_remove(&s->ids, pool, old->id, old);
	retarget(s, old, successor);
}

static void replace_rest(struct memslot_set *s, struct bpt_pool *pool,
			 struct memslot_slot *old,
			 struct memslot_slot *new_slot)
{
	bpt_replace(&s->hva, pool, old->hva, old, new_slot);
	bpt_replace(&s->ids, pool, old->id, old, new_slot);
	retarget(s, old, new_slot);
}

void set_replace(struct memslot_set *s, struct bpt_pool *pool,
		 struct memslot_slot *old, struct memslot_slot *new_slot)
{
	bpt_replace(&s->gfn, pool, old->base_gfn, old, new_slot);
	replace_rest(s, pool, old, new_slot);
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
	replace_rest(s, pool, old, new_slot);
}

void set_nodes_for(const struct memslot_set *s, size_t edits,
		   size_t gfn_inserts, size_t hva_inserts, size_t id_inserts,
		   size_t *plain, size_t *wide)
{
	bpt_nodes_for_cow(&s->gfn, edits, plain, wide);
	bpt_nodes_for_cow(&s->hva, edits, plain, wide);
	bpt_nodes_for_cow(&s->ids, edits, plain, wide);
	bpt_nodes_for_inserts(&s->gfn, gfn_inserts, plain, wide);
	bpt_nodes_for_inserts(&s->hva, hva_inserts, plain, wide);
	bpt_nodes_for_inserts(&s->ids, id_inserts, plain, wide);
}

/* ---- bulk inserts ---------------------------------------------------- */

/* Fewer inserts than this go one by one; a rebuild also costs O(n), so it
 * pays only when the inserts are at least 1/16 of the layout. */
#define SET_BULK_MIN 32

/* Slots ahead of the one read that a pass over a bulk batch loads. */
#define SLOT_AHEAD 16

static uint64_t gfn_key(const void *val)
{
	return ((const struct memslot_slot *)val)->base_gfn;
}

static uint64_t hva_key(const void *val)
{
	return ((const struct memslot_slot *)val)->hva;
}

bool set_bulk_pays(const struct memslot_set *s, size_t k)
{
	return k >= SET_BULK_MIN && k >= s->gfn.count / 16;
}

void set_nodes_for_bulk(const struct memslot_set *s, size_t k,
			size_t *plain, size_t *wide)
{
	bpt_nodes_for_build(&s->gfn, s->gfn.count + k, plain, wide);
	bpt_nodes_for_build(&s->hva, s->hva.count + k, plain, wide);
	bpt_nodes_for_build(&s->ids, s->ids.count + k, plain, wide);
}

size_t set_bulk_scratch(size_t k)
{
	return 2 * k * sizeof(struct set_keyed);
}

static bool keys_sorted(const struct set_keyed *a, size_t k)
{
	for (size_t i = 1; i < k; i++) {
		if (a[i - 1].key > a[i].key)
			return false;
	}
	return true;
}

/* Byte @d of every key, counted: cnt[d][byte]. */
static void histogram(const struct set_keyed *a, size_t k, size_t cnt[8][256])
{
	memset(cnt, 0, 8 * sizeof(cnt[0]));
	for (size_t i = 0; i < k; i++) {
		for (unsigned int d = 0; d < 8; d++)
			cnt[d][(a[i].key >> (8 * d)) & 0xff]++;
	}
}

/* One stable counting pass on byte @d, from @src to @dst. */
static void radix_pass(const struct set_keyed *src, struct set_keyed *dst,
		       size_t k, unsigned int d, size_t cnt[256])
{
	size_t pos = 0;

	for (unsigned int v = 0; v < 256; v++) {
		size_t c = cnt[v];

		cnt[v] = pos;
		pos += c;
	}
	for (size_t i = 0; i < k; i++)
		dst[cnt[(src[i].key >> (8 * d)) & 0xff]++] = src[i];
}

/*
 * Least significant byte first, each pass stable; a byte every key shares
 * takes no pass (slot keys are page aligned and rarely span 64 bits), and
 * sorted input takes none at all.
 */
struct set_keyed *set_sort_keyed(struct set_keyed *a, struct set_keyed *tmp,
				 size_t k)
{
	size_t cnt[8][256];

	if (keys_sorted(a, k))
		return a;
	histogram(a, k, cnt);
	for (unsigned int d = 0; d < 8; d++) {
		struct set_keyed *t = a;

		if (cnt[d][(a[0].key >> (8 * d)) & 0xff] == k)
			continue;
		radix_pass(a, tmp, k, d, cnt[d]);
		a = tmp;
		tmp = t;
	}
	return a;
}

/*
 * A big batch's slot objects lie wherever the allocator put them, so a
 * pass over them waits for a miss per slot unless the loads start early.
 * Always inline, as region.c's cur_ahead(): a split-out part that only
 * prefetches looks free of effects to gcc, which drops its calls.
 */
static inline __attribute__((always_inline)) void
slot_ahead(void *const *slots, size_t k, size_t i)
{
	if (i + SLOT_AHEAD < k)
		slot_prefetch(slots[i + SLOT_AHEAD]);
}

/* Stable: slots with equal keys keep their order.  Requests usually come
 * in gfn or id order, so a check comes first. */
static void sort_slots(void **slots, size_t k, uint64_t (*key)(const void *),
		       struct set_keyed *scratch)
{
	struct set_keyed *sorted;
	size_t i = 1;

	while (i < k && key(slots[i - 1]) <= key(slots[i])) {
		slot_ahead(slots, k, i);
		i++;
	}
	if (i >= k)
		return;
	for (i = 0; i < k; i++) {
		slot_ahead(slots, k, i);
		scratch[i] = (struct set_keyed){ key(slots[i]),
						 (uintptr_t)slots[i] };
	}
	sorted = set_sort_keyed(scratch, scratch + k, k);
	for (i = 0; i < k; i++)
		slots[i] = (void *)(uintptr_t)sorted[i].val;
}

/* The hva order last: it is the one least likely to be the request
 * order, so the other two may need no sort; and the slots are in id order
 * then, so a stable sort by hva orders aliases by id, as the index does. */
void set_insert_bulk(struct memslot_set *s, struct bpt_pool *pool,
		     void **slots, size_t k, void *scratch)
{
	sort_slots(slots, k, gfn_key, scratch);
	bpt_build_merge(&s->gfn, pool, slots, k, gfn_key);
	sort_slots(slots, k, id_of, scratch);
	bpt_build_merge(&s->ids, pool, slots, k, id_of);
	sort_slots(slots, k, hva_key, scratch);
	bpt_build_merge(&s->hva, pool, slots, k, hva_key);
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
