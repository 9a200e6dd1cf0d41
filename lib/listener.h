/* SPDX-License-Identifier: MIT */
/*
 * Private: the change listeners of a VM.  The config's struct
 * memslot_callbacks, if any, is listener 0 (through adapters); the ones
 * memslot_listener_register() adds follow in registration order.
 * Context: writer lock held for every call.
 */
#ifndef MEMSLOT_LIB_LISTENER_H
#define MEMSLOT_LIB_LISTENER_H

#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <memslot/memslot.h>

#include "alloc.h"

struct listener {
	const void *key;		/* the caller's struct, or the config's */
	struct memslot_listener ops;	/* a copy, zero beyond the caller's size */
	/* Deferred changes queued before it came: their late hooks (flush,
	 * complete) are not its, as their prepare and commit were not. */
	uint64_t since;
};

struct listeners {
	struct listener *v;
	size_t n;
	size_t cap;
	struct memslot_callbacks cb;	/* the config's, copied by size */
	/* Listeners with a flush or complete hook: the reclaim thread takes
	 * the writer lock only when there is one to call. */
	_Atomic size_t late;
};

/* Adopt the config's callbacks (may be NULL).  Return: 0 or -ENOMEM. */
int listeners_init(struct listeners *ls, struct mem_alloc *alloc,
		   const struct memslot_callbacks *cb);
void listeners_destroy(struct listeners *ls, struct mem_alloc *alloc);
/* @since: tickets handed out so far.  Return: 0, -EEXIST or -ENOMEM. */
int listeners_add(struct listeners *ls, struct mem_alloc *alloc,
		  const struct memslot_listener *l, uint64_t since);
/* Return: 0 or -ENOENT. */
int listeners_del(struct listeners *ls, const struct memslot_listener *l);

/* Whether the reclaim thread has hooks to call (no lock needed). */
bool listeners_have_late(struct listeners *ls);

/* Whether a caller's struct is at least the first published version. */
bool listener_size_ok(const struct memslot_listener *l);
bool callbacks_size_ok(const struct memslot_callbacks *cb);

/* Dispatch one event to every listener.  Prepare stops at the first
 * failure and aborts the listeners before it; returns 0 or a negative
 * errno. */
int listeners_prepare(struct listeners *ls, struct memslot_vm *vm,
		      const struct memslot_slot *old,
		      const struct memslot_slot *new_slot,
		      enum memslot_change change);
void listeners_abort(struct listeners *ls, struct memslot_vm *vm,
		     const struct memslot_slot *old,
		     const struct memslot_slot *new_slot,
		     enum memslot_change change);
/* The late hooks of deferred change @ticket go to the listeners that
 * were registered when it was queued; a blocking change's flush passes
 * LISTENERS_ALL. */
#define LISTENERS_ALL UINT64_MAX
void listeners_flush(struct listeners *ls, struct memslot_vm *vm,
		     const struct memslot_slot *old, uint64_t ticket);
void listeners_commit(struct listeners *ls, struct memslot_vm *vm,
		      const struct memslot_slot *old,
		      const struct memslot_slot *new_slot,
		      enum memslot_change change);
void listeners_complete(struct listeners *ls, struct memslot_vm *vm,
			uint64_t ticket);

#endif
