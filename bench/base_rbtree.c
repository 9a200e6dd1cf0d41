/* SPDX-License-Identifier: MIT */
/*
 * Baseline "rbtree": KVM's gfn index since 5.15, a red-black tree of slots
 * keyed by base gfn, here glibc's tsearch (a red-black tree).  Slots are
 * separate objects reached by id through a table, as KVM's id hash does.
 * A flags change makes a new slot object and swaps it into the node, a
 * move removes and reinserts.  hva ranges walk every slot in order: KVM
 * had no hva index before its interval tree.
 *
 * Slots never overlap, so comparing gfn ranges ("equal" when they meet)
 * orders the tree by base gfn and lets tfind() look up the slot that
 * contains a gfn with a one-page key.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <search.h>
#include <stdlib.h>

#include "baselines.h"

/* glibc's tree node: key pointer, two child pointers (colour in a bit). */
#define RB_NODE_BYTES (3 * sizeof(void *))

struct base_rbtree {
	void *root;
	struct base_slot **by_id;
	uint32_t max_ids;
	size_t n;
};

static int cmp_range(const void *pa, const void *pb)
{
	const struct base_slot *a = pa, *b = pb;

	if (a->base_gfn + a->npages <= b->base_gfn)
		return -1;
	if (b->base_gfn + b->npages <= a->base_gfn)
		return 1;
	return 0;
}

struct base_rbtree *base_rbtree_create(uint32_t max_ids)
{
	struct base_rbtree *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->by_id = calloc(max_ids, sizeof(*b->by_id));
	if (!b->by_id) {
		free(b);
		return NULL;
	}
	b->max_ids = max_ids;
	return b;
}

void base_rbtree_destroy(struct base_rbtree *b)
{
	if (!b)
		return;
	tdestroy(b->root, free);
	free(b->by_id);
	free(b);
}

int base_rbtree_insert(struct base_rbtree *b, const struct base_slot *slot)
{
	struct base_slot *s, **at;

	if (slot->id >= b->max_ids)
		return -EINVAL;
	if (b->by_id[slot->id])
		return -EEXIST;
	s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	*s = *slot;
	at = tsearch(s, &b->root, cmp_range);
	if (!at || *at != s) {
		free(s);
		return at ? -EEXIST : -ENOMEM;
	}
	b->by_id[s->id] = s;
	b->n++;
	return 0;
}

int base_rbtree_load(struct base_rbtree *b, const struct base_slot *slots,
		     size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int err = base_rbtree_insert(b, &slots[i]);

		if (err)
			return err;
	}
	return 0;
}

static struct base_slot *find_id(const struct base_rbtree *b, uint32_t id)
{
	return id < b->max_ids ? b->by_id[id] : NULL;
}

int base_rbtree_remove(struct base_rbtree *b, uint32_t id)
{
	struct base_slot *s = find_id(b, id);

	if (!s)
		return -ENOENT;
	tdelete(s, &b->root, cmp_range);
	b->by_id[id] = NULL;
	b->n--;
	free(s);
	return 0;
}

int base_rbtree_move(struct base_rbtree *b, uint32_t id, uint64_t base_gfn)
{
	struct base_slot *s = find_id(b, id), **at;
	uint64_t old_base;

	if (!s)
		return -ENOENT;
	old_base = s->base_gfn;
	tdelete(s, &b->root, cmp_range);
	s->base_gfn = base_gfn;
	at = tsearch(s, &b->root, cmp_range);
	if (at && *at == s)
		return 0;
	/* Overlap (or no memory): put the slot back where it was. */
	s->base_gfn = old_base;
	at = tsearch(s, &b->root, cmp_range);
	return at ? -EEXIST : -ENOMEM;
}

int base_rbtree_set_flags(struct base_rbtree *b, uint32_t id, uint32_t flags)
{
	struct base_slot *old = find_id(b, id), *s, **at;

	if (!old)
		return -ENOENT;
	s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	*s = *old;
	s->flags = flags;
	/* Same range, so the node stays where it is: swap its key. */
	at = tfind(old, &b->root, cmp_range);
	*at = s;
	b->by_id[id] = s;
	free(old);
	return 0;
}

const struct base_slot *base_rbtree_lookup(struct base_rbtree *b,
					   uint64_t gfn)
{
	struct base_slot key = { .base_gfn = gfn, .npages = 1 };
	struct base_slot **at = tfind(&key, &b->root, cmp_range);

	return at ? *at : NULL;
}

const struct base_slot *base_rbtree_by_id(const struct base_rbtree *b,
					  uint32_t id)
{
	return find_id(b, id);
}

struct hva_walk {
	uint64_t start;
	uint64_t end;
	uint64_t pages;
};

static void hva_visit(const void *node, VISIT which, void *closure)
{
	const struct base_slot *s = *(struct base_slot *const *)node;
	struct hva_walk *w = closure;

	if (which == postorder || which == leaf)
		w->pages += base_hit_pages(s, w->start, w->end);
}

uint64_t base_rbtree_hva_pages(const struct base_rbtree *b, uint64_t start,
			       uint64_t end)
{
	struct hva_walk w = { .start = start, .end = end };

	twalk_r(b->root, hva_visit, &w);
	return w.pages;
}

size_t base_rbtree_bytes(const struct base_rbtree *b)
{
	return sizeof(*b) + b->max_ids * sizeof(*b->by_id) +
	       b->n * (sizeof(struct base_slot) + RB_NODE_BYTES);
}
