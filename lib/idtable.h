/* SPDX-License-Identifier: MIT */
/*
 * Private: a set's id -> slot table, a uthash hash keyed by slot id.
 *
 * uthash may allocate in two places: when a table is created and when it
 * grows.  Neither may happen half way through a slot change (the change has
 * already been published to readers by then), so:
 *  - the table is created with the set and always holds a sentinel entry,
 *    so it is never freed and recreated;
 *  - uthash's own growth is switched off (noexpand); the table grows only in
 *    idt_add(), into bucket arrays idt_reserve() allocated beforehand, in
 *    the phase where a failure can still be reported.
 * If a reservation is missing, idt_add() simply does not grow: chains get
 * longer, lookups stay correct.
 */
#ifndef MEMSLOT_LIB_IDTABLE_H
#define MEMSLOT_LIB_IDTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "slot.h"

#define IDT_MAX_SPARES 40

struct idtable {
	struct memslot_slot *head;	/* uthash head: the sentinel */
	struct memslot_slot sentinel;
	struct mem_alloc *alloc;
	unsigned int idx;		/* which hh[] this table uses */
	unsigned int nspares;
	void *spare[IDT_MAX_SPARES];	/* bucket arrays for growth */
	size_t spare_size[IDT_MAX_SPARES];
};

/* Return: 0 or -ENOMEM. */
int idt_init(struct idtable *t, unsigned int idx, struct mem_alloc *alloc);
/* Frees the table (not the slots). */
void idt_destroy(struct idtable *t);
/* Allocate what @adds more entries will need.  Return: 0 or -ENOMEM. */
int idt_reserve(struct idtable *t, size_t adds);
/* Free unused reservations. */
void idt_release(struct idtable *t);
void idt_add(struct idtable *t, struct memslot_slot *slot);
void idt_del(struct idtable *t, struct memslot_slot *slot);
/* Read-only; safe for concurrent readers of an unchanging table. */
struct memslot_slot *idt_find(const struct idtable *t, uint32_t id);
/* The table grows once it holds more than this many entries per bucket. */
#define IDT_LOAD 4

#endif
