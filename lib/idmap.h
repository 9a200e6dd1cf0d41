/* SPDX-License-Identifier: MIT */
/*
 * Private: which user ids of an address space are in use, as a bitmap with
 * summary levels (a bit one level up is set when the 64 bits below it are
 * all set), so the lowest free id is found in O(log64 n).
 *
 * Only ids below @cap are tracked.  The lowest free id is never above the
 * number of ids in use, so @cap grows with the slot count (doubling, in the
 * writer's fallible phase) instead of covering a 32-bit id space up front.
 * Writer side only.
 */
#ifndef MEMSLOT_LIB_IDMAP_H
#define MEMSLOT_LIB_IDMAP_H

#include <stdint.h>

#include "alloc.h"

#define IDMAP_MAX_LEVELS 7

struct idmap {
	struct mem_alloc *alloc;
	uint64_t *words;		/* every level, level 0 first */
	uint64_t nwords;
	uint64_t cap;			/* ids tracked: [0, cap) */
	uint64_t limit;			/* user ids: [0, limit) */
	unsigned int levels;
	uint64_t off[IDMAP_MAX_LEVELS];	/* first word of each level */
	uint64_t len[IDMAP_MAX_LEVELS];	/* words in each level */
};

void idmap_init(struct idmap *m, struct mem_alloc *alloc, uint64_t limit);
void idmap_destroy(struct idmap *m);
/*
 * Make sure @used ids in use still leave a tracked free id (or cover every
 * user id).  @each_used(ctx, fn, map) must call fn(map, id) for every id in
 * use; it is called only when the map is rebuilt larger.
 * Return: 0 or -ENOMEM (the map is unchanged).
 */
int idmap_reserve(struct idmap *m, uint64_t used,
		  void (*each_used)(void *ctx, void (*fn)(struct idmap *, uint64_t),
				    struct idmap *map),
		  void *ctx);
void idmap_set(struct idmap *m, uint64_t id);
void idmap_clear(struct idmap *m, uint64_t id);
/* Return: 0 with *@id set, or -ENOSPC if every user id is in use. */
int idmap_lowest_free(const struct idmap *m, uint64_t *id);

#endif
