/* SPDX-License-Identifier: MIT */
/* The reclaim thread of deferred changes; see reclaim.h. */
/* clock_gettime() under -std=c11; SCHED_BATCH */
#define _GNU_SOURCE

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "reclaim.h"
#include "vm.h"

void reclaim_init(struct reclaim *rc)
{
	memset(rc, 0, sizeof(*rc));
	pthread_mutex_init(&rc->lock, NULL);
	pthread_mutex_init(&rc->spare_lock, NULL);
	pthread_cond_init(&rc->work, NULL);
	pthread_cond_init(&rc->done, NULL);
	rc->tail = &rc->head;
}

size_t retire_bytes(size_t cap)
{
	return sizeof(struct retire) + cap * sizeof(struct retire_slot);
}

struct retire *retire_alloc(struct mem_alloc *alloc, size_t nslots,
			    struct recycled *spares)
{
	size_t cap = nslots <= RETIRE_SMALL ? RETIRE_SMALL : nslots;
	struct retire *r = cap == RETIRE_SMALL ? recycled_pop(spares) : NULL;

	if (r)
		memset(r, 0, retire_bytes(cap));
	else
		r = mem_zalloc(alloc, retire_bytes(cap));
	if (r)
		r->cap = cap;
	return r;
}

void retire_free(struct mem_alloc *alloc, struct retire *r)
{
	if (r)
		mem_free(alloc, r, retire_bytes(r->cap));
}

uint64_t reclaim_queue(struct reclaim *rc, struct retire *r)
{
	uint64_t ticket;

	pthread_mutex_lock(&rc->lock);
	ticket = r->ticket = ++rc->issued;
	r->next = NULL;
	/* Wake the thread for the first record only: it gathers more for a
	 * while (take_all()), so a burst of changes costs the writers one
	 * wake-up, not one each. */
	if (!rc->head || rc->waiters)
		pthread_cond_signal(&rc->work);
	*rc->tail = r;
	rc->tail = &r->next;
	pthread_mutex_unlock(&rc->lock);
	/* @r may be freed by now: the reclaim thread owns it. */
	return ticket;
}

/* The hooks of @list, in queue order, with the writer lock held (once
 * for the whole list); skipped when no listener has such hooks. */
static void call_hooks(struct memslot_vm *vm, struct retire *list)
{
	if (!listeners_have_late(&vm->listeners))
		return;
	vm_writer_lock_hooks(vm);
	for (struct retire *r = list; r; r = r->next) {
		for (size_t i = 0; i < r->nslots; i++) {
			if (r->slots[i].flush)
				listeners_flush(&vm->listeners, vm,
						r->slots[i].slot);
		}
		listeners_complete(&vm->listeners, vm, r->ticket);
	}
	vm_writer_unlock(vm);
}

/* Most nodes a VM keeps for recycling; beyond, they are freed. */
#define RETURNED_MAX 4096

/* What one pass of the thread gives back, gathered without a lock. */
struct giveback {
	struct bpt_node *nodes;
	struct recycled slots;
	struct recycled sets;
	struct recycled retires;
};

static void nodes_prepend(struct bpt_node **to, size_t *n,
			  struct bpt_node *list, size_t max,
			  struct bpt_node **rest)
{
	struct bpt_node *nd;

	while ((nd = list) && *n < max) {
		list = nd->retired;
		nd->retired = *to;
		*to = nd;
		(*n)++;
	}
	*rest = list;
}

void *recycled_pop(struct recycled *r)
{
	void *p = r->head;

	if (p) {
		r->head = *(void **)p;
		r->n--;
	}
	return p;
}

void recycled_push(struct recycled *r, void *p, size_t max,
		   struct mem_alloc *alloc, size_t size)
{
	if (r->n >= max) {
		mem_free(alloc, p, size);
		return;
	}
	*(void **)p = r->head;
	r->head = p;
	r->n++;
}

void recycled_move(struct recycled *to, struct recycled *from)
{
	void *p;

	while ((p = recycled_pop(from))) {
		*(void **)p = to->head;
		to->head = p;
		to->n++;
	}
}

void recycled_trim(struct recycled *r, size_t keep, struct mem_alloc *alloc,
		   size_t size)
{
	while (r->n > keep)
		mem_free(alloc, recycled_pop(r), size);
}

/* Opportunistic: when the thread is handing objects back right now, the
 * writer does not wait for it and takes them at its next change. */
void reclaim_recycle(struct reclaim *rc, struct bpt_pool *pool,
		     struct recycled *slots, struct recycled *sets,
		     struct recycled *retires)
{
	struct bpt_node *list;

	if (pthread_mutex_trylock(&rc->spare_lock))
		return;
	list = rc->returned;
	rc->returned = NULL;
	rc->nreturned = 0;
	recycled_move(slots, &rc->slots);
	recycled_move(sets, &rc->sets);
	recycled_move(retires, &rc->retires);
	pthread_mutex_unlock(&rc->spare_lock);
	bpt_pool_adopt(pool, list);
}

/* Most slot objects and headers kept for the writer to reuse. */
#define RECYCLED_SLOTS_MAX 1024
#define RECYCLED_SETS_MAX 64

/* The memory of @r, which no reader and no hook can reach any more:
 * collected in @gb to go back to the writer for reuse. */
static void free_one(struct memslot_vm *vm, struct retire *r,
		     struct giveback *gb)
{
	struct bpt_node *rest;
	size_t none = 0;

	nodes_prepend(&gb->nodes, &none, r->nodes, SIZE_MAX, &rest);
	for (size_t i = 0; i < r->nslots; i++) {
		if (r->slots[i].free_dirty)
			dirty_free(&vm->alloc, r->slots[i].slot);
		recycled_push(&gb->slots, r->slots[i].slot, SIZE_MAX, NULL, 0);
	}
	recycled_push(&gb->sets, r->set, SIZE_MAX, NULL, 0);
	if (r->cap == RETIRE_SMALL)
		recycled_push(&gb->retires, r, SIZE_MAX, NULL, 0);
	else
		retire_free(&vm->alloc, r);
}

/* Hand @gb to the writer under one short lock; free what is over the
 * limits outside it. */
static void give_back(struct memslot_vm *vm, struct giveback *gb)
{
	struct reclaim *rc = &vm->reclaim;
	struct bpt_node *rest;
	void *p;

	pthread_mutex_lock(&rc->spare_lock);
	nodes_prepend(&rc->returned, &rc->nreturned, gb->nodes, RETURNED_MAX,
		      &rest);
	while (rc->slots.n < RECYCLED_SLOTS_MAX &&
	       (p = recycled_pop(&gb->slots)))
		recycled_push(&rc->slots, p, SIZE_MAX, NULL, 0);
	while (rc->sets.n < RECYCLED_SETS_MAX && (p = recycled_pop(&gb->sets)))
		recycled_push(&rc->sets, p, SIZE_MAX, NULL, 0);
	while (rc->retires.n < RECYCLED_SETS_MAX &&
	       (p = recycled_pop(&gb->retires)))
		recycled_push(&rc->retires, p, SIZE_MAX, NULL, 0);
	pthread_mutex_unlock(&rc->spare_lock);
	bpt_retired_free(&vm->alloc, rest);
	recycled_trim(&gb->slots, 0, &vm->alloc, sizeof(struct memslot_slot));
	recycled_trim(&gb->sets, 0, &vm->alloc, sizeof(struct memslot_set));
	recycled_trim(&gb->retires, 0, &vm->alloc, retire_bytes(RETIRE_SMALL));
}

/* How long the thread gathers records after the first, unless someone
 * waits for one: one grace period then covers them all. */
#define GATHER_NS 1000000L

static void gather(struct reclaim *rc)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += GATHER_NS;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_nsec -= 1000000000L;
		until.tv_sec++;
	}
	while (!rc->stop && !rc->waiters &&
	       pthread_cond_timedwait(&rc->work, &rc->lock, &until) == 0)
		;
}

/* Wait for queued records (NULL once asked to stop with none left). */
static struct retire *take_all(struct reclaim *rc)
{
	struct retire *list;

	pthread_mutex_lock(&rc->lock);
	while (!rc->head && !rc->stop)
		pthread_cond_wait(&rc->work, &rc->lock);
	gather(rc);
	list = rc->head;
	rc->head = NULL;
	rc->tail = &rc->head;
	pthread_mutex_unlock(&rc->lock);
	return list;
}

/*
 * Reclaiming is background work: as a batch thread it never preempts the
 * thread that woke it (a writer, or a vCPU on the same CPU) when it wakes
 * up, and its grace-period wait does not steal the waker's time slice.
 * Best effort: where the policy is missing the thread keeps the default.
 */
static void be_background(void)
{
#ifdef SCHED_BATCH
	struct sched_param sp = { .sched_priority = 0 };

	pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
#endif
}

static void *reclaim_main(void *arg)
{
	struct memslot_vm *vm = arg;
	struct reclaim *rc = &vm->reclaim;
	struct retire *list, *next;
	uint64_t last;

	be_background();

	while ((list = take_all(rc))) {
		struct giveback gb = { 0 };

		/* One grace period covers every record taken: each was
		 * published before this wait began. */
		vm->rcu.synchronize(vm->rcu.ctx);
		call_hooks(vm, list);
		/* Flushed: invalidations need not reach these slots now. */
		notifier_forget(&vm->nt, list);
		for (; list; list = next) {
			next = list->next;
			last = list->ticket;
			free_one(vm, list, &gb);
		}
		give_back(vm, &gb);
		pthread_mutex_lock(&rc->lock);
		rc->completed = last;
		pthread_cond_broadcast(&rc->done);
		pthread_mutex_unlock(&rc->lock);
	}
	return NULL;
}

int reclaim_start(struct memslot_vm *vm)
{
	struct reclaim *rc = &vm->reclaim;

	if (rc->running)
		return 0;
	if (pthread_create(&rc->thread, NULL, reclaim_main, vm))
		return -EAGAIN;
	rc->running = true;
	return 0;
}

void reclaim_stop(struct memslot_vm *vm)
{
	struct reclaim *rc = &vm->reclaim;

	if (!rc->running)
		return;
	pthread_mutex_lock(&rc->lock);
	rc->stop = true;
	pthread_cond_signal(&rc->work);
	pthread_mutex_unlock(&rc->lock);
	pthread_join(rc->thread, NULL);
	rc->running = false;
	rc->stop = false;
	bpt_retired_free(&vm->alloc, rc->returned);
	rc->returned = NULL;
	rc->nreturned = 0;
	recycled_trim(&rc->slots, 0, &vm->alloc, sizeof(struct memslot_slot));
	recycled_trim(&rc->sets, 0, &vm->alloc, sizeof(struct memslot_set));
	recycled_trim(&rc->retires, 0, &vm->alloc, retire_bytes(RETIRE_SMALL));
}

int reclaim_wait(struct reclaim *rc, uint64_t ticket)
{
	int r = 0;

	pthread_mutex_lock(&rc->lock);
	if (ticket > rc->issued)
		r = -EINVAL;
	/* A waiter cuts the gathering short. */
	rc->waiters++;
	pthread_cond_signal(&rc->work);
	while (!r && rc->completed < ticket)
		pthread_cond_wait(&rc->done, &rc->lock);
	rc->waiters--;
	pthread_mutex_unlock(&rc->lock);
	return r;
}

uint64_t reclaim_completed(struct reclaim *rc)
{
	uint64_t c;

	pthread_mutex_lock(&rc->lock);
	c = rc->completed;
	pthread_mutex_unlock(&rc->lock);
	return c;
}
