/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the MMU-notifier protocol (include/memslot/notifier.h):
 * dispatch of hva ranges to (slot, gfn range) per address space, the
 * in-progress count, range union and sequence that memslot_notifier_retry()
 * checks (KVM's mmu_invalidate_retry_gfn), change and aging events,
 * consumer registration, bad input, and slot swaps waiting for active
 * invalidations.  The threaded protocol test is test_notifier_stress.c.
 */
/* clock_gettime(), nanosleep() under -std=c11 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <memslot/memslot.h>
#include <memslot/notifier.h>

#include "common.h"

#define PAGE TC_PAGE
#define HVA 0x10000000ull
#define MAX_CALLS 32

/* One hook call as a consumer saw it. */
struct call {
	char kind;		/* 'i' invalidate, 'c' change */
	uint32_t id;
	unsigned int as_id;
	uint32_t flags;
	uint64_t gfn_start;
	uint64_t gfn_end;	/* change: gfn + 1 */
	uint64_t hva;		/* change only */
	bool writable;
	enum memslot_notifier_event event;
};

struct fixture {
	struct memslot_vm *vm;
	struct memslot_config cfg;
	struct memslot_notifier_ops ops;
	struct memslot_notifier_ops ops2;
	struct tc_alloc alloc;	/* fails an allocation on request */
	struct call calls[MAX_CALLS];
	int ncalls;
	int order[MAX_CALLS];	/* which consumer (1, 2) made each call */
	bool young;		/* what invalidate returns for aging */
	int reentry[9];		/* errors of calls made in a hook */
	bool try_reentry;
	/* In each invalidate hook, ask memslot_notifier_retry() for these
	 * gfns with @probe_seq; count the calls and the answers "retry". */
	const uint64_t *probe_gfns;
	int nprobe_gfns;
	uint64_t probe_seq;
	int probe_calls;
	int probe_retries;
};

static void record(struct fixture *f, int who, const struct call *c)
{
	if (f->ncalls < MAX_CALLS) {
		f->order[f->ncalls] = who;
		f->calls[f->ncalls++] = *c;
	}
}

/* Calls that take the writer lock or wait: a writer holding that lock
 * may be waiting for this hook's notifier lock. */
static void try_writer_calls(struct fixture *f, struct memslot_vm *vm)
{
	struct memslot_stats st;
	struct memslot_region r = { .slot = 9, .guest_phys_addr = 0x900 * PAGE,
				    .memory_size = PAGE,
				    .userspace_addr = HVA + 0x900 * PAGE };

	f->reentry[6] = memslot_vm_stats(vm, 0, &st);
	f->reentry[7] = memslot_vm_wait(vm, memslot_vm_completed(vm));
	f->reentry[8] = memslot_set_region(vm, &r, NULL);
}

static void try_reentry(struct fixture *f, struct memslot_vm *vm)
{
	f->reentry[0] = memslot_notifier_invalidate_start(
		vm, HVA, HVA + PAGE, MEMSLOT_NOTIFY_UNMAP);
	f->reentry[1] = memslot_notifier_invalidate_end(vm, HVA, HVA + PAGE);
	f->reentry[2] = memslot_notifier_change(vm, HVA, true);
	f->reentry[3] = memslot_notifier_age(vm, HVA, HVA + PAGE,
					     MEMSLOT_NOTIFY_AGE);
	f->reentry[4] = memslot_notifier_register(vm, &f->ops2);
	f->reentry[5] = memslot_notifier_unregister(vm, &f->ops);
	try_writer_calls(f, vm);
}

static bool inval_hook(struct fixture *f, int who, struct memslot_vm *vm,
		       const struct memslot_slot *slot, uint64_t start,
		       uint64_t end, enum memslot_notifier_event event)
{
	struct call c = {
		.kind = 'i', .id = memslot_slot_id(slot),
		.as_id = memslot_slot_as_id(slot),
		.flags = memslot_slot_flags(slot), .gfn_start = start,
		.gfn_end = end, .event = event,
	};

	record(f, who, &c);
	if (f->try_reentry)
		try_reentry(f, vm);
	for (int i = 0; i < f->nprobe_gfns; i++)
		f->probe_retries += memslot_notifier_retry(vm, f->probe_seq,
							   f->probe_gfns[i]);
	f->probe_calls += f->nprobe_gfns > 0;
	return f->young;
}

static bool inval1(struct memslot_vm *vm, void *ctx,
		   const struct memslot_slot *slot, uint64_t start,
		   uint64_t end, enum memslot_notifier_event event)
{
	return inval_hook(ctx, 1, vm, slot, start, end, event);
}

static bool inval2(struct memslot_vm *vm, void *ctx,
		   const struct memslot_slot *slot, uint64_t start,
		   uint64_t end, enum memslot_notifier_event event)
{
	inval_hook(ctx, 2, vm, slot, start, end, event);
	return false;
}

static void change1(struct memslot_vm *vm, void *ctx,
		    const struct memslot_slot *slot, uint64_t gfn,
		    uint64_t hva, bool writable)
{
	struct call c = {
		.kind = 'c', .id = memslot_slot_id(slot),
		.as_id = memslot_slot_as_id(slot),
		.flags = memslot_slot_flags(slot), .gfn_start = gfn,
		.gfn_end = gfn + 1, .hva = hva, .writable = writable,
	};

	(void)vm;
	record(ctx, 1, &c);
}

static int setup_nr_as(void **state, unsigned int nr_as)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	tc_alloc_init(&f->alloc);
	memslot_config_init_x86_64(&f->cfg);
	f->cfg.nr_as = nr_as;
	f->cfg.alloc = &f->alloc.ops;
	f->cfg.rcu = memslot_rcu_counter();
	f->ops = (struct memslot_notifier_ops){
		.size = sizeof(f->ops), .invalidate = inval1,
		.change = change1, .ctx = f,
	};
	f->ops2 = (struct memslot_notifier_ops){
		.size = sizeof(f->ops2), .invalidate = inval2, .ctx = f,
	};
	if (memslot_vm_create(&f->cfg, &f->vm)) {
		free(f);
		return -1;
	}
	memslot_thread_register(f->vm);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_nr_as(state, 1);
}

static int setup2(void **state)
{
	return setup_nr_as(state, 2);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	memslot_thread_unregister(f->vm);
	memslot_vm_destroy(f->vm);
	free(f);
	return 0;
}

static void set(struct fixture *f, unsigned int as_id, uint32_t id,
		uint64_t gfn, uint64_t npages, uint64_t hva, uint32_t flags)
{
	struct memslot_region r = tc_region_pages(as_id, id, flags, gfn,
						  npages, hva);

	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
}

/* ---- registration and bad input ------------------------------------ */

static void test_register(void **state)
{
	struct fixture *f = *state;
	struct memslot_notifier_ops small = f->ops;

	small.size = offsetof(struct memslot_notifier_ops, ctx);
	assert_int_equal(memslot_notifier_register(NULL, &f->ops), -EINVAL);
	assert_int_equal(memslot_notifier_register(f->vm, NULL), -EINVAL);
	assert_int_equal(memslot_notifier_register(f->vm, &small), -EINVAL);
	assert_int_equal(memslot_notifier_unregister(f->vm, &f->ops), -ENOENT);
	assert_int_equal(memslot_notifier_unregister(NULL, &f->ops), -EINVAL);
	assert_int_equal(memslot_notifier_register(f->vm, &f->ops), 0);
	assert_int_equal(memslot_notifier_register(f->vm, &f->ops), -EEXIST);
	assert_int_equal(memslot_notifier_register(f->vm, &f->ops2), 0);

	/* Registration order is call order. */
	set(f, 0, 0, 0, 4, HVA, 0);
	assert_int_equal(memslot_notifier_invalidate_start(
				 f->vm, HVA, HVA + PAGE, MEMSLOT_NOTIFY_UNMAP),
			 0);
	assert_int_equal(memslot_notifier_invalidate_end(f->vm, HVA,
							 HVA + PAGE), 0);
	assert_int_equal(f->ncalls, 2);
	assert_int_equal(f->order[0], 1);
	assert_int_equal(f->order[1], 2);

	/* Unregistered: never called again. */
	assert_int_equal(memslot_notifier_unregister(f->vm, &f->ops), 0);
	f->ncalls = 0;
	assert_int_equal(memslot_notifier_invalidate_start(
				 f->vm, HVA, HVA + PAGE, MEMSLOT_NOTIFY_UNMAP),
			 0);
	assert_int_equal(memslot_notifier_invalidate_end(f->vm, HVA,
							 HVA + PAGE), 0);
	assert_int_equal(f->ncalls, 1);
	assert_int_equal(f->order[0], 2);
}

static void test_register_nomem(void **state)
{
	struct fixture *f = *state;

	tc_alloc_fail_nth(&f->alloc, 0);	/* the next one */
	assert_int_equal(memslot_notifier_register(f->vm, &f->ops), -ENOMEM);
	assert_int_equal(memslot_notifier_unregister(f->vm, &f->ops), -ENOENT);
	assert_int_equal(memslot_notifier_register(f->vm, &f->ops), 0);
}

static void test_bad_input(void **state)
{
	struct fixture *f = *state;
	struct memslot_vm *vm = f->vm;

	assert_int_equal(memslot_notifier_invalidate_start(
				 NULL, HVA, HVA + 1, MEMSLOT_NOTIFY_UNMAP),
			 -EINVAL);
	assert_int_equal(memslot_notifier_invalidate_start(
				 vm, HVA, HVA, MEMSLOT_NOTIFY_UNMAP),
			 -EINVAL);
	assert_int_equal(memslot_notifier_invalidate_start(
				 vm, HVA + 1, HVA, MEMSLOT_NOTIFY_UNMAP),
			 -EINVAL);
	assert_int_equal(memslot_notifier_invalidate_start(
				 vm, HVA, HVA + 1, MEMSLOT_NOTIFY_AGE),
			 -EINVAL);
	assert_int_equal(memslot_notifier_invalidate_start(
				 vm, HVA, HVA + 1, (enum memslot_notifier_event)99),
			 -EINVAL);
	/* End or change with no invalidation active. */
	assert_int_equal(memslot_notifier_invalidate_end(vm, HVA, HVA + 1),
			 -EINVAL);
	assert_int_equal(memslot_notifier_invalidate_end(NULL, HVA, HVA + 1),
			 -EINVAL);
	assert_int_equal(memslot_notifier_change(vm, HVA, true), -EINVAL);
	assert_int_equal(memslot_notifier_change(NULL, HVA, true), -EINVAL);
	assert_int_equal(memslot_notifier_age(vm, HVA, HVA + 1,
					      MEMSLOT_NOTIFY_UNMAP),
			 -EINVAL);
	assert_int_equal(memslot_notifier_age(vm, HVA, HVA,
					      MEMSLOT_NOTIFY_AGE),
			 -EINVAL);
	assert_int_equal(memslot_notifier_age(NULL, HVA, HVA + 1,
					      MEMSLOT_NOTIFY_AGE),
			 -EINVAL);
	/* Nothing of that started anything: a slot swap does not wait. */
	set(f, 0, 0, 0, 4, HVA, 0);
	assert_int_equal(memslot_notifier_seq_begin(vm), 0);
}

/* ---- dispatch -------------------------------------------------------- */

/*
 * Two address spaces; in AS 0 slot 1 covers [HVA, HVA+8P) at gfn 0x100 and
 * slot 2 aliases [HVA+4P, HVA+12P) at gfn 0x300; in AS 1 slot 1 covers
 * [HVA+2P, HVA+6P) at gfn 0x10.  Slot 3 of AS 0 lies elsewhere.
 */
static void alias_layout(struct fixture *f)
{
	set(f, 0, 1, 0x100, 8, HVA, 0);
	set(f, 0, 2, 0x300, 8, HVA + 4 * PAGE, 0);
	set(f, 1, 1, 0x10, 4, HVA + 2 * PAGE, 0);
	set(f, 0, 3, 0x500, 4, HVA + 64 * PAGE, 0);
}

static const struct call *find_call(const struct fixture *f, unsigned int as,
				    uint32_t id)
{
	for (int i = 0; i < f->ncalls; i++) {
		if (f->calls[i].as_id == as && f->calls[i].id == id)
			return &f->calls[i];
	}
	return NULL;
}

static void assert_range(const struct call *c, uint64_t start, uint64_t end)
{
	assert_non_null(c);
	assert_int_equal(c->kind, 'i');
	assert_int_equal(c->event, MEMSLOT_NOTIFY_UNMAP);
	assert_int_equal(c->gfn_start, start);
	assert_int_equal(c->gfn_end, end);
}

static void test_dispatch_every_as_and_alias(void **state)
{
	struct fixture *f = *state;
	/* [HVA+5P+1, HVA+6P+1): partly covers its last page. */
	uint64_t s = HVA + 5 * PAGE + 1, e = HVA + 6 * PAGE + 1;

	alias_layout(f);
	assert_int_equal(memslot_notifier_register(f->vm, &f->ops), 0);
	assert_int_equal(memslot_notifier_invalidate_start(
				 f->vm, s, e, MEMSLOT_NOTIFY_UNMAP),
			 0);
	assert_int_equal(f->ncalls, 3);
	assert_range(find_call(f, 0, 1), 0x105, 0x107);
	assert_range(find_call(f, 0, 2), 0x301, 0x303);
	/* AS 1's slot ends at HVA + 6P: only its last page. */
	assert_range(find_call(f, 1, 1), 0x13, 0x14);
	assert_null(find_call(f, 0, 3));
	assert_int_equal(memslot_notifier_invalidate_end(f->vm, s, e), 0);
	/* End calls no hook. */
	assert_int_equal(f->ncalls, 3);
}

static void test_retry_semantics(void **state)
{
	struct fixture *f = *state;
	struct memslot_vm *vm = f->vm;
	uint64_t seq, seq2;

	set(f, 0, 1, 0x100, 16, HVA, 0);
	seq = memslot_notifier_seq_begin(vm);
	assert_false(memslot_notifier_retry(vm, seq, 0x104));

	/* In progress over gfns 0x104..0x105: those retry, others not yet. */
	assert_int_equal(memslot_notifier_invalidate_start(
				 vm, HVA + 4 * PAGE, HVA + 6 * PAGE,
				 MEMSLOT_NOTIFY_UNMAP),
			 0);
	assert_true(memslot_notifier_retry(vm, seq, 0x104));
	assert_true(memslot_notifier_retry(vm, seq, 0x105));
	assert_false(memslot_notifier_retry(vm, seq, 0x103));
	assert_false(memslot_notifier_retry(vm, seq, 0x106));
	/* A fault that begins during the invalidation still retries inside
	 * the range. */
	seq2 = memslot_notifier_seq_begin(vm);
	assert_int_equal(seq2, seq);
	assert_true(memslot_notifier_retry(vm, seq2, 0x104));

	/* A second invalidation widens the union; the first ending keeps
	 * the whole union until none is in progress (KVM's false
	 * positives). */
	assert_int_equal(memslot_notifier_invalidate_start(
				 vm, HVA + 10 * PAGE, HVA + 11 * PAGE,
				 MEMSLOT_NOTIFY_UNMAP),
			 0);
	assert_true(memslot_notifier_retry(vm, seq, 0x10a));
	/* The union is one interval, [0x104, 0x10b): the gap between the
	 * two ranges retries too (a false positive, as in KVM). */
	assert_true(memslot_notifier_retry(vm, seq, 0x108));
	assert_false(memslot_notifier_retry(vm, seq, 0x10b));
	assert_false(memslot_notifier_retry(vm, seq, 0x103));
	assert_int_equal(memslot_notifier_invalidate_end(
				 vm, HVA + 4 * PAGE, HVA + 6 * PAGE),
			 0);
	seq2 = memslot_notifier_seq_begin(vm);
	assert_int_equal(seq2, seq + 1);
	assert_true(memslot_notifier_retry(vm, seq2, 0x104));
	assert_true(memslot_notifier_retry(vm, seq2, 0x10a));
	assert_false(memslot_notifier_retry(vm, seq2, 0x10b));
	/* Every fault that began before an end retries, whatever its gfn. */
	assert_true(memslot_notifier_retry(vm, seq, 0x10b));
	assert_int_equal(memslot_notifier_invalidate_end(
				 vm, HVA + 10 * PAGE, HVA + 11 * PAGE),
			 0);
	seq2 = memslot_notifier_seq_begin(vm);
	assert_int_equal(seq2, seq + 2);
	assert_false(memslot_notifier_retry(vm, seq2, 0x104));
	assert_false(memslot_notifier_retry(vm, seq2, 0x10a));
}

/* A read section on another thread: while it lasts, the old slots of a
 * deferred change stay unflushed and reachable by invalidations. */
struct holder {
	struct memslot_vm *vm;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool inside;
	bool leave;
};

static void *hold_section(void *arg)
{
	struct holder *h = arg;

	memslot_thread_register(h->vm);
	memslot_read_lock(h->vm);
	pthread_mutex_lock(&h->lock);
	h->inside = true;
	pthread_cond_broadcast(&h->cond);
	while (!h->leave)
		pthread_cond_wait(&h->cond, &h->lock);
	pthread_mutex_unlock(&h->lock);
	memslot_read_unlock(h->vm);
	memslot_thread_unregister(h->vm);
	return NULL;
}

static void holder_wait(struct holder *h, bool *flag)
{
	pthread_mutex_lock(&h->lock);
	while (!*flag)
		pthread_cond_wait(&h->cond, &h->lock);
	pthread_mutex_unlock(&h->lock);
}

static void holder_release(struct holder *h)
{
	pthread_mutex_lock(&h->lock);
	h->leave = true;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

/*
 * A page with two gfns: through its slot, moved by a deferred change, and
 * through the old slot, not flushed yet.  A fault may have mapped it
 * through either; the consumer's lock is free between two hooks of one
 * invalidation, so from the first hook on, both gfns must retry.
 */
static void test_every_hit_in_range_before_hooks(void **state)
{
	static const uint64_t gfns[2] = { 0x104, 0x304 };
	struct fixture *f = *state;
	struct memslot_region r = tc_region_pages(0, 1, 0, 0x300, 16, HVA);
	struct memslot_txn_result res = { 0 };
	struct holder h = { .vm = f->vm };
	pthread_t t;
	int start, end;

	set(f, 0, 1, 0x100, 16, HVA, 0);
	assert_int_equal(memslot_notifier_register(f->vm, &f->ops), 0);
	pthread_mutex_init(&h.lock, NULL);
	pthread_cond_init(&h.cond, NULL);
	assert_int_equal(pthread_create(&t, NULL, hold_section, &h), 0);
	holder_wait(&h, &h.inside);
	assert_int_equal(memslot_set_regions_deferred(f->vm, &r, 1, &res), 0);

	f->probe_gfns = gfns;
	f->nprobe_gfns = 2;
	f->probe_seq = memslot_notifier_seq_begin(f->vm);
	start = memslot_notifier_invalidate_start(
		f->vm, HVA + 4 * PAGE, HVA + 5 * PAGE, MEMSLOT_NOTIFY_UNMAP);
	f->nprobe_gfns = 0;
	end = memslot_notifier_invalidate_end(f->vm, HVA + 4 * PAGE,
					      HVA + 5 * PAGE);
	/* Everything ended before the checks, so a failing check cannot
	 * leave the VM waiting for the other thread. */
	holder_release(&h);
	pthread_join(t, NULL);
	assert_int_equal(memslot_vm_wait(f->vm, res.ticket), 0);
	pthread_cond_destroy(&h.cond);
	pthread_mutex_destroy(&h.lock);
	assert_int_equal(start, 0);
	assert_int_equal(end, 0);
	/* Two hits (the slot and its old copy), both gfns retry in each. */
	assert_int_equal(f->probe_calls, 2);
	assert_int_equal(f->probe_retries, 4);
}

static void test_range_without_slot(void **state)
{
	struct fixture *f = *state;
	struct memslot_vm *vm = f->vm;
	uint64_t seq;

	set(f, 0, 1, 0x100, 4, HVA, 0);
	assert_int_equal(memslot_notifier_register(vm, &f->ops), 0);
	seq = memslot_notifier_seq_begin(vm);
	/* Host memory outside every slot: no hook, no retry, no new
	 * sequence (KVM counts only invalidations that meet a slot). */
	assert_int_equal(memslot_notifier_invalidate_start(
				 vm, HVA + 4 * PAGE, HVA + 8 * PAGE,
				 MEMSLOT_NOTIFY_UNMAP),
			 0);
	assert_int_equal(f->ncalls, 0);
	assert_false(memslot_notifier_retry(vm, seq, 0x100));
	/* It is active all the same: change is legal, and finds nothing. */
	assert_int_equal(memslot_notifier_change(vm, HVA + 4 * PAGE, true), 0);
	assert_int_equal(f->ncalls, 0);
	assert_int_equal(memslot_notifier_invalidate_end(
				 vm, HVA + 4 * PAGE, HVA + 8 * PAGE),
			 0);
	assert_int_equal(memslot_notifier_seq_begin(vm), seq);
	assert_int_equal(memslot_notifier_invalidate_end(
				 vm, HVA + 4 * PAGE, HVA + 8 * PAGE),
			 -EINVAL);
}

static void test_change(void **state)
{
	struct fixture *f = *state;
	struct memslot_vm *vm = f->vm;
	uint64_t s = HVA + 5 * PAGE, e = HVA + 6 * PAGE;
	const struct call *c;

	alias_layout(f);
	set(f, 0, 4, 0x700, 4, HVA + 5 * PAGE, MEMSLOT_MEM_READONLY);
	assert_int_equal(memslot_notifier_register(vm, &f->ops), 0);
	assert_int_equal(memslot_notifier_invalidate_start(
				 vm, s, e, MEMSLOT_NOTIFY_UNMAP),
			 0);
	f->ncalls = 0;
	/* An address inside the page names the page. */
	assert_int_equal(memslot_notifier_change(vm, s + 123, true), 0);
	assert_int_equal(f->ncalls, 4);
	c = find_call(f, 0, 1);
	assert_int_equal(c->kind, 'c');
	assert_int_equal(c->gfn_start, 0x105);
	assert_int_equal(c->hva, s);
	assert_true(c->writable);
	c = find_call(f, 0, 2);
	assert_int_equal(c->gfn_start, 0x301);
	assert_int_equal(c->hva, s);
	assert_true(find_call(f, 1, 1)->writable);
	/* READONLY: never writable. */
	c = find_call(f, 0, 4);
	assert_int_equal(c->gfn_start, 0x700);
	assert_false(c->writable);
	f->ncalls = 0;
	assert_int_equal(memslot_notifier_change(vm, s, false), 0);
	assert_false(find_call(f, 0, 1)->writable);
	assert_int_equal(memslot_notifier_invalidate_end(vm, s, e), 0);
	assert_int_equal(memslot_notifier_change(vm, s, true), -EINVAL);
}

static void test_age(void **state)
{
	struct fixture *f = *state;
	struct memslot_vm *vm = f->vm;
	uint64_t seq;

	alias_layout(f);
	assert_int_equal(memslot_notifier_register(vm, &f->ops), 0);
	assert_int_equal(memslot_notifier_register(vm, &f->ops2), 0);
	seq = memslot_notifier_seq_begin(vm);
	f->young = false;
	assert_int_equal(memslot_notifier_age(vm, HVA, HVA + PAGE,
					      MEMSLOT_NOTIFY_TEST_YOUNG),
			 0);
	assert_int_equal(f->ncalls, 2);
	assert_int_equal(f->calls[0].event, MEMSLOT_NOTIFY_TEST_YOUNG);
	f->young = true;
	assert_int_equal(memslot_notifier_age(vm, HVA, HVA + PAGE,
					      MEMSLOT_NOTIFY_AGE),
			 1);
	assert_int_equal(f->calls[2].event, MEMSLOT_NOTIFY_AGE);
	assert_int_equal(memslot_notifier_age(vm, HVA + 6 * PAGE,
					      HVA + 7 * PAGE,
					      MEMSLOT_NOTIFY_CLEAR_YOUNG),
			 1);
	/* Outside every slot: nobody to ask. */
	assert_int_equal(memslot_notifier_age(vm, HVA + 32 * PAGE,
					      HVA + 33 * PAGE,
					      MEMSLOT_NOTIFY_AGE),
			 0);
	/* Aging invalidates nothing. */
	assert_int_equal(memslot_notifier_seq_begin(vm), seq);
	assert_false(memslot_notifier_retry(vm, seq, 0x100));
}

static void test_hook_reentry(void **state)
{
	struct fixture *f = *state;
	struct memslot_vm *vm = f->vm;
	uint64_t gen;

	set(f, 0, 1, 0x100, 4, HVA, 0);
	gen = memslot_generation(vm, 0);
	assert_int_equal(memslot_notifier_register(vm, &f->ops), 0);
	f->try_reentry = true;
	assert_int_equal(memslot_notifier_invalidate_start(
				 vm, HVA, HVA + PAGE, MEMSLOT_NOTIFY_UNMAP),
			 0);
	f->try_reentry = false;
	for (int i = 0; i < 9; i++)
		assert_int_equal(f->reentry[i], -EDEADLK);
	assert_int_equal(memslot_notifier_invalidate_end(vm, HVA, HVA + PAGE),
			 0);
	/* Nothing the refused calls tried happened. */
	assert_int_equal(memslot_notifier_unregister(vm, &f->ops2), -ENOENT);
	assert_int_equal(memslot_notifier_unregister(vm, &f->ops), 0);
	assert_int_equal(memslot_notifier_invalidate_end(vm, HVA, HVA + PAGE),
			 -EINVAL);
	assert_int_equal(memslot_generation(vm, 0), gen);
}

/* ---- an invalidation during a DELETE's INVALID phase ------------------ */

struct flush_probe {
	struct fixture *f;
	int start_r, change_r, end_r;
	int invalidates, changes;
	uint32_t inval_flags;
};

static void probe_flush(struct memslot_vm *vm, void *ctx,
			const struct memslot_slot *old)
{
	struct flush_probe *p = ctx;
	struct fixture *f = p->f;

	(void)old;
	f->ncalls = 0;
	p->start_r = memslot_notifier_invalidate_start(
		vm, HVA, HVA + PAGE, MEMSLOT_NOTIFY_UNMAP);
	p->change_r = memslot_notifier_change(vm, HVA, true);
	p->end_r = memslot_notifier_invalidate_end(vm, HVA, HVA + PAGE);
	for (int i = 0; i < f->ncalls; i++) {
		p->invalidates += f->calls[i].kind == 'i';
		p->changes += f->calls[i].kind == 'c';
		if (f->calls[i].kind == 'i')
			p->inval_flags = f->calls[i].flags;
	}
}

static void test_invalid_slot_gets_no_change(void **state)
{
	struct fixture *f = *state;
	struct flush_probe p = {.f = f};
	struct memslot_listener l = {
		.size = sizeof(l), .flush = probe_flush, .ctx = &p,
	};

	set(f, 0, 1, 0x100, 4, HVA, 0);
	assert_int_equal(memslot_notifier_register(f->vm, &f->ops), 0);
	assert_int_equal(memslot_listener_register(f->vm, &l), 0);
	set(f, 0, 1, 0, 0, 0, 0);	/* delete: flush sees the INVALID copy */
	assert_int_equal(p.start_r, 0);
	assert_int_equal(p.change_r, 0);
	assert_int_equal(p.end_r, 0);
	/* Invalidation reaches the INVALID slot; the change does not. */
	assert_int_equal(p.invalidates, 1);
	assert_true(p.inval_flags & MEMSLOT_INVALID);
	assert_int_equal(p.changes, 0);
	assert_int_equal(memslot_listener_unregister(f->vm, &l), 0);
}

/* ---- slot swaps wait for active invalidations ---------------------- */

struct swapper {
	struct memslot_vm *vm;
	struct memslot_region r;
	bool deferred;
	int result;
	atomic_bool prepared;	/* the change got past validation */
	atomic_bool done;
	struct memslot_listener l;
};

/* Runs on the swapper's thread just before its publish. */
static int swapper_prepare(struct memslot_vm *vm, void *ctx,
			   const struct memslot_slot *old,
			   const struct memslot_slot *new_slot,
			   enum memslot_change change)
{
	struct swapper *s = ctx;

	(void)vm, (void)old, (void)new_slot, (void)change;
	atomic_store(&s->prepared, true);
	return 0;
}

static void *swapper_main(void *arg)
{
	struct swapper *s = arg;
	struct memslot_txn_result res = {0};

	if (s->deferred) {
		s->result = memslot_set_regions_deferred(s->vm, &s->r, 1, &res);
		if (!s->result)
			s->result = memslot_vm_wait(s->vm, res.ticket);
	} else {
		s->result = memslot_set_region(s->vm, &s->r, NULL);
	}
	atomic_store(&s->done, true);
	return NULL;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = ms * 1000000L};

	nanosleep(&ts, NULL);
}

static void swap_waits(struct fixture *f, bool deferred)
{
	struct swapper s = {
		.vm = f->vm, .deferred = deferred,
		.r = {.slot = 2, .guest_phys_addr = 0x200 * PAGE,
		      .memory_size = 4 * PAGE, .userspace_addr = HVA + PAGE},
	};
	uint64_t seq = memslot_notifier_seq_begin(f->vm);
	pthread_t t;

	s.l = (struct memslot_listener){ .size = sizeof(s.l),
					 .prepare = swapper_prepare,
					 .ctx = &s };
	set(f, 0, 1, 0x100, 1, HVA, 0);
	assert_int_equal(memslot_listener_register(f->vm, &s.l), 0);
	assert_int_equal(memslot_notifier_register(f->vm, &f->ops), 0);
	/* The new slot would meet this range: its start found none. */
	assert_int_equal(memslot_notifier_invalidate_start(
				 f->vm, HVA + PAGE, HVA + 2 * PAGE,
				 MEMSLOT_NOTIFY_UNMAP),
			 0);
	assert_int_equal(pthread_create(&t, NULL, swapper_main, &s), 0);
	/* Not a vacuous wait: the change is known to be at its publish. */
	for (int i = 0; i < 10000 && !atomic_load(&s.prepared); i++)
		sleep_ms(1);
	assert_true(atomic_load(&s.prepared));
	sleep_ms(100);
	assert_false(atomic_load(&s.done));
	/* The end sees the layout the start saw: no slot, so nothing was
	 * in progress and the sequence stays. */
	assert_int_equal(memslot_notifier_invalidate_end(
				 f->vm, HVA + PAGE, HVA + 2 * PAGE),
			 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_true(atomic_load(&s.done));
	assert_int_equal(s.result, 0);
	assert_int_equal(memslot_notifier_seq_begin(f->vm), seq);
	assert_int_equal(f->ncalls, 0);
	assert_int_equal(memslot_listener_unregister(f->vm, &s.l), 0);
}

static void test_swap_waits_blocking(void **state)
{
	swap_waits(*state, false);
}

static void test_swap_waits_deferred(void **state)
{
	swap_waits(*state, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_register, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_nomem, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_dispatch_every_as_and_alias, setup2, teardown),
		cmocka_unit_test_setup_teardown(test_retry_semantics, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_every_hit_in_range_before_hooks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range_without_slot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_change, setup2, teardown),
		cmocka_unit_test_setup_teardown(test_age, setup2, teardown),
		cmocka_unit_test_setup_teardown(test_hook_reentry, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_invalid_slot_gets_no_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_swap_waits_blocking,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_swap_waits_deferred,
						setup, teardown),
	};

	return cmocka_run_group_tests_name("notifier", tests, NULL, NULL);
}
