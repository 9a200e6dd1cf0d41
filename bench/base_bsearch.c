/* SPDX-License-Identifier: MIT */
/*
 * Baseline "bsearch": the layout of rust-vmm's vm-memory GuestMemoryMmap
 * (Firecracker, cloud-hypervisor).  Slots are immutable objects held by a
 * vector of pointers sorted by base gfn; a lookup is a binary search (glibc
 * bsearch), and every change builds a new vector, the way vm-memory builds
 * a new GuestMemoryMmap that readers then swap to.  Moves and flag changes
 * make a new slot object.  hva ranges scan the vector: vm-memory has no
 * hva index.  Ids reach slots through a table (vm-memory has no ids; a VMM
 * keeps its own map).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "baselines.h"

struct base_bsearch {
	struct base_slot **vec;
	size_t n;
	struct base_slot **by_id;
	uint32_t max_ids;
};

struct base_bsearch *base_bsearch_create(uint32_t max_ids)
{
	struct base_bsearch *b = calloc(1, sizeof(*b));

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

void base_bsearch_destroy(struct base_bsearch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		free(b->vec[i]);
	free(b->vec);
	free(b->by_id);
	free(b);
}

int base_bsearch_load(struct base_bsearch *b, const struct base_slot *slots,
		      size_t n)
{
	struct base_slot **vec = malloc((n ? n : 1) * sizeof(*vec));

	if (!vec)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		vec[i] = malloc(sizeof(**vec));
		if (!vec[i]) {
			while (i-- > 0)
				free(vec[i]);
			free(vec);
			return -ENOMEM;
		}
		*vec[i] = slots[i];
		b->by_id[slots[i].id] = vec[i];
	}
	free(b->vec);
	b->vec = vec;
	b->n = n;
	return 0;
}

/* First index whose slot starts above @gfn. */
static size_t upper_bound(struct base_slot *const *v, size_t n, uint64_t gfn)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid]->base_gfn <= gfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Whether @s would overlap the neighbours around insertion point @pos. */
static int overlaps_at(struct base_slot *const *v, size_t n, size_t pos,
		       const struct base_slot *s)
{
	if (pos > 0 && v[pos - 1]->base_gfn + v[pos - 1]->npages > s->base_gfn)
		return 1;
	return pos < n && s->base_gfn + s->npages > v[pos]->base_gfn;
}

/*
 * Build and install a new vector: the current one without index @drop
 * (SIZE_MAX: none), with @add (may be NULL) inserted in order.
 */
static int rebuild(struct base_bsearch *b, size_t drop, struct base_slot *add)
{
	size_t n = b->n - (drop != SIZE_MAX), j = 0, pos;
	struct base_slot **vec = malloc((n + 1) * sizeof(*vec));

	if (!vec)
		return -ENOMEM;
	for (size_t i = 0; i < b->n; i++)
		if (i != drop)
			vec[j++] = b->vec[i];
	if (add) {
		pos = upper_bound(vec, n, add->base_gfn);
		if (overlaps_at(vec, n, pos, add)) {
			free(vec);
			return -EEXIST;
		}
		memmove(vec + pos + 1, vec + pos, (n - pos) * sizeof(*vec));
		vec[pos] = add;
		n++;
	}
	free(b->vec);
	b->vec = vec;
	b->n = n;
	return 0;
}

static struct base_slot *new_slot(const struct base_slot *from)
{
	struct base_slot *s = malloc(sizeof(*s));

	if (s)
		*s = *from;
	return s;
}

int base_bsearch_insert(struct base_bsearch *b, const struct base_slot *slot)
{
	struct base_slot *s;
	int err;

	if (slot->id >= b->max_ids)
		return -EINVAL;
	if (b->by_id[slot->id])
		return -EEXIST;
	s = new_slot(slot);
	if (!s)
		return -ENOMEM;
	err = rebuild(b, SIZE_MAX, s);
	if (err) {
		free(s);
		return err;
	}
	b->by_id[slot->id] = s;
	return 0;
}

/* Index of @s in the vector. */
static size_t index_of(const struct base_bsearch *b, const struct base_slot *s)
{
	return upper_bound(b->vec, b->n, s->base_gfn) - 1;
}

/* Replace the slot with id @id by @s (NULL: delete it). */
static int replace(struct base_bsearch *b, uint32_t id, struct base_slot *s)
{
	struct base_slot *old = id < b->max_ids ? b->by_id[id] : NULL;
	int err;

	if (!old) {
		free(s);
		return -ENOENT;
	}
	err = rebuild(b, index_of(b, old), s);
	if (err) {
		free(s);
		return err;
	}
	b->by_id[id] = s;
	free(old);
	return 0;
}

int base_bsearch_remove(struct base_bsearch *b, uint32_t id)
{
	return replace(b, id, NULL);
}

int base_bsearch_move(struct base_bsearch *b, uint32_t id, uint64_t base_gfn)
{
	struct base_slot *s;

	if (id >= b->max_ids || !b->by_id[id])
		return -ENOENT;
	s = new_slot(b->by_id[id]);
	if (!s)
		return -ENOMEM;
	s->base_gfn = base_gfn;
	return replace(b, id, s);
}

int base_bsearch_set_flags(struct base_bsearch *b, uint32_t id, uint32_t flags)
{
	struct base_slot *s;

	if (id >= b->max_ids || !b->by_id[id])
		return -ENOENT;
	s = new_slot(b->by_id[id]);
	if (!s)
		return -ENOMEM;
	s->flags = flags;
	return replace(b, id, s);
}

static int cmp_gfn(const void *key, const void *elem)
{
	uint64_t gfn = *(const uint64_t *)key;
	const struct base_slot *s = *(struct base_slot *const *)elem;

	if (gfn < s->base_gfn)
		return -1;
	return gfn - s->base_gfn >= s->npages;
}

const struct base_slot *base_bsearch_lookup(struct base_bsearch *b,
					    uint64_t gfn)
{
	struct base_slot **at = bsearch(&gfn, b->vec, b->n, sizeof(*b->vec),
					cmp_gfn);

	return at ? *at : NULL;
}

const struct base_slot *base_bsearch_by_id(const struct base_bsearch *b,
					   uint32_t id)
{
	return id < b->max_ids ? b->by_id[id] : NULL;
}

uint64_t base_bsearch_hva_pages(const struct base_bsearch *b, uint64_t start,
				uint64_t end)
{
	uint64_t pages = 0;

	for (size_t i = 0; i < b->n; i++)
		pages += base_hit_pages(b->vec[i], start, end);
	return pages;
}

size_t base_bsearch_bytes(const struct base_bsearch *b)
{
	return sizeof(*b) + b->max_ids * sizeof(*b->by_id) +
	       b->n * (sizeof(struct base_slot) + sizeof(*b->vec));
}
