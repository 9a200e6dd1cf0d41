/* SPDX-License-Identifier: MIT */
/*
 * Baseline "array": the slot index KVM used before 5.15.
 *
 * One block holds the slot count, a last-used index, an id-to-index table
 * of 16-bit entries for every possible id and the slot structs sorted by
 * base gfn.  Readers would hold a pointer to a block, so a change never
 * edits the live block: it copies the whole block, edits the copy and
 * replaces the old one.  DELETE and MOVE copy twice, because the INVALID
 * version of the slot is published before the final layout.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "baselines.h"

#define ARRAY_INVALID (1u << 16)

struct array_block {
	size_t n;
	size_t last_used;
	int16_t id_to_index[];	/* then the slots, see blk_slots() */
};

struct base_array {
	struct array_block *blk;
	uint32_t max_ids;
	size_t bytes;
};

static size_t blk_head(uint32_t max_ids)
{
	size_t sz = sizeof(struct array_block) + max_ids * sizeof(int16_t);

	return (sz + 15) & ~(size_t)15;
}

static struct base_slot *blk_slots(struct array_block *blk, uint32_t max_ids)
{
	return (struct base_slot *)((char *)blk + blk_head(max_ids));
}

static size_t blk_size(uint32_t max_ids, size_t n)
{
	return blk_head(max_ids) + n * sizeof(struct base_slot);
}

/* A copy of the current block with room for @n slots (n >= count - 1). */
static struct array_block *blk_dup(const struct base_array *b, size_t n)
{
	size_t keep = b->blk->n < n ? b->blk->n : n;
	struct array_block *blk = malloc(blk_size(b->max_ids, n));

	if (blk)
		memcpy(blk, b->blk, blk_size(b->max_ids, keep));
	return blk;
}

static void blk_install(struct base_array *b, struct array_block *blk,
			size_t n)
{
	free(b->blk);
	blk->n = n;
	b->blk = blk;
	b->bytes = blk_size(b->max_ids, n);
}

struct base_array *base_array_create(uint32_t max_ids)
{
	struct base_array *b;

	if (max_ids > INT16_MAX)
		return NULL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->max_ids = max_ids;
	b->blk = malloc(blk_size(max_ids, 0));
	if (!b->blk) {
		free(b);
		return NULL;
	}
	b->blk->n = 0;
	b->blk->last_used = 0;
	memset(b->blk->id_to_index, 0xff, max_ids * sizeof(int16_t));
	b->bytes = blk_size(max_ids, 0);
	return b;
}

void base_array_destroy(struct base_array *b)
{
	if (!b)
		return;
	free(b->blk);
	free(b);
}

/* Index tables follow the slots from @from on. */
static void reindex(struct base_array *b, struct array_block *blk, size_t from,
		    size_t n)
{
	struct base_slot *s = blk_slots(blk, b->max_ids);

	for (size_t i = from; i < n; i++)
		blk->id_to_index[s[i].id] = (int16_t)i;
}

int base_array_load(struct base_array *b, const struct base_slot *slots,
		    size_t n)
{
	struct array_block *blk = malloc(blk_size(b->max_ids, n));

	if (!blk)
		return -ENOMEM;
	memcpy(blk, b->blk, blk_head(b->max_ids));
	memcpy(blk_slots(blk, b->max_ids), slots, n * sizeof(*slots));
	blk->last_used = 0;
	blk_install(b, blk, n);
	reindex(b, blk, 0, n);
	return 0;
}

/* First index whose base gfn is above @gfn. */
static size_t upper_bound(const struct base_slot *s, size_t n, uint64_t gfn)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s[mid].base_gfn <= gfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Whether [base, base + npages) meets a slot other than index @skip. */
static bool overlaps(const struct base_slot *s, size_t n, uint64_t base,
		     uint64_t npages, size_t skip)
{
	size_t i = upper_bound(s, n, base + npages - 1);

	while (i-- > 0) {
		if (s[i].base_gfn + s[i].npages <= base)
			return false;
		if (i != skip)
			return true;
	}
	return false;
}

static int find_id(const struct base_array *b, uint32_t id)
{
	if (id >= b->max_ids)
		return -EINVAL;
	return b->blk->id_to_index[id] < 0 ? -ENOENT : b->blk->id_to_index[id];
}

int base_array_insert(struct base_array *b, const struct base_slot *slot)
{
	size_t n = b->blk->n, pos;
	struct array_block *blk;
	struct base_slot *s;

	if (slot->id >= b->max_ids)
		return -EINVAL;
	s = blk_slots(b->blk, b->max_ids);
	if (b->blk->id_to_index[slot->id] >= 0 ||
	    overlaps(s, n, slot->base_gfn, slot->npages, SIZE_MAX))
		return -EEXIST;
	blk = blk_dup(b, n + 1);
	if (!blk)
		return -ENOMEM;
	s = blk_slots(blk, b->max_ids);
	pos = upper_bound(s, n, slot->base_gfn);
	memmove(s + pos + 1, s + pos, (n - pos) * sizeof(*s));
	s[pos] = *slot;
	reindex(b, blk, pos, n + 1);
	blk_install(b, blk, n + 1);
	return 0;
}

/* Publish a copy with slot @i marked INVALID, as DELETE and MOVE do. */
static int publish_invalid(struct base_array *b, size_t i)
{
	struct array_block *blk = blk_dup(b, b->blk->n);

	if (!blk)
		return -ENOMEM;
	blk_slots(blk, b->max_ids)[i].flags |= ARRAY_INVALID;
	blk_install(b, blk, b->blk->n);
	return 0;
}

int base_array_remove(struct base_array *b, uint32_t id)
{
	int i = find_id(b, id), err;
	size_t n = b->blk->n;
	struct array_block *blk;
	struct base_slot *s;

	if (i < 0)
		return i;
	err = publish_invalid(b, (size_t)i);
	if (err)
		return err;
	blk = blk_dup(b, n - 1);
	if (!blk)
		return -ENOMEM;
	s = blk_slots(blk, b->max_ids);
	if ((size_t)i < n - 1)
		memcpy(s + i, blk_slots(b->blk, b->max_ids) + i + 1,
		       (n - 1 - i) * sizeof(*s));
	blk->id_to_index[id] = -1;
	reindex(b, blk, (size_t)i, n - 1);
	blk->last_used = 0;
	blk_install(b, blk, n - 1);
	return 0;
}

/* Shift entries so that slot @i, whose base changed, is in order again. */
static size_t resort(struct base_slot *s, size_t n, size_t i)
{
	struct base_slot moved = s[i];

	while (i + 1 < n && s[i + 1].base_gfn < moved.base_gfn) {
		s[i] = s[i + 1];
		i++;
	}
	while (i > 0 && s[i - 1].base_gfn > moved.base_gfn) {
		s[i] = s[i - 1];
		i--;
	}
	s[i] = moved;
	return i;
}

int base_array_move(struct base_array *b, uint32_t id, uint64_t base_gfn)
{
	int i = find_id(b, id), err;
	size_t n = b->blk->n, at;
	struct array_block *blk;
	struct base_slot *s;

	if (i < 0)
		return i;
	s = blk_slots(b->blk, b->max_ids);
	if (overlaps(s, n, base_gfn, s[i].npages, (size_t)i))
		return -EEXIST;
	err = publish_invalid(b, (size_t)i);
	if (err)
		return err;
	blk = blk_dup(b, n);
	if (!blk)
		return -ENOMEM;
	s = blk_slots(blk, b->max_ids);
	s[i].base_gfn = base_gfn;
	s[i].flags &= ~ARRAY_INVALID;
	at = resort(s, n, (size_t)i);
	reindex(b, blk, at < (size_t)i ? at : (size_t)i,
		(at < (size_t)i ? (size_t)i : at) + 1);
	blk_install(b, blk, n);
	return 0;
}

int base_array_set_flags(struct base_array *b, uint32_t id, uint32_t flags)
{
	int i = find_id(b, id);
	struct array_block *blk;

	if (i < 0)
		return i;
	blk = blk_dup(b, b->blk->n);
	if (!blk)
		return -ENOMEM;
	blk_slots(blk, b->max_ids)[i].flags = flags;
	blk_install(b, blk, b->blk->n);
	return 0;
}

const struct base_slot *base_array_lookup(struct base_array *b, uint64_t gfn)
{
	struct array_block *blk = b->blk;
	struct base_slot *s = blk_slots(blk, b->max_ids);
	/* Relaxed atomics, as KVM's atomic_read/atomic_set: vCPU threads
	 * share this hint (lookup_vcpu64 runs on several threads). */
	size_t i = __atomic_load_n(&blk->last_used, __ATOMIC_RELAXED);

	/* KVM checked its last-used slot before searching. */
	if (i < blk->n && gfn - s[i].base_gfn < s[i].npages)
		return &s[i];
	i = upper_bound(s, blk->n, gfn);
	if (i == 0 || gfn - s[i - 1].base_gfn >= s[i - 1].npages)
		return NULL;
	__atomic_store_n(&blk->last_used, i - 1, __ATOMIC_RELAXED);
	return &s[i - 1];
}

const struct base_slot *base_array_by_id(const struct base_array *b,
					 uint32_t id)
{
	int i = find_id(b, id);

	return i < 0 ? NULL : &blk_slots(b->blk, b->max_ids)[i];
}

uint64_t base_array_hva_pages(const struct base_array *b, uint64_t start,
			      uint64_t end)
{
	const struct base_slot *s = blk_slots(b->blk, b->max_ids);
	uint64_t pages = 0;

	for (size_t i = 0; i < b->blk->n; i++)
		pages += base_hit_pages(&s[i], start, end);
	return pages;
}

size_t base_array_bytes(const struct base_array *b)
{
	return sizeof(*b) + b->bytes;
}
