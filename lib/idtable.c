/* SPDX-License-Identifier: MIT */
/* A set's id -> slot table on uthash; see idtable.h for the growth rules. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "idtable.h"

/*
 * uthash's allocation macros take no context, so the table being changed
 * is named here around every uthash call that may allocate or free.
 * Writers are serialised per VM, but different VMs may be changed on
 * different threads at once, hence thread-local.
 */
static _Thread_local struct idtable *idt_uthash_current;

static size_t bucket_bytes(unsigned int nbuckets)
{
	return (size_t)nbuckets * sizeof(UT_hash_bucket);
}

/* Hand out a reserved bucket array of exactly @size bytes, if any. */
static void *take_spare(struct idtable *t, size_t size)
{
	for (unsigned int i = 0; i < t->nspares; i++) {
		if (t->spare_size[i] != size)
			continue;
		void *p = t->spare[i];

		t->nspares--;
		t->spare[i] = t->spare[t->nspares];
		t->spare_size[i] = t->spare_size[t->nspares];
		return p;
	}
	return NULL;
}

void *idt_uthash_malloc(size_t size)
{
	struct idtable *t = idt_uthash_current;
	void *p = take_spare(t, size);

	return p ? p : mem_malloc(t->alloc, size);
}

void idt_uthash_free(void *ptr, size_t size)
{
	mem_free(idt_uthash_current->alloc, ptr, size);
}

int idt_init(struct idtable *t, unsigned int idx, struct mem_alloc *alloc)
{
	struct memslot_slot *s = &t->sentinel;

	memset(t, 0, sizeof(*t));
	t->alloc = alloc;
	t->idx = idx;
	s->id = SLOT_ID_SENTINEL;
	idt_uthash_current = t;
	HASH_ADD(hh[idx], t->head, id, sizeof(s->id), s);
	if (!t->head)
		return -ENOMEM;
	t->head->hh[idx].tbl->noexpand = 1;
	return 0;
}

void idt_destroy(struct idtable *t)
{
	if (!t->head)
		return;
	idt_release(t);
	idt_uthash_current = t;
	HASH_CLEAR(hh[t->idx], t->head);
}

void idt_release(struct idtable *t)
{
	while (t->nspares) {
		t->nspares--;
		mem_free(t->alloc, t->spare[t->nspares],
			 t->spare_size[t->nspares]);
	}
}

static bool needs_growth(size_t items, unsigned int nbuckets)
{
	return items > (size_t)nbuckets * IDT_LOAD;
}

int idt_reserve(struct idtable *t, size_t adds)
{
	const UT_hash_table *tbl = t->head->hh[t->idx].tbl;
	size_t items = tbl->num_items + adds;
	unsigned int nbuckets = tbl->num_buckets;
	unsigned int have = t->nspares;

	/* One doubling per step, as idt_add() grows; skip what we hold. */
	while (needs_growth(items, nbuckets) && nbuckets < (1u << 30)) {
		nbuckets *= 2;
		if (have) {
			have--;
			continue;
		}
		if (t->nspares == IDT_MAX_SPARES)
			break;
		void *p = mem_malloc(t->alloc, bucket_bytes(nbuckets));

		if (!p)
			return -ENOMEM;
		t->spare[t->nspares] = p;
		t->spare_size[t->nspares++] = bucket_bytes(nbuckets);
	}
	return 0;
}

/* Double the bucket array if the table is too loaded and a reserved array
 * of the right size is at hand. */
static void maybe_grow(struct idtable *t)
{
	UT_hash_table *tbl = t->head->hh[t->idx].tbl;
	size_t next = bucket_bytes(tbl->num_buckets * 2);
	int oomed = 0;

	if (!needs_growth(tbl->num_items + 1, tbl->num_buckets))
		return;
	for (unsigned int i = 0; i < t->nspares; i++) {
		if (t->spare_size[i] != next)
			continue;
		HASH_EXPAND_BUCKETS(&t->head->hh[t->idx], tbl, oomed);
		tbl->noexpand = 1;
		return;
	}
	(void)oomed;
}

void idt_add(struct idtable *t, struct memslot_slot *slot)
{
	idt_uthash_current = t;
	maybe_grow(t);
	HASH_ADD(hh[t->idx], t->head, id, sizeof(slot->id), slot);
}

void idt_del(struct idtable *t, struct memslot_slot *slot)
{
	idt_uthash_current = t;
	HASH_DELETE(hh[t->idx], t->head, slot);
}

struct memslot_slot *idt_find(const struct idtable *t, uint32_t id)
{
	struct memslot_slot *head = t->head, *out;

	HASH_FIND(hh[t->idx], head, &id, sizeof(id), out);
	return out;
}
