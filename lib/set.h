/* SPDX-License-Identifier: MIT */
/*
 * Private: one slot set of an address space, with its own indexes.
 *
 * Each address space has two sets sharing the slot objects.  Readers use
 * the active one; the writer changes only the inactive one, which no reader
 * can reach once the grace period after the last swap has ended.
 */
#ifndef MEMSLOT_LIB_SET_H
#define MEMSLOT_LIB_SET_H

#include <stdatomic.h>
#include <stdint.h>

#include "bptree.h"
#include "idtable.h"
#include "slot.h"

#define SET_GEN_IN_PROGRESS (1ull << 63)

/* A cache line's worth of bytes, to keep the reader-written field apart. */
#define SET_LINE 64

struct memslot_set {
	/* Written by the writer while readers look (swap), hence atomic. */
	_Atomic uint64_t generation;
	struct bpt gfn;		/* key: base gfn; value: slot */
	struct bpt hva;		/* key: hva; augmented with the hva end */
	unsigned int idx;	/* 0 or 1: this set's hh[] in the slots */
	unsigned int as_id;
	/*
	 * The set-wide last-used cache, stored to by readers (never RMW).
	 * Alone on its cache line: a store from one CPU must not evict the
	 * generation and index roots every other reader needs (vCPU-cache
	 * hits read the generation).  Padding, not _Alignas: the set lives
	 * in memory from the allocator hook, which promises 16 bytes.
	 */
	char pad_before[SET_LINE];
	struct memslot_slot *_Atomic last_used;
	char pad_after[SET_LINE - sizeof(void *)];
	struct idtable ids;	/* writer-side mostly; cold */
};

/* Return: 0 or -ENOMEM. */
int set_init(struct memslot_set *s, unsigned int idx, unsigned int as_id,
	     struct mem_alloc *alloc);
/* Frees the indexes (nodes go to @pool), not the slots. */
void set_destroy(struct memslot_set *s, struct bpt_pool *pool);

/*
 * Set edits.  They never fail: the caller has reserved index nodes
 * (bpt_nodes_for_inserts) and id-table room (idt_reserve) beforehand.
 * The set-wide last-used cache follows a replaced slot to its successor.
 */
void set_insert(struct memslot_set *s, struct bpt_pool *pool,
		struct memslot_slot *slot);
/* Remove @old; the cache moves to @successor (may be NULL). */
void set_remove(struct memslot_set *s, struct bpt_pool *pool,
		struct memslot_slot *old, struct memslot_slot *successor);
/* Replace @old by @new_slot: same id, hva and base gfn (an INVALID copy,
 * a flags change).  In place in every index: takes no nodes. */
void set_replace(struct memslot_set *s, struct memslot_slot *old,
		 struct memslot_slot *new_slot);
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

/* The slot containing @gfn, without the cache; NULL if none. */
static inline struct memslot_slot *set_search(const struct memslot_set *s,
					      uint64_t gfn)
{
	struct memslot_slot *slot = bpt_find_le(&s->gfn, gfn);

	if (slot && gfn - slot->base_gfn < slot->npages)
		return slot;
	return NULL;
}

/* Same, or with @approx the slot just below a hole (or the first). */
struct memslot_slot *set_search_approx(const struct memslot_set *s,
				       uint64_t gfn);

/* Whether a slot other than @id intersects [@start, @end). */
bool set_overlaps(const struct memslot_set *s, uint32_t id, uint64_t start,
		  uint64_t end);

#endif
