/* SPDX-License-Identifier: MIT */
/*
 * Private: deferred reclamation.  A deferred change publishes its layout
 * at once and hands what must wait for readers to a struct retire: the
 * old layout header, the index nodes the change replaced, the old slot
 * objects (with the ones to flush marked).  The VM's reclaim thread waits
 * for one grace period per group of queued records, then, with the
 * writer lock held, calls the flush hooks and the complete hooks, and
 * frees everything.  Records complete in queue order; tickets count them.
 */
#ifndef MEMSLOT_LIB_RECLAIM_H
#define MEMSLOT_LIB_RECLAIM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bptree.h"
#include "set.h"

/*
 * Freed objects of one size (slot objects, layout headers) kept for reuse,
 * linked through their first word.  Handing them back to the writer
 * instead of the allocator keeps both threads out of malloc in steady
 * state: memory freed by one thread and allocated by another otherwise
 * keeps the allocator growing and faulting in fresh pages.
 */
struct recycled {
	void *head;
	size_t n;
};

/* Take one object, or NULL. */
void *recycled_pop(struct recycled *r);
/* Keep @p if fewer than @max are kept, else free it (@size bytes). */
void recycled_push(struct recycled *r, void *p, size_t max,
		   struct mem_alloc *alloc, size_t size);
/* Move every object of @from to @to. */
void recycled_move(struct recycled *to, struct recycled *from);
/* Free all but @keep objects of @size bytes. */
void recycled_trim(struct recycled *r, size_t keep, struct mem_alloc *alloc,
		   size_t size);

struct retire_slot {
	struct memslot_slot *slot;
	bool flush;		/* call the flush hooks for it first */
	bool free_dirty;	/* its dirty bitmap dies with it */
};

struct retire {
	struct retire *next;
	/* While its slots are not flushed yet: on the notifier's list of
	 * records whose old slots invalidations must still reach. */
	struct retire *pending_next;
	struct retire **pending_link;	/* what points to us, or NULL */
	bool pended;			/* set before queueing, never after */
	uint64_t ticket;
	struct memslot_set *set;	/* the replaced layout's header */
	struct bpt_node *nodes;		/* retired index nodes */
	size_t nslots;
	size_t cap;
	struct retire_slot slots[];	/* @cap entries */
};

struct reclaim {
	pthread_mutex_t lock;
	pthread_cond_t work;		/* records queued, or stop */
	pthread_cond_t done;		/* @completed moved */
	pthread_t thread;
	bool running;
	bool stop;
	struct retire *head;
	struct retire **tail;
	uint64_t issued;
	uint64_t completed;
	unsigned int waiters;		/* threads in reclaim_wait() */
	/* Retired index nodes whose grace period is over, for the writer's
	 * pool to take back (recycling them keeps the writer and this thread
	 * out of the allocator in steady state). */
	pthread_mutex_t spare_lock;	/* guards the three below */
	struct bpt_node *returned;
	size_t nreturned;
	struct recycled slots;		/* slot objects, likewise */
	struct recycled sets;		/* layout headers, likewise */
	struct recycled retires;	/* small retire records, likewise */
};

struct memslot_vm;

void reclaim_init(struct reclaim *rc);
/* Start the thread if it is not running.  Return: 0 or -EAGAIN. */
int reclaim_start(struct memslot_vm *vm);
/* Complete everything queued, stop the thread. */
void reclaim_stop(struct memslot_vm *vm);

/* Records for up to this many slots (one request, or a small batch) are
 * all one size and recycled like slot objects. */
#define RETIRE_SMALL 4

/* A record for up to @nslots slots, from @spares when it is a small one,
 * or NULL. */
struct retire *retire_alloc(struct mem_alloc *alloc, size_t nslots,
			    struct recycled *spares);
void retire_free(struct mem_alloc *alloc, struct retire *r);
/* Bytes of a record for @cap slots. */
size_t retire_bytes(size_t cap);
/* Queue @r (filled); return its ticket. */
uint64_t reclaim_queue(struct reclaim *rc, struct retire *r);
/* Wait until @ticket completed.  Return: 0 or -EINVAL (never issued). */
int reclaim_wait(struct reclaim *rc, uint64_t ticket);
uint64_t reclaim_completed(struct reclaim *rc);
/* Context: writer lock held.  Move the returned nodes into @pool and the
 * returned slot objects and headers to the writer's spares. */
void reclaim_recycle(struct reclaim *rc, struct bpt_pool *pool,
		     struct recycled *slots, struct recycled *sets,
		     struct recycled *retires);

#endif
