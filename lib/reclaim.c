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
	pthread_condattr_t mono;

	memset(rc, 0, sizeof(*rc));
	pthread_mutex_init(&rc->lock, NULL);
	/* The gathering wait is timed on the monotonic clock: a step of the
	 * wall clock must not hold completions back. */
	pthread_condattr_init(&mono);
	pthread_condattr_setclock(&mono, CLOCK_MONOTONIC);
	pthread_cond_init(&rc->work, &mono);
	pthread_condattr_destroy(&mono);
	pthread_cond_init(&rc->done, NULL);
	rc->tail = &rc->head;
}

size_t retire_bytes(size_t cap)
{
	return sizeof(struct retire) + cap * sizeof(struct retire_slot);
}

struct retire *retire_alloc(struct mem_alloc *alloc, size_t nslots,
			    struct spares *spares)
{
	size_t cap = nslots <= RETIRE_SMALL ? RETIRE_SMALL : nslots;
	struct retire *r = cap == RETIRE_SMALL ?
			   spares_take(spares, SPARES_RETIRE) :
			   mem_malloc(alloc, retire_bytes(cap));

	if (r) {
		memset(r, 0, retire_bytes(cap));
		r->cap = cap;
	}
	return r;
}

void retire_free(struct mem_alloc *alloc, struct retire *r,
		 struct spares *spares)
{
	if (r && r->cap == RETIRE_SMALL)
		spares_put(spares, SPARES_RETIRE, r);
	else if (r)
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
						r->slots[i].slot, r->ticket);
		}
		listeners_complete(&vm->listeners, vm, r->ticket);
	}
	vm_writer_unlock(vm);
}

/* The memory of @r, which no reader and no hook can reach any more:
 * collected in @back, per kind, for the writer's spares. */
static void free_one(struct memslot_vm *vm, struct retire *r,
		     struct spares_list back[SPARES_KINDS])
{
	struct bpt_node *nd;

	while ((nd = r->nodes)) {
		r->nodes = nd->retired;
		/* By size: the leaves of the gfn index are wide. */
		spares_list_push(&back[nd->wide ? SPARES_WIDE : SPARES_PLAIN],
				 nd);
	}
	for (size_t i = 0; i < r->nslots; i++) {
		if (r->slots[i].free_dirty)
			dirty_free(&vm->alloc, r->slots[i].slot);
		spares_list_push(&back[SPARES_SLOT], r->slots[i].slot);
	}
	spares_list_push(&back[SPARES_SET], r->set);
	if (r->cap == RETIRE_SMALL)
		spares_list_push(&back[SPARES_RETIRE], r);
	else
		mem_free(&vm->alloc, r, retire_bytes(r->cap));
}

/* How long the thread gathers records after the first, unless someone
 * waits for one: one grace period then covers them all. */
#define GATHER_NS 1000000L

static void gather(struct reclaim *rc)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
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
	/* A reader like any other: flush and complete hooks may open read
	 * sections here (the backend may require registration). */
	memslot_thread_register(vm);

	while ((list = take_all(rc))) {
		struct spares_list back[SPARES_KINDS] = { 0 };

		/* One grace period covers every record taken: each was
		 * published before this wait began. */
		vm->rcu.synchronize(vm->rcu.ctx);
		call_hooks(vm, list);
		/* Flushed: invalidations need not reach these slots now. */
		notifier_forget(&vm->nt, list);
		for (; list; list = next) {
			next = list->next;
			last = list->ticket;
			free_one(vm, list, back);
		}
		/* Before the tickets complete: a waiter finds the spares
		 * settled (and a test's allocator quiet). */
		spares_restock(&vm->spares, back);
		pthread_mutex_lock(&rc->lock);
		rc->completed = last;
		pthread_cond_broadcast(&rc->done);
		pthread_mutex_unlock(&rc->lock);
	}
	memslot_thread_unregister(vm);
	return NULL;
}

int reclaim_start(struct memslot_vm *vm)
{
	struct reclaim *rc = &vm->reclaim;

	if (rc->running)
		return 0;
	spares_start(&vm->spares);
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

/* A ticket counter of @rc, read under its lock. */
static uint64_t read_locked(struct reclaim *rc, const uint64_t *counter)
{
	uint64_t n;

	pthread_mutex_lock(&rc->lock);
	n = *counter;
	pthread_mutex_unlock(&rc->lock);
	return n;
}

uint64_t reclaim_issued(struct reclaim *rc)
{
	return read_locked(rc, &rc->issued);
}

uint64_t reclaim_completed(struct reclaim *rc)
{
	return read_locked(rc, &rc->completed);
}
