/* SPDX-License-Identifier: MIT */
/*
 * Private: deferred reclamation.  A deferred change publishes its layout
 * at once and hands what must wait for readers to a struct retire: the
 * old layout header, the index nodes the change replaced, the old slot
 * objects (with the ones to flush marked).  The VM's reclaim thread waits
 * for one grace period per group of queued records, then, with the
 * writer lock held, calls the flush hooks and the complete hooks, and
 * gives the memory back to the writer's spares (spares.h), which it also
 * restocks.  Records complete in queue order; tickets count them.
 */
#ifndef MEMSLOT_LIB_RECLAIM_H
#define MEMSLOT_LIB_RECLAIM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bptree.h"
#include "set.h"
#include "spares.h"

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

/* A zeroed record for up to @nslots slots, from @spares when it is a
 * small one, or NULL.  Context: writer lock held. */
struct retire *retire_alloc(struct mem_alloc *alloc, size_t nslots,
			    struct spares *spares);
/* An unused record: a small one goes back to @spares.  Context: writer
 * lock held. */
void retire_free(struct mem_alloc *alloc, struct retire *r,
		 struct spares *spares);
/* Bytes of a record for @cap slots. */
size_t retire_bytes(size_t cap);
/* Queue @r (filled); return its ticket. */
uint64_t reclaim_queue(struct reclaim *rc, struct retire *r);
/* Wait until @ticket completed.  Return: 0 or -EINVAL (never issued). */
int reclaim_wait(struct reclaim *rc, uint64_t ticket);
uint64_t reclaim_completed(struct reclaim *rc);
/* The tickets handed out so far (the last one's number). */
uint64_t reclaim_issued(struct reclaim *rc);
#endif
