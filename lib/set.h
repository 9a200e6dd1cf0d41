/* SPDX-License-Identifier: MIT */
/*
 * Private: one published layout of an address space ("memslot set"): its
 * generation, its gfn, hva and id indexes, and the set-wide last-used
 * cache.  A view (struct memslot_view) is a pointer to one.
 *
 * Layouts are copy on write.  The writer copies the active layout's header
 * (the tree roots, a few words), edits the copy's trees in a new pool
 * epoch (bptree.h: published nodes are cloned, never changed) and
 * publishes the new header with one pointer store.  Readers holding the
 * old header keep a whole, unchanging old layout until their read section
 * ends; then the old header and the nodes only it used are freed.  Two
 * layouts share every node the change did not touch, and every slot
 * object.
 */
#ifndef MEMSLOT_LIB_SET_H
#define MEMSLOT_LIB_SET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>

#include <memslot/nospec.h>

#include "alloc.h"
#include "bptree.h"
#include "slot.h"

#define SET_GEN_IN_PROGRESS (1ull << 63)

/* A cache line's worth of bytes, to keep the reader-written field apart. */
#define SET_LINE 64

struct memslot_set {
	/* Written by a blocking publish while readers look, hence atomic. */
	_Atomic uint64_t generation;
	struct bpt gfn;		/* key: base gfn; end: gfn end; value: slot */
	struct bpt hva;		/* key: hva; augmented with the hva end */
	struct bpt ids;		/* key: slot id; end: id + 1 */
	unsigned int as_id;
	unsigned int page_shift;	/* the VM's, for readers holding a view */
	/* Writer only, while it edits an unpublished layout: the slot the
	 * cache is to name once published (see set_cache_settle()). */
	struct memslot_slot *cache_slot;
	/*
	 * The set-wide last-used cache, stored to by readers (never RMW): the
	 * position of the last slot found in the gfn index, as the address
	 * of its cell's key in a leaf (see "Cells" below), or set_cache_none
	 * when empty.  A position, not a slot pointer: the check then reads
	 * the leaf the last lookup walked, still in cache, where a slot
	 * pointer had it read a slot object that no lookup touches (a miss of
	 * its own whenever the cache misses).  A leaf of this layout lives as
	 * long as the layout does.
	 * Alone on its cache line: a store from one CPU must not evict the
	 * generation and index roots every other reader needs (vCPU-cache
	 * hits read the generation).  Padding, not _Alignas: the set lives
	 * in memory from the allocator hook, which promises 16 bytes.
	 */
	char pad_before[SET_LINE];
	_Atomic uintptr_t last_used;
	char pad_after[SET_LINE - sizeof(uintptr_t)];
};

/*
 * Cells.  A cell of the gfn index is named by the address of its key,
 * keys[i] of a (wide) leaf: its end, slot and aux word lie at fixed
 * distances from there, so the cache check and a translation from the
 * cache need no arithmetic on a cell index.
 */
_Static_assert(offsetof(struct bpt_node, keys) == 0 &&
	       offsetof(struct bpt_wide, node) == 0,
	       "a cell's fields are found from its key's address");
/* vals[i] lies as far from vals[0] as keys[i] from keys[0] only if a
 * pointer is as wide as a key: true on the 64-bit targets, checked. */
_Static_assert(sizeof(void *) == sizeof(uint64_t),
	       "cell_slot() steps pointers by the key stride");

static inline uintptr_t set_cell(const struct bpt_node *leaf,
				 unsigned int pos)
{
	return (uintptr_t)&leaf->keys[pos];
}

static inline uint64_t cell_key(uintptr_t c)
{
	return *(const uint64_t *)c;
}

static inline uint64_t cell_end(uintptr_t c)
{
	return *(const uint64_t *)(c + offsetof(struct bpt_node, ends));
}

static inline struct memslot_slot *cell_slot(uintptr_t c)
{
	return *(struct memslot_slot *const *)(c +
					       offsetof(struct bpt_node, vals));
}

static inline uint64_t cell_aux(uintptr_t c)
{
	return *(const uint64_t *)(c + offsetof(struct bpt_wide, aux));
}

/*
 * The empty cache names a cell of this all-zero leaf: key 0 and end 0
 * hold no gfn, so the check needs no test for "empty" of its own, and
 * its slot is NULL.
 */
extern const struct bpt_wide set_cache_none;

static inline uintptr_t set_cache_empty(void)
{
	return set_cell(&set_cache_none.node, 0);
}

/*
 * Whether the cell the set-wide cache names (*@cell) holds @gfn.
 * Unsigned arithmetic: a gfn below the cell's key wraps and fails the
 * compare.
 */
static inline bool set_cache_cell(const struct memslot_set *s, uint64_t gfn,
				  uintptr_t *cell)
{
	uintptr_t c = atomic_load_explicit(&s->last_used,
					   memory_order_relaxed);
	uint64_t key = cell_key(c);

	*cell = c;
	return gfn - key < cell_end(c) - key;
}

/*
 * Search the gfn index for @gfn and, on a hit, make the set-wide cache
 * name the cell found (*@cell).  Return: the slot holding @gfn, or NULL.
 * The slot is read before the store, so that the compiler need not read
 * it again after a store it cannot prove apart from the leaf.
 */
static inline struct memslot_slot *set_search_cached(struct memslot_set *s,
						     uint64_t gfn,
						     uintptr_t *cell)
{
	const struct bpt_node *leaf;
	struct memslot_slot *slot;
	unsigned int pos;

	if (!bpt_cover_cell(&s->gfn, gfn, false, &leaf, &pos))
		return NULL;
	*cell = set_cell(leaf, pos);
	slot = cell_slot(*cell);
	atomic_store_explicit(&s->last_used, *cell, memory_order_relaxed);
	return slot;
}

/* The slot the set-wide cache names, or NULL (writer and tests). */
struct memslot_slot *set_cached_slot(const struct memslot_set *s);

/*
 * After the edits of a new layout, before it is published: point its
 * cache at cache_slot (what set_copy() took from the source's cache,
 * moved by the edits to a replaced slot's successor), found again in the
 * new gfn index.
 */
void set_cache_settle(struct memslot_set *s);

/* An empty layout for address space @as_id, or NULL. */
struct memslot_set *set_new_empty(struct mem_alloc *alloc, unsigned int as_id,
				  unsigned int page_shift);
/* Frees the header only (the trees' nodes belong to the pool). */
void set_free(struct mem_alloc *alloc, struct memslot_set *s);
/* Make @dst (any header's worth of memory) a copy of @src that shares its
 * trees; the generation is left to the publisher. */
void set_copy(struct memslot_set *dst, const struct memslot_set *src);
/* Give every node of the last layout to @pool (VM teardown). */
void set_clear(struct memslot_set *s, struct bpt_pool *pool);

/*
 * Set edits, on an unpublished copy in the pool's current epoch.  They
 * never fail: the caller has reserved nodes (set_nodes_for()).  The
 * set-wide last-used cache follows a replaced slot to its successor.
 */
void set_insert(struct memslot_set *s, struct bpt_pool *pool,
		struct memslot_slot *slot);
/* Remove @old; the cache moves to @successor (may be NULL). */
void set_remove(struct memslot_set *s, struct bpt_pool *pool,
		struct memslot_slot *old, struct memslot_slot *successor);
/* Replace @old by @new_slot: same id, hva and base gfn (an INVALID copy,
 * a flags change). */
void set_replace(struct memslot_set *s, struct bpt_pool *pool,
		 struct memslot_slot *old, struct memslot_slot *new_slot);
/*
 * A move in two steps, so that a batch can remove from the gfn index
 * before it inserts (see bpt_nodes_for_inserts): take @old out of the gfn
 * index, later put @new_slot (same id and hva) in and replace @old by it
 * everywhere else.
 */
void set_move_out(struct memslot_set *s, struct bpt_pool *pool,
		  struct memslot_slot *old);
void set_move_in(struct memslot_set *s, struct bpt_pool *pool,
		 struct memslot_slot *old, struct memslot_slot *new_slot);

/*
 * Add to *@plain and *@wide the nodes one build of a new layout from
 * @s may take: @edits slot edits of any kind, of which @gfn_inserts and
 * @hva_inserts insert into those indexes and @id_inserts add ids.
 */
void set_nodes_for(const struct memslot_set *s, size_t edits,
		   size_t gfn_inserts, size_t hva_inserts, size_t id_inserts,
		   size_t *plain, size_t *wide);

/*
 * Bulk inserts (a transaction of many creates): the three indexes are
 * rebuilt bottom up from their entries merged with @slots (struct
 * memslot_slot pointers, reordered here), O(n + k) instead of k descents
 * per index (radix sorts, in @scratch of set_bulk_scratch(k) bytes).
 * set_bulk_pays() says whether @k inserts should go this way; the caller
 * then reserves set_nodes_for_bulk() nodes on top of what its other edits
 * need.
 */
bool set_bulk_pays(const struct memslot_set *s, size_t k);
void set_nodes_for_bulk(const struct memslot_set *s, size_t k,
			size_t *plain, size_t *wide);
size_t set_bulk_scratch(size_t k);
void set_insert_bulk(struct memslot_set *s, struct bpt_pool *pool,
		     void **slots, size_t k, void *scratch);

/* A sort record: a key and a word that travels with it. */
struct set_keyed {
	uint64_t key;
	uint64_t val;
};

/*
 * Sort the @k records of @a by key, stably, in O(k) (radix); @tmp has
 * room for @k.  Return: @a or @tmp, whichever holds the sorted records.
 */
struct set_keyed *set_sort_keyed(struct set_keyed *a, struct set_keyed *tmp,
				 size_t k);

/*
 * The gfn index's aux word of a slot: its hva, which is page aligned (to
 * 512 bytes at least: page_shift >= 9), with in the low bits the two
 * flags a translation checks and whether the slot marks dirty pages
 * (mark_npages != 0: it logs and is not INVALID).  A translating lookup,
 * and a vCPU cache filled from the leaf, read it there and never touch
 * the slot.
 */
#define SET_AUX_INVALID 1ull
#define SET_AUX_READONLY 2ull
#define SET_AUX_MARKS 4ull
#define SET_AUX_FLAGS (SET_AUX_INVALID | SET_AUX_READONLY | SET_AUX_MARKS)

static inline uint64_t set_slot_aux(const struct memslot_slot *slot)
{
	return slot->hva |
	       (slot->flags & MEMSLOT_INVALID ? SET_AUX_INVALID : 0) |
	       (slot->flags & MEMSLOT_MEM_READONLY ? SET_AUX_READONLY : 0) |
	       (slot->mark_npages ? SET_AUX_MARKS : 0);
}

/*
 * memslot_slot_gfn_to_hva()'s verdicts from what the gfn index's leaf
 * holds of the slot containing @gfn (@base, @end, @aux): -EFAULT for an
 * INVALID slot, -EROFS for a write to a READONLY one, else 0 and *@hva.
 * The page offset is guest-controlled: it is clamped before it forms an
 * address.
 */
static inline int set_aux_to_hva(uint64_t base, uint64_t end, uint64_t aux,
				 uint64_t gfn, unsigned int shift, bool write,
				 uint64_t *hva)
{
	/* A multiply, not a select: one lea on x86-64 where the select
	 * took four instructions. */
	uint64_t bad = SET_AUX_INVALID | (uint64_t)write * SET_AUX_READONLY;
	uint64_t off;

	if (aux & bad)
		return aux & SET_AUX_INVALID ? -EFAULT : -EROFS;
	off = memslot_array_index_nospec(gfn - base, end - base);
	*hva = (aux & ~SET_AUX_FLAGS) + (off << shift);
	return 0;
}

/* The slot containing @gfn as the gfn index's leaf holds it (slot, base
 * gfn, end gfn, aux word), without the cache; false if none. */
static inline bool set_search_hit(const struct memslot_set *s, uint64_t gfn,
				  struct bpt_hit *h)
{
	return bpt_find_cover_hit(&s->gfn, gfn, h);
}

/* The slot containing @gfn, without the cache; NULL if none. */
static inline struct memslot_slot *set_search(const struct memslot_set *s,
					      uint64_t gfn)
{
	return bpt_find_cover(&s->gfn, gfn);
}

/* Same, or with @approx the slot just below a hole (or the first). */
struct memslot_slot *set_search_approx(const struct memslot_set *s,
				       uint64_t gfn);

/* The slot with id @id, or NULL. */
static inline struct memslot_slot *set_find_id(const struct memslot_set *s,
					       uint32_t id)
{
	return bpt_find_cover(&s->ids, id);
}

/* Whether a slot other than @id intersects [@start, @end). */
bool set_overlaps(const struct memslot_set *s, uint32_t id, uint64_t start,
		  uint64_t end);

#endif
