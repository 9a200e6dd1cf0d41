/* SPDX-License-Identifier: MIT */
/*
 * Private: an in-memory B+tree of (key, value) entries, 16 per node.
 *
 * Used for each set's gfn index (key = base gfn) and hva index (key = hva
 * start, augmented with the maximum hva end of every subtree so that range
 * queries skip subtrees that cannot overlap).  Entries are ordered by
 * (key, value address); keys may repeat (aliased hvas), pairs may not.
 * Keys must be below UINT64_MAX: unused key cells hold UINT64_MAX so that a
 * node search needs no entry count.
 *
 * Concurrency: copy on write.  A published tree is never changed: a writer
 * copies the tree header (struct bpt, a few words), starts a new epoch of
 * its pool, and edits the copy; every node on a path it changes that was
 * published in an earlier epoch is cloned first (its parent then points to
 * the clone) and the original goes on the pool's retired list.  Readers of
 * the old header keep seeing the old tree, whole; readers of the new one
 * see the new tree, whole.  Retired nodes may be reused only after a grace
 * period (bpt_pool_reclaim(), or bpt_pool_detach_retired() and
 * bpt_retired_free() later).  Nodes made in the current epoch are the
 * writer's own and are edited in place, so a batch of edits clones each
 * node at most once.  A pool that never starts an epoch edits in place.
 *
 * Memory: changes never allocate.  Before a change the writer reserves
 * nodes in a pool (bpt_pool_reserve(), the only call that can fail); a
 * change takes nodes from the pool and gives freed nodes back to it (or
 * retires them).  This is what lets a multi-step slot change never fail
 * half way.
 */
#ifndef MEMSLOT_LIB_BPTREE_H
#define MEMSLOT_LIB_BPTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <memslot/memslot.h>

#include "alloc.h"

#define BPT_FANOUT 16
#define BPT_MAX_DEPTH MEMSLOT_ITER_DEPTH
#define BPT_KEY_NONE UINT64_MAX

/*
 * A node.  In a leaf, vals[i] is the value of entry i and ends[i] the
 * (exclusive) end of its interval; in an inner node, vals[i] is child i,
 * keys[i] the smallest key in child i's subtree and ends[i] the largest
 * end in it.  A tree without an end function keeps ends[] zero.  Keeping
 * each entry's end in the leaf lets a lookup decide hit or miss without
 * touching the value (a slot object, usually a cache miss of its own).
 * Cells at and beyond n hold key BPT_KEY_NONE, value NULL and end 0.
 * keys[] comes first so a search touches two cache lines per level.
 * @epoch and @retired are the writer's and never read by readers: the
 * pool epoch the node was made in while it is in a tree (64 bits: it never
 * wraps), then the retired-list link once it left the writer's tree
 * (readers may still walk a retired node, so the list cannot reuse its
 * cells).
 */
struct bpt_node {
	uint64_t keys[BPT_FANOUT];
	void *vals[BPT_FANOUT];
	uint64_t ends[BPT_FANOUT];
	uint8_t n;
	bool leaf;
	bool wide;	/* a struct bpt_wide: see there */
	union {
		uint64_t epoch;
		struct bpt_node *retired;
	};
};

/*
 * A wide node: a node with one more array.  Every inner node is wide and
 * keeps, per child, the tie value of the child's first entry, so a descent
 * to an (key, tie) pair is O(log n) however many entries share the key.
 * The leaves of a tree with an aux function are wide too and keep each
 * entry's aux word, so that a lookup can answer from the leaf without
 * touching the value.
 */
struct bpt_wide {
	struct bpt_node node;
	union {
		uint64_t ties[BPT_FANOUT];	/* inner nodes */
		uint64_t aux[BPT_FANOUT];	/* leaves */
	};
};

/*
 * A tree.  @end is NULL for a plain tree; for an augmented tree it returns
 * the (exclusive) end of an entry's interval, derived from its value (and
 * kept in the leaves: the value's end must not change while it is in the
 * tree).
 * @depth counts levels: 0 for an empty tree, 1 when the root is a leaf.
 */
struct bpt {
	struct bpt_node *root;
	unsigned int depth;
	size_t count;
	size_t nodes;
	uint64_t (*end)(const void *val);
	/* Orders entries with equal keys; NULL orders them by address.  A
	 * tie that survives bpt_replace() (the hva index uses the slot id)
	 * makes a replacement an in-place store. */
	uint64_t (*tie)(const void *val);
	/* NULL for plain leaves; else leaves are wide and keep aux(val) of
	 * each entry (derived from the value, which must not change it while
	 * it is in the tree).  Set before the first insert. */
	uint64_t (*aux)(const void *val);
	/* Writer work: nodes visited and equal keys compared while locating
	 * entries to change.  Lets tests check that updates stay O(log n)
	 * with any number of equal keys. */
	uint64_t work;
};

/*
 * Spare nodes, so that tree changes cannot fail. Writer side only.  Two
 * sizes: plain nodes (the leaves of trees without aux) and wide nodes
 * (inner nodes, and the leaves of trees with aux).  Every count of
 * "plain" and "wide" nodes below means these two sizes.
 */
struct bpt_pool {
	struct mem_alloc *alloc;
	struct bpt_node *plain;	/* free list linked through vals[0] */
	struct bpt_node *wide;	/* likewise; each is a struct bpt_wide */
	size_t nplain;
	size_t nwide;
	uint64_t epoch;			/* nodes of this epoch are editable */
	struct bpt_node *retired;	/* replaced published nodes */
	size_t nretired;
};

/* An empty tree; @t->tie may be set before the first insert. */
void bpt_init(struct bpt *t, uint64_t (*end)(const void *val));
/* Give every node of @t to @pool, leaving @t empty.  Only for a tree that
 * shares no node with another (the last one, or a private one). */
void bpt_clear(struct bpt *t, struct bpt_pool *pool);

void bpt_pool_init(struct bpt_pool *pool, struct mem_alloc *alloc);
/* Make sure @pool holds at least @plain plain and @wide wide nodes.
 * Return: 0 or -ENOMEM (the pool keeps what it had). */
int bpt_pool_reserve(struct bpt_pool *pool, size_t plain, size_t wide);
/* Add @nd, a plain (@plain) or a wide node's worth of memory from
 * anywhere, as a spare. */
void bpt_pool_add(struct bpt_pool *pool, struct bpt_node *nd, bool plain);
/* A spare plain (@plain) or wide node if the pool holds more than @keep
 * of them, else NULL; the caller owns it. */
struct bpt_node *bpt_pool_take(struct bpt_pool *pool, bool plain, size_t keep);
/* Free spare nodes beyond @keep of each kind. */
void bpt_pool_trim(struct bpt_pool *pool, size_t keep);

/* Start a new epoch: every node made before is published from now on and
 * is cloned, not edited, by later changes. */
void bpt_pool_new_epoch(struct bpt_pool *pool);
/* After a grace period: retired nodes return to the pool. */
void bpt_pool_reclaim(struct bpt_pool *pool);
/* Take the retired list away from the pool (to free it after a grace
 * period that ends later, with bpt_retired_free()). */
struct bpt_node *bpt_pool_detach_retired(struct bpt_pool *pool);
/* Free a detached retired list through @alloc. */
void bpt_retired_free(struct mem_alloc *alloc, struct bpt_node *list);

/*
 * Add to *@plain and *@wide how many published nodes of @t @ops edits
 * (inserts, removals, replacements) in one epoch may clone.
 */
void bpt_nodes_for_cow(const struct bpt *t, size_t ops, size_t *plain,
		       size_t *wide);

/* Nodes one insert into @t may take: bpt_insert_plain(t) plain nodes (1
 * or 0) and bpt_insert_wide(t) wide ones. */
size_t bpt_insert_plain(const struct bpt *t);
size_t bpt_insert_wide(const struct bpt *t);

/*
 * Add to *@plain and *@wide an upper bound of the nodes @k inserts into
 * @t may take, in any order, possibly after removals (not mixed with them:
 * a removal between inserts may merge nodes that then split again).
 */
void bpt_nodes_for_inserts(const struct bpt *t, size_t k, size_t *plain,
			   size_t *wide);

/*
 * Add to *@plain and *@wide the nodes bpt_build_merge() takes to make
 * @t hold @count entries (full nodes on every level).
 */
void bpt_nodes_for_build(const struct bpt *t, size_t count, size_t *plain,
			 size_t *wide);

/*
 * Bulk insert: rebuild @t bottom up from its entries merged with the @k
 * values @vals, which are sorted in the tree's order (by @key(val), then
 * tie) and not present.  O(n + k) instead of k descents; leaves come out
 * full.  Every old node leaves the tree (reused if made in this epoch,
 * else retired), so the pool must hold bpt_nodes_for_build(count + k).
 */
void bpt_build_merge(struct bpt *t, struct bpt_pool *pool, void *const *vals,
		     size_t k, uint64_t (*key)(const void *));

/* Insert (@key, @val); the pair must not be present and the pool must hold
 * the nodes bpt_insert_plain(t) and bpt_insert_wide(t) say. */
void bpt_insert(struct bpt *t, struct bpt_pool *pool, uint64_t key, void *val);
/* Remove (@key, @val), which must be present; nodes go back to @pool.
 * Nodes that become sparse are merged with a neighbour. */
void bpt_remove(struct bpt *t, struct bpt_pool *pool, uint64_t key, void *val);
/* Replace the value of (@key, @old) by @new, which must order the same
 * (same tie); for an augmented tree @new's end is taken into account. */
void bpt_replace(struct bpt *t, struct bpt_pool *pool, uint64_t key,
		 void *old, void *new_val);

/*
 * The last cell i of @nd with keys[i] <= @key, or 0 if there is none:
 * keys are sorted, so i is the number of keys[1..15] that are <= @key.
 * Counted in two rounds of three independent compares (which quarter,
 * then where in it) rather than a 4-step binary search: each step of
 * that waited for the previous step's load, and a lookup is a chain of
 * such searches, one per level.  Pads (BPT_KEY_NONE) are never <= a
 * clamped key, so the count of used cells is not needed.  Flag additions,
 * not branches: a random lookup would mispredict them.  Inline: it is the
 * readers' hot path.
 */
static inline unsigned int bpt_node_search(const struct bpt_node *nd,
					   uint64_t key)
{
	const uint64_t *k = nd->keys;
	unsigned int q = (unsigned int)(k[4] <= key) + (k[8] <= key) +
			 (k[12] <= key);

	k += 4 * q;
	return 4 * q + (unsigned int)(k[1] <= key) + (k[2] <= key) +
	       (k[3] <= key);
}

/* Keys in a tree are below BPT_KEY_NONE, so a search for it equals one for
 * BPT_KEY_NONE - 1, which no pad satisfies.  Cheaper than clamping the
 * found index at every level. */
static inline uint64_t bpt_key_clamp(uint64_t key)
{
	return key - (key == BPT_KEY_NONE);
}

/*
 * Start loading the values (and ends) of a node while its keys are still
 * being compared: on a cold tree each level would otherwise wait for its
 * keys and then, in a second miss, for the chosen child pointer.  Both
 * halves of the 16 cells, so the pick costs no miss of its own.
 */
static inline void bpt_prefetch(const void *cells)
{
	__builtin_prefetch(cells);
	__builtin_prefetch((const char *)cells + BPT_FANOUT / 2 * 8);
}

/* The leaf whose cell bpt_node_search() picks for @key; @t not empty. */
static inline const struct bpt_node *bpt_leaf_for(const struct bpt *t,
						  uint64_t key)
{
	const struct bpt_node *nd = t->root;

	for (unsigned int l = t->depth; l > 1; l--) {
		bpt_prefetch(&nd->vals[0]);
		nd = (const struct bpt_node *)nd->vals[bpt_node_search(nd, key)];
	}
	bpt_prefetch(&nd->vals[0]);
	bpt_prefetch(&nd->ends[0]);
	return nd;
}

/* The value of the last entry whose key is <= @key, or NULL. */
static inline void *bpt_find_le(const struct bpt *t, uint64_t key)
{
	const struct bpt_node *nd;
	unsigned int i;

	if (!t->root)
		return NULL;
	key = bpt_key_clamp(key);
	nd = bpt_leaf_for(t, key);
	i = bpt_node_search(nd, key);
	return nd->keys[i] <= key ? nd->vals[i] : NULL;
}

/*
 * In an augmented tree, the leaf and cell of the entry whose interval
 * holds @key (the last entry with key <= @key, if @key is below its end):
 * true and *@leaf, *@pos set, or false.  Reads only nodes: the hit or miss
 * is decided by the leaf's end.  With @aux (a constant at every call: the
 * test folds away), the leaf's aux words are fetched while its keys are
 * searched.
 */
static inline bool bpt_cover_cell(const struct bpt *t, uint64_t key,
				  bool aux, const struct bpt_node **leaf,
				  unsigned int *pos)
{
	const struct bpt_node *nd;
	uint64_t k = bpt_key_clamp(key);
	unsigned int i;

	if (!t->root)
		return false;
	nd = bpt_leaf_for(t, k);
	if (aux) {
		bpt_prefetch(&((const struct bpt_wide *)nd)->aux[0]);
		__builtin_prefetch(
			&((const struct bpt_wide *)nd)->aux[BPT_FANOUT - 1]);
	}
	i = bpt_node_search(nd, k);
	if (!(nd->keys[i] <= key && key < nd->ends[i]))
		return false;
	*leaf = nd;
	*pos = i;
	return true;
}

/* The value of the entry whose interval holds @key, or NULL. */
static inline void *bpt_find_cover(const struct bpt *t, uint64_t key)
{
	const struct bpt_node *nd;
	unsigned int i;

	return bpt_cover_cell(t, key, false, &nd, &i) ? nd->vals[i] : NULL;
}

/* What a wide leaf holds of one entry. */
struct bpt_hit {
	void *val;
	uint64_t key;
	uint64_t end;
	uint64_t aux;
};

/*
 * bpt_find_cover() for a tree with aux: fills @h and returns true if an
 * entry's interval holds @key; false (and @h untouched) if none does.
 * The caller gets the entry's key, end and aux word without a load from
 * the value, one cache miss less on a cold lookup.
 */
static inline bool bpt_find_cover_hit(const struct bpt *t, uint64_t key,
				      struct bpt_hit *h)
{
	const struct bpt_node *nd;
	unsigned int i;

	if (!bpt_cover_cell(t, key, true, &nd, &i))
		return false;
	h->val = nd->vals[i];
	h->key = nd->keys[i];
	h->end = nd->ends[i];
	h->aux = ((const struct bpt_wide *)nd)->aux[i];
	return true;
}

/* The value of the first entry, or NULL for an empty tree. */
void *bpt_first(const struct bpt *t);

/*
 * A position in a tree: the node and cell index at each level, root first.
 * depth == 0 means "past the end".  The layout matches the private fields
 * of the public iterators (memslot_gfn_iter, memslot_hva_iter).
 */
struct bpt_iter {
	const void *node[BPT_MAX_DEPTH];
	uint8_t pos[BPT_MAX_DEPTH];
	int depth;
};

/* Position @it at the last entry with key <= @key, or at the first entry
 * if there is none (past the end for an empty tree). */
void bpt_iter_seek_le(struct bpt_iter *it, const struct bpt *t, uint64_t key);
/* The value at @it, or NULL past the end; then advance @it. */
void *bpt_iter_next(struct bpt_iter *it);

/*
 * Walk entries with key < @end and end(val) > @start, ascending, in an
 * augmented tree.  Subtrees whose max end is <= @start or whose smallest
 * key is >= @end are skipped, so a query costs O(log n + hits).
 */
void bpt_overlap_init(struct bpt_iter *it, const struct bpt *t,
		      uint64_t start, uint64_t end);
/* The next hit, or NULL at the end.  Leaves keep their entries' ends, so
 * the walk needs no tree callbacks. */
void *bpt_overlap_next(struct bpt_iter *it, uint64_t start, uint64_t end);

/* What bpt_check() found broken (negated). */
enum bpt_check_error {
	BPT_CHECK_ROOT = 1,	/* root, depth and count disagree */
	BPT_CHECK_FILL,		/* n out of range, or a root inner with 1 child */
	BPT_CHECK_LEVEL,	/* a leaf above the bottom or an inner at it */
	BPT_CHECK_PAD,		/* an unused cell is not a pad */
	BPT_CHECK_CELL,		/* a used cell holds BPT_KEY_NONE or NULL */
	BPT_CHECK_ORDER,	/* entries not strictly ascending */
	BPT_CHECK_SEPARATOR,	/* an inner key is not its child's first key */
	BPT_CHECK_MAX_END,	/* an end is not its entry's end or child's max */
	BPT_CHECK_TIE,		/* an inner tie is not its child's first tie */
	BPT_CHECK_COUNT,	/* t->count is not the number of entries */
	BPT_CHECK_WIDE,		/* a node's width is not its level's */
	BPT_CHECK_AUX,		/* a leaf's aux word is not aux(value) */
};

/* Check every invariant (order, counts, separators, max ends, fill, pads);
 * return 0 or -(enum bpt_check_error) naming the first broken one.  For
 * tests. */
int bpt_check(const struct bpt *t);

#endif
