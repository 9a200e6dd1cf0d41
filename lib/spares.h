/* SPDX-License-Identifier: MIT */
/*
 * Private: spare objects for deferred changes, one stock per kind (plain
 * and wide index nodes, slot objects, layout headers, small retire
 * records).
 *
 * A deferred change takes objects on the writer's thread; the reclaim
 * thread gets them back after a grace period.  If the writer paid for the
 * round trip through the allocator (malloc for what it takes, free for
 * what the thread could not hand back, thousands of objects at a time
 * after a burst), its latency would follow the allocator's: fresh pages
 * to fault in, heap trims, arena locks.  So the work is split:
 *
 *  - the reclaim thread owns the stock.  It puts returned objects in it,
 *    sizes it to what the writer took recently, allocates what is
 *    missing ahead of time and frees what is surplus;
 *  - the writer takes from its own list, then from one batch of at most
 *    SPARES_BATCH objects taken from the stock at a time (O(1), under a
 *    lock it only tries), allocates only when all are empty, and never
 *    frees: what it does not need goes back to its own list, and a
 *    surplus there is handed to the thread in one splice.
 *
 * Objects are linked through their first word while they are spares; the
 * first object of a batch in the stock lists the others (struct
 * spares_batch).
 *
 * Context: spares_take(), spares_put() and spares_settle() with the writer
 * lock held; spares_restock() on the reclaim thread; the stock's lock
 * guards what the two share.
 */
#ifndef MEMSLOT_LIB_SPARES_H
#define MEMSLOT_LIB_SPARES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "alloc.h"

enum spares_kind {
	SPARES_PLAIN,
	SPARES_WIDE,
	SPARES_SLOT,
	SPARES_SET,
	SPARES_RETIRE,
	SPARES_KINDS
};

/* A list of spare objects linked through their first word. */
struct spares_list {
	void *head;
	void *tail;		/* valid when @n > 0 */
	size_t n;
};

/*
 * A batch in the stock.  Its first object holds the addresses of the
 * others, so the writer reads one cache line per eight objects it takes
 * instead of each object's link (the thread touched them last: on the
 * writer's CPU each would be a miss).
 */
struct spares_batch {
	struct spares_batch *next;
	size_t n;			/* objects, this one included */
	void *obj[];			/* the n - 1 others */
};

/* Batches of spare objects, newest first; @tail is valid when @head is
 * set. */
struct spares_batches {
	struct spares_batch *head;
	struct spares_batch *tail;
	size_t n;			/* objects, in all batches */
};

/*
 * One kind of object.
 * @size: bytes of each object
 * @batch: objects per batch: what one object can list, at most
 *	SPARES_BATCH
 * @stock: filled by the reclaim thread, taken by the writer (lock)
 * @avail: @stock.n, stored under the lock, read by the writer without it
 * @surplus: what the writer had too many of, for the thread (lock)
 * @mine: the writer's own, put back by it
 * @cur: the writer's batch from the stock, taken from before the stock
 * @left: objects of @cur->obj not taken yet (@cur itself goes last)
 * @taken: objects the writer drew from the stock (whole batches) or the
 *	allocator, not its own list: what the stock has to provide; written
 *	by the writer, read by the thread
 * @seen: @taken at the thread's previous pass
 * @need: the thread's estimate of what the writer takes between passes
 */
struct spares_stock {
	size_t size;
	size_t batch;
	struct spares_batches stock;
	_Atomic size_t avail;
	struct spares_list surplus;
	struct spares_list mine;
	struct spares_batch *cur;
	size_t left;
	_Atomic size_t taken;
	size_t seen;
	size_t need;
};

struct spares {
	pthread_mutex_t lock;
	struct mem_alloc *alloc;
	struct spares_stock kind[SPARES_KINDS];
};

/* Most objects the writer takes from the stock at once. */
#define SPARES_BATCH 32
/* Most objects the writer keeps in its own list of a kind after a call;
 * beyond, they go to the thread. */
#define SPARES_MINE_MAX 128
/* The least and most the thread keeps in stock for one kind. */
#define SPARES_STOCK_MIN 64
#define SPARES_STOCK_MAX 32768

/* Empty stocks for objects of @sizes[kind] bytes (room for a struct
 * spares_batch and one address at least), allocated from @alloc. */
void spares_init(struct spares *sp, struct mem_alloc *alloc,
		 const size_t sizes[SPARES_KINDS]);
/* Free every spare.  Context: no thread uses @sp any more. */
void spares_destroy(struct spares *sp);

/* Append @from to @to, leaving @from empty.  O(1). */
void spares_list_splice(struct spares_list *to, struct spares_list *from);
/* Add @p to @l. */
void spares_list_push(struct spares_list *l, void *p);
/* Take one object from @l, or NULL. */
void *spares_list_pop(struct spares_list *l);

/*
 * spares_take() - an object of @kind for the writer (not zeroed)
 *
 * From the writer's list, then its batch; when both are empty, the next
 * batch of the stock if the lock is free; else a new object from the
 * allocator.
 * Context: writer lock held.
 * Return: the object, or NULL when the allocator fails.
 */
void *spares_take(struct spares *sp, enum spares_kind kind);

/* What the writer drew so far is not the thread's business: its first
 * pass sizes the stocks to what is drawn from now on (not to a VM's
 * initial layout, say).  Context: writer lock held, before the reclaim
 * thread starts. */
void spares_start(struct spares *sp);

/* An object of @kind the writer no longer needs (never reached by a
 * reader, or after a grace period).  Context: writer lock held. */
void spares_put(struct spares *sp, enum spares_kind kind, void *p);

/*
 * spares_settle() - the writer's end of a call: its lists of more than
 * SPARES_MINE_MAX objects go to the thread when @thread (it frees them at
 * its next pass); without a thread the surplus is freed here.
 * Context: writer lock held.
 */
void spares_settle(struct spares *sp, bool thread);

/*
 * spares_restock() - one pass of the reclaim thread
 * @back: per kind, objects whose grace period is over (emptied)
 *
 * Sizes each stock to what the writer took since the previous pass
 * (kept while it decays), puts returned objects in it up to that size,
 * allocates the rest of it and frees everything beyond.  Allocation
 * failures are not errors: the writer then allocates itself.
 * Context: the reclaim thread (or a test standing in for it).
 */
void spares_restock(struct spares *sp, struct spares_list back[SPARES_KINDS]);

/* The size the thread aims at for @kind's stock (for tests). */
size_t spares_target(const struct spares *sp, enum spares_kind kind);
/* Objects in @kind's stock now (for tests).  Context: the lock not held. */
size_t spares_stocked(struct spares *sp, enum spares_kind kind);
/* Objects of @kind the writer holds (for tests). */
size_t spares_held(const struct spares *sp, enum spares_kind kind);

#endif
