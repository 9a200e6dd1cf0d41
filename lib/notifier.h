/* SPDX-License-Identifier: MIT */
/*
 * Private: a VM's MMU-notifier state (KVM's mmu_invalidate_seq,
 * mmu_invalidate_in_progress, mmu_invalidate_range_start/end and
 * mn_active_invalidate_count) and its consumers.
 *
 * The fault side reads @seq, @in_progress and the range with acquire or
 * relaxed loads and never stores; everything is written under @lock by
 * the invalidation side.  Slot swaps take @lock too, and publish only
 * while no invalidation is active (notifier_swap_begin/end), so a start
 * and its end always walk the same layout.
 */
#ifndef MEMSLOT_LIB_NOTIFIER_H
#define MEMSLOT_LIB_NOTIFIER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <memslot/notifier.h>

#include "alloc.h"

struct retire;

#define NOTIFIER_LINE 64

struct notifier_consumer {
	const void *key;			/* the caller's struct */
	struct memslot_notifier_ops ops;	/* a copy, zero beyond its size */
};

struct notifier {
	/*
	 * Read by every fault: alone on a cache line so that writer-side
	 * fields around them in the VM do not evict it.  Padding rather than
	 * _Alignas: the VM comes from the allocator hook (16-byte promise).
	 */
	char pad_before[NOTIFIER_LINE];
	_Atomic uint64_t seq;		/* bumped at the end of each hit */
	_Atomic uint64_t in_progress;	/* invalidations that met a slot */
	_Atomic uint64_t range_start;	/* union of their gfn ranges; */
	_Atomic uint64_t range_end;	/* [UINT64_MAX, 0) when empty */
	char pad_after[NOTIFIER_LINE - 4 * sizeof(uint64_t)];
	/* Invalidation side, under @lock. */
	pthread_mutex_t lock;
	pthread_cond_t idle;		/* @active dropped to 0 */
	uint64_t active;		/* started and not yet ended */
	/* Deferred changes whose old slots are not flushed yet: consumers
	 * may still hold mappings made through them, so invalidations reach
	 * them too (reclaim.h, struct retire). */
	struct retire *pending;
	struct notifier_consumer *v;
	size_t n;
	size_t cap;
};

void notifier_init(struct notifier *nt);
/* Whether the calling thread is inside a notifier hook: it holds the
 * notifier lock, which a writer holding the writer lock may wait for. */
bool notifier_in_hook(void);
/* Free the consumer list; no invalidation may be active. */
void notifier_destroy(struct notifier *nt, struct mem_alloc *alloc);

/*
 * Around the store that publishes a layout: wait until no invalidation is
 * active and keep @lock until the store is done, so that no start can
 * walk the old layout and its end the new one (KVM holds
 * mn_invalidate_lock across the same store).
 * Context: writer lock held; not inside a notifier hook.
 */
void notifier_swap_begin(struct notifier *nt);
void notifier_swap_end(struct notifier *nt);

/* Inside notifier_swap_begin/end: the old slots of @r stay reachable by
 * invalidations until notifier_forget() removes them, once flushed. */
void notifier_pend(struct notifier *nt, struct retire *r);
/* Remove the records of @list (linked by next) from the pending list, at
 * a moment when no invalidation is active.  Context: the reclaim thread. */
void notifier_forget(struct notifier *nt, struct retire *list);

#endif
