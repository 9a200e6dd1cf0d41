/* SPDX-License-Identifier: MIT */
/* The reclaim thread of deferred changes; see reclaim.h. */
/* clock_gettime() under -std=c11 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <string.h>
#include <time.h>

#include "reclaim.h"
#include "vm.h"

void reclaim_init(struct reclaim *rc)
{
	memset(rc, 0, sizeof(*rc));
	pthread_mutex_init(&rc->lock, NULL);
	pthread_cond_init(&rc->work, NULL);
	pthread_cond_init(&rc->done, NULL);
	rc->tail = &rc->head;
}

struct retire *retire_alloc(struct mem_alloc *alloc, size_t nslots)
{
	struct retire *r = mem_zalloc(alloc, sizeof(*r) +
					     nslots * sizeof(r->slots[0]));

	if (r)
		r->cap = nslots;
	return r;
}

void retire_free(struct mem_alloc *alloc, struct retire *r)
{
	if (r)
		mem_free(alloc, r, sizeof(*r) + r->cap * sizeof(r->slots[0]));
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

/* Hand @list's nodes back for the writer's pool, or free them. */
static void return_nodes(struct memslot_vm *vm, struct bpt_node *list)
{
	struct reclaim *rc = &vm->reclaim;
	struct bpt_node *nd;

	pthread_mutex_lock(&rc->lock);
	while ((nd = list) && rc->nreturned < RETURNED_MAX) {
		list = nd->retired;
		nd->retired = rc->returned;
		rc->returned = nd;
		rc->nreturned++;
	}
	pthread_mutex_unlock(&rc->lock);
	bpt_retired_free(&vm->alloc, list);
}

void reclaim_recycle(struct reclaim *rc, struct bpt_pool *pool)
{
	struct bpt_node *list;

	pthread_mutex_lock(&rc->lock);
	list = rc->returned;
	rc->returned = NULL;
	rc->nreturned = 0;
	pthread_mutex_unlock(&rc->lock);
	bpt_pool_adopt(pool, list);
}

/* The memory of @r, which no reader and no hook can reach any more. */
static void free_one(struct memslot_vm *vm, struct retire *r)
{
	return_nodes(vm, r->nodes);
	for (size_t i = 0; i < r->nslots; i++) {
		if (r->slots[i].free_dirty)
			dirty_free(&vm->alloc, r->slots[i].slot);
		mem_free(&vm->alloc, r->slots[i].slot, sizeof(*r->slots[i].slot));
	}
	set_free(&vm->alloc, r->set);
	retire_free(&vm->alloc, r);
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

static void *reclaim_main(void *arg)
{
	struct memslot_vm *vm = arg;
	struct reclaim *rc = &vm->reclaim;
	struct retire *list, *next;
	uint64_t last;

	while ((list = take_all(rc))) {
		/* One grace period covers every record taken: each was
		 * published before this wait began. */
		vm->rcu.synchronize(vm->rcu.ctx);
		call_hooks(vm, list);
		/* Flushed: invalidations need not reach these slots now. */
		notifier_forget(&vm->nt, list);
		for (; list; list = next) {
			next = list->next;
			last = list->ticket;
			free_one(vm, list);
		}
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
