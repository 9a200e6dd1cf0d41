/* SPDX-License-Identifier: MIT */
/*
 * Tests of change listeners (memslot_listener_register) and of deferred
 * changes (memslot_set_regions_deferred, memslot_vm_wait).
 *
 * Hooks append what they see to an event log; the tests compare the log
 * with the sequence the contract promises.  Hooks never assert (they run
 * with the writer lock held, some on the reclaim thread): they record.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <memslot/memslot.h>

#define PAGE 4096ull
#define HVA 0x10000000ull
#define MAX_EVENTS 64

enum ev_kind { EV_PREPARE, EV_ABORT, EV_FLUSH, EV_COMMIT, EV_COMPLETE };

struct event {
	char who;		/* listener name */
	enum ev_kind kind;
	uint32_t id;		/* slot id (old if any, else new) */
	enum memslot_change change;
	uint64_t ticket;
};

struct log {
	pthread_mutex_t lock;
	struct event ev[MAX_EVENTS];
	int n;
};

/* One listener: its name, the id whose prepare it refuses (or -1), and
 * what a writer call made from inside its hooks returned. */
struct tl {
	struct memslot_listener ops;
	char name;
	long refuse_id;
	bool call_writer;
	int writer_ret;
	struct log *log;
};

static void record(struct tl *t, enum ev_kind kind,
		   const struct memslot_slot *old,
		   const struct memslot_slot *new_slot,
		   enum memslot_change change, uint64_t ticket)
{
	const struct memslot_slot *s = old ? old : new_slot;
	struct log *log = t->log;

	pthread_mutex_lock(&log->lock);
	if (log->n < MAX_EVENTS)
		log->ev[log->n++] = (struct event){
			t->name, kind, s ? memslot_slot_id(s) : UINT32_MAX,
			change, ticket };
	pthread_mutex_unlock(&log->lock);
}

static void try_writer(struct tl *t, struct memslot_vm *vm)
{
	struct memslot_stats st;

	if (t->call_writer)
		t->writer_ret = memslot_vm_stats(vm, 0, &st);
}

static int h_prepare(struct memslot_vm *vm, void *ctx,
		     const struct memslot_slot *old,
		     const struct memslot_slot *new_slot,
		     enum memslot_change change)
{
	struct tl *t = ctx;
	const struct memslot_slot *s = old ? old : new_slot;

	try_writer(t, vm);
	record(t, EV_PREPARE, old, new_slot, change, 0);
	return (long)memslot_slot_id(s) == t->refuse_id ? -EPERM : 0;
}

static void h_abort(struct memslot_vm *vm, void *ctx,
		    const struct memslot_slot *old,
		    const struct memslot_slot *new_slot,
		    enum memslot_change change)
{
	(void)vm;
	record(ctx, EV_ABORT, old, new_slot, change, 0);
}

static void h_flush(struct memslot_vm *vm, void *ctx,
		   const struct memslot_slot *old)
{
	try_writer(ctx, vm);
	record(ctx, EV_FLUSH, old, NULL, MEMSLOT_CHANGE_NONE, 0);
}

static void h_commit(struct memslot_vm *vm, void *ctx,
		     const struct memslot_slot *old,
		     const struct memslot_slot *new_slot,
		     enum memslot_change change)
{
	(void)vm;
	record(ctx, EV_COMMIT, old, new_slot, change, 0);
}

static void h_complete(struct memslot_vm *vm, void *ctx, uint64_t ticket)
{
	try_writer(ctx, vm);
	record(ctx, EV_COMPLETE, NULL, NULL, MEMSLOT_CHANGE_NONE, ticket);
}

static void tl_init(struct tl *t, char name, struct log *log)
{
	memset(t, 0, sizeof(*t));
	t->ops = (struct memslot_listener){
		.size = sizeof(t->ops), .prepare = h_prepare,
		.abort = h_abort, .flush = h_flush, .commit = h_commit,
		.complete = h_complete, .ctx = t,
	};
	t->name = name;
	t->refuse_id = -1;
	t->log = log;
}

struct fixture {
	struct memslot_vm *vm;
	struct memslot_config cfg;
	struct log log;
	struct tl a, b;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	pthread_mutex_init(&f->log.lock, NULL);
	memslot_config_init_x86_64(&f->cfg);
	f->cfg.rcu = memslot_rcu_counter();
	assert_int_equal(memslot_vm_create(&f->cfg, &f->vm), 0);
	tl_init(&f->a, 'A', &f->log);
	tl_init(&f->b, 'B', &f->log);
	assert_int_equal(memslot_listener_register(f->vm, &f->a.ops), 0);
	assert_int_equal(memslot_listener_register(f->vm, &f->b.ops), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	memslot_vm_destroy(f->vm);
	free(f);
	return 0;
}

static struct memslot_region region(uint32_t id, uint64_t gfn,
				    uint64_t npages)
{
	return (struct memslot_region){
		.slot = id, .guest_phys_addr = gfn * PAGE,
		.memory_size = npages * PAGE, .userspace_addr = HVA + gfn * PAGE,
	};
}

/* Expect the log to be exactly @n events, then clear it. */
static void expect_log(struct fixture *f, const struct event *want, int n)
{
	pthread_mutex_lock(&f->log.lock);
	assert_int_equal(f->log.n, n);
	for (int i = 0; i < n; i++) {
		const struct event *e = &f->log.ev[i];

		assert_int_equal(e->who, want[i].who);
		assert_int_equal(e->kind, want[i].kind);
		assert_int_equal(e->id, want[i].id);
		if (want[i].kind != EV_FLUSH && want[i].kind != EV_COMPLETE)
			assert_int_equal(e->change, want[i].change);
		if (want[i].kind == EV_COMPLETE)
			assert_int_equal(e->ticket, want[i].ticket);
	}
	f->log.n = 0;
	pthread_mutex_unlock(&f->log.lock);
}

#define CR MEMSLOT_CHANGE_CREATE
#define DE MEMSLOT_CHANGE_DELETE
#define MO MEMSLOT_CHANGE_MOVE

/* ---- registration -------------------------------------------------------- */

static void test_register_errors(void **state)
{
	struct fixture *f = *state;
	struct memslot_listener small = f->a.ops;

	assert_int_equal(memslot_listener_register(f->vm, &f->a.ops), -EEXIST);
	assert_int_equal(memslot_listener_register(NULL, &f->a.ops), -EINVAL);
	assert_int_equal(memslot_listener_register(f->vm, NULL), -EINVAL);
	small.size = offsetof(struct memslot_listener, ctx);
	assert_int_equal(memslot_listener_register(f->vm, &small), -EINVAL);
	assert_int_equal(memslot_listener_unregister(f->vm, &small), -ENOENT);
	assert_int_equal(memslot_listener_unregister(f->vm, NULL), -EINVAL);
}

/* Both listeners, in registration order; none after unregistering. */
static void test_order_and_unregister(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = region(1, 0x100, 4);
	const struct event want[] = {
		{ 'A', EV_PREPARE, 1, CR, 0 }, { 'B', EV_PREPARE, 1, CR, 0 },
		{ 'A', EV_COMMIT, 1, CR, 0 }, { 'B', EV_COMMIT, 1, CR, 0 },
	};
	/* blocking DELETE: flush after the INVALID phase, then prepare */
	const struct event want_b[] = {
		{ 'B', EV_FLUSH, 1, DE, 0 }, { 'B', EV_PREPARE, 1, DE, 0 },
		{ 'B', EV_COMMIT, 1, DE, 0 },
	};

	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	expect_log(f, want, 4);
	assert_int_equal(memslot_listener_unregister(f->vm, &f->a.ops), 0);
	assert_int_equal(memslot_listener_unregister(f->vm, &f->a.ops), -ENOENT);
	r.memory_size = 0;
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	expect_log(f, want_b, 3);
}

/* A listener struct of the first published size: the library reads no
 * further (ASan checks the exactly-sized allocation). */
static void test_sized_copy(void **state)
{
	struct fixture *f = *state;
	size_t size = offsetof(struct memslot_listener, ctx) + sizeof(void *);
	struct memslot_listener src = f->a.ops;
	unsigned char *buf = malloc(size);
	const struct memslot_listener *l = (const void *)buf;
	struct memslot_region r = region(2, 0x200, 1);

	assert_non_null(buf);
	src.size = size;
	memcpy(buf, &src, size);
	assert_int_equal(memslot_listener_unregister(f->vm, &f->a.ops), 0);
	assert_int_equal(memslot_listener_unregister(f->vm, &f->b.ops), 0);
	assert_int_equal(memslot_listener_register(f->vm, l), 0);
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	assert_int_equal(f->log.n, 2);	/* prepare and commit */
	assert_int_equal(memslot_listener_unregister(f->vm, l), 0);
	free(buf);
}

/* ---- abort --------------------------------------------------------------- */

/* B refuses the second change: every prepare that succeeded is aborted,
 * newest first, and nothing changes. */
static void test_abort_on_refusal(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r[3] = {
		region(1, 0x100, 1), region(2, 0x200, 1), region(3, 0x300, 1),
	};
	struct memslot_txn_result res = { 0 };
	uint64_t gen = memslot_generation(f->vm, 0);
	const struct event want[] = {
		{ 'A', EV_PREPARE, 1, CR, 0 }, { 'B', EV_PREPARE, 1, CR, 0 },
		{ 'A', EV_PREPARE, 2, CR, 0 }, { 'B', EV_PREPARE, 2, CR, 0 },
		{ 'A', EV_ABORT, 2, CR, 0 },
		{ 'B', EV_ABORT, 1, CR, 0 }, { 'A', EV_ABORT, 1, CR, 0 },
	};

	f->b.refuse_id = 2;
	assert_int_equal(memslot_set_regions(f->vm, r, 3, &res), -EPERM);
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.rule, MEMSLOT_RULE_PREPARE);
	expect_log(f, want, 7);
	assert_int_equal(memslot_generation(f->vm, 0), gen);
	memslot_read_lock(f->vm);
	assert_null(memslot_id_to_slot(f->vm, 0, 1));
	memslot_read_unlock(f->vm);
	/* The same in deferred mode. */
	assert_int_equal(memslot_set_regions_deferred(f->vm, r, 3, &res),
			 -EPERM);
	assert_int_equal(res.ticket, 0);
	expect_log(f, want, 7);
	assert_int_equal(memslot_generation(f->vm, 0), gen);
}

/* Rule 17 of a later change aborts the prepares of the earlier ones. */
static void test_abort_on_max_gfn(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r[2] = {
		region(1, 0x100, 1), region(2, (1ull << 40) - 1, 2),
	};
	struct memslot_txn_result res = { 0 };
	const struct event want[] = {
		{ 'A', EV_PREPARE, 1, CR, 0 }, { 'B', EV_PREPARE, 1, CR, 0 },
		{ 'B', EV_ABORT, 1, CR, 0 }, { 'A', EV_ABORT, 1, CR, 0 },
	};

	r[1].userspace_addr = HVA;
	assert_int_equal(memslot_set_regions(f->vm, r, 2, &res), -EINVAL);
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.rule, MEMSLOT_RULE_MAX_GFN);
	expect_log(f, want, 4);
}

/* ---- hooks may not change slots ----------------------------------------- */

static void test_writer_from_hook(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = region(1, 0x100, 1);
	struct memslot_txn_result res = { 0 };

	f->a.call_writer = true;
	f->a.writer_ret = 1;
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	assert_int_equal(f->a.writer_ret, -EDEADLK);
	/* On the reclaim thread too (flush and complete hooks). */
	f->a.writer_ret = 1;
	r.memory_size = 0;
	assert_int_equal(memslot_set_regions_deferred(f->vm, &r, 1, &res), 0);
	assert_int_equal(memslot_vm_wait(f->vm, res.ticket), 0);
	assert_int_equal(f->a.writer_ret, -EDEADLK);
}

/* ---- deferred changes ---------------------------------------------------- */

/* A create publishes at once with KVM's generation step and completes. */
static void test_deferred_create(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = region(1, 0x100, 4);
	struct memslot_txn_result res = { 0 };
	uint64_t gen = memslot_generation(f->vm, 0);
	const struct event want[] = {
		{ 'A', EV_PREPARE, 1, CR, 0 }, { 'B', EV_PREPARE, 1, CR, 0 },
		{ 'A', EV_COMMIT, 1, CR, 0 }, { 'B', EV_COMMIT, 1, CR, 0 },
		{ 'A', EV_COMPLETE, UINT32_MAX, 0, 1 },
		{ 'B', EV_COMPLETE, UINT32_MAX, 0, 1 },
	};

	assert_int_equal(memslot_set_regions_deferred(f->vm, &r, 1, &res), 0);
	assert_int_equal(res.ticket, 1);
	assert_int_equal(res.nchanges, 1);
	assert_int_equal(memslot_generation(f->vm, 0), gen + 1);
	memslot_read_lock(f->vm);
	assert_non_null(memslot_gfn_to_slot(f->vm, 0, 0x103));
	memslot_read_unlock(f->vm);
	assert_int_equal(memslot_vm_wait(f->vm, res.ticket), 0);
	assert_true(memslot_vm_completed(f->vm) >= 1);
	expect_log(f, want, 6);
	assert_int_equal(memslot_vm_wait(f->vm, 2), -EINVAL);
	assert_int_equal(memslot_vm_wait(NULL, 1), -EINVAL);
}

struct holder {
	struct memslot_vm *vm;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stage;		/* 1: view held; 2: may let go; 3: done */
	uint64_t gfn;
	const struct memslot_slot *seen;	/* the slot the view shows */
	uint64_t base_after;	/* its base gfn, read again before unlock */
};

static void holder_wait(struct holder *h, int stage)
{
	pthread_mutex_lock(&h->lock);
	while (h->stage < stage)
		pthread_cond_wait(&h->cond, &h->lock);
	pthread_mutex_unlock(&h->lock);
}

static void holder_set(struct holder *h, int stage)
{
	pthread_mutex_lock(&h->lock);
	h->stage = stage;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

/* A reader that pins a view, waits, and reads through it again. */
static void *hold_view(void *arg)
{
	struct holder *h = arg;
	struct memslot_view *v;

	memslot_thread_register(h->vm);
	memslot_read_lock(h->vm);
	v = memslot_view_get(h->vm, 0);
	h->seen = memslot_view_search(v, h->gfn, false);
	holder_set(h, 1);
	holder_wait(h, 2);
	/* The old layout and its slot are still whole (ASan would catch a
	 * slot freed under the reader). */
	h->seen = memslot_view_search(v, h->gfn, false);
	h->base_after = h->seen ? memslot_slot_base_gfn(h->seen) : 0;
	memslot_read_unlock(h->vm);
	memslot_thread_unregister(h->vm);
	holder_set(h, 3);
	return NULL;
}

/*
 * A deferred MOVE is visible at once to new views, while a reader that
 * holds the old view keeps the old slot; the flush and complete hooks run
 * only once that reader has left.
 */
static void test_deferred_move_waits_for_reader(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = region(1, 0x100, 4);
	struct memslot_txn_result res = { 0 };
	struct holder h = { .vm = f->vm, .gfn = 0x101 };
	pthread_t t;
	uint64_t gen;

	pthread_mutex_init(&h.lock, NULL);
	pthread_cond_init(&h.cond, NULL);
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	f->log.n = 0;
	gen = memslot_generation(f->vm, 0);
	assert_int_equal(pthread_create(&t, NULL, hold_view, &h), 0);
	holder_wait(&h, 1);
	r.guest_phys_addr = 0x800 * PAGE;
	assert_int_equal(memslot_set_regions_deferred(f->vm, &r, 1, &res), 0);
	assert_int_equal(memslot_generation(f->vm, 0), gen + 2);
	memslot_read_lock(f->vm);
	assert_null(memslot_gfn_to_slot(f->vm, 0, 0x101));
	assert_non_null(memslot_gfn_to_slot(f->vm, 0, 0x801));
	memslot_read_unlock(f->vm);
	/* The reader is still in its section: nothing completed. */
	assert_int_equal(memslot_vm_completed(f->vm), 0);
	pthread_mutex_lock(&f->log.lock);
	for (int i = 0; i < f->log.n; i++)
		assert_int_not_equal(f->log.ev[i].kind, EV_FLUSH);
	pthread_mutex_unlock(&f->log.lock);
	holder_set(&h, 2);
	assert_int_equal(memslot_vm_wait(f->vm, res.ticket), 0);
	pthread_join(t, NULL);
	assert_int_equal(h.base_after, 0x100);
	{
		const struct event want[] = {
			{ 'A', EV_PREPARE, 1, MO, 0 },
			{ 'B', EV_PREPARE, 1, MO, 0 },
			{ 'A', EV_COMMIT, 1, MO, 0 },
			{ 'B', EV_COMMIT, 1, MO, 0 },
			{ 'A', EV_FLUSH, 1, 0, 0 }, { 'B', EV_FLUSH, 1, 0, 0 },
			{ 'A', EV_COMPLETE, UINT32_MAX, 0, res.ticket },
			{ 'B', EV_COMPLETE, UINT32_MAX, 0, res.ticket },
		};

		expect_log(f, want, 8);
	}
}

/*
 * A listener registered while a deferred change is pending saw neither
 * its prepare nor its commit, so it gets neither its flush nor its
 * complete; the next change is all its own.
 */
static void test_late_listener_skips_pending(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = region(1, 0x100, 4);
	struct memslot_txn_result res = { 0 };
	struct holder h = { .vm = f->vm, .gfn = 0x101 };
	struct tl c;
	pthread_t t;

	pthread_mutex_init(&h.lock, NULL);
	pthread_cond_init(&h.cond, NULL);
	tl_init(&c, 'C', &f->log);
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	assert_int_equal(pthread_create(&t, NULL, hold_view, &h), 0);
	holder_wait(&h, 1);
	r.guest_phys_addr = 0x800 * PAGE;
	assert_int_equal(memslot_set_regions_deferred(f->vm, &r, 1, &res), 0);
	/* The reader holds the grace period: the change is still pending. */
	assert_int_equal(memslot_listener_register(f->vm, &c.ops), 0);
	assert_int_equal(memslot_vm_completed(f->vm), 0);
	f->log.n = 0;
	holder_set(&h, 2);
	assert_int_equal(memslot_vm_wait(f->vm, res.ticket), 0);
	pthread_join(t, NULL);
	{
		const struct event want[] = {
			{ 'A', EV_FLUSH, 1, 0, 0 }, { 'B', EV_FLUSH, 1, 0, 0 },
			{ 'A', EV_COMPLETE, UINT32_MAX, 0, res.ticket },
			{ 'B', EV_COMPLETE, UINT32_MAX, 0, res.ticket },
		};

		expect_log(f, want, 4);
	}
	r.guest_phys_addr = 0x100 * PAGE;
	assert_int_equal(memslot_set_regions_deferred(f->vm, &r, 1, &res), 0);
	assert_int_equal(memslot_vm_wait(f->vm, res.ticket), 0);
	{
		const struct event want[] = {
			{ 'A', EV_PREPARE, 1, MO, 0 },
			{ 'B', EV_PREPARE, 1, MO, 0 },
			{ 'C', EV_PREPARE, 1, MO, 0 },
			{ 'A', EV_COMMIT, 1, MO, 0 },
			{ 'B', EV_COMMIT, 1, MO, 0 },
			{ 'C', EV_COMMIT, 1, MO, 0 },
			{ 'A', EV_FLUSH, 1, 0, 0 }, { 'B', EV_FLUSH, 1, 0, 0 },
			{ 'C', EV_FLUSH, 1, 0, 0 },
			{ 'A', EV_COMPLETE, UINT32_MAX, 0, res.ticket },
			{ 'B', EV_COMPLETE, UINT32_MAX, 0, res.ticket },
			{ 'C', EV_COMPLETE, UINT32_MAX, 0, res.ticket },
		};

		expect_log(f, want, 12);
	}
	assert_int_equal(memslot_listener_unregister(f->vm, &c.ops), 0);
}

/* Destroying the VM completes what is pending, hooks included. */
static void test_destroy_completes(void **state)
{
	struct fixture *f = *state;
	struct memslot_txn_result res = { 0 };
	struct memslot_region r;

	for (uint32_t i = 0; i < 8; i++) {
		r = region(i, 0x100 * (i + 1), 2);
		assert_int_equal(memslot_set_regions_deferred(f->vm, &r, 1,
							      &res), 0);
		assert_int_equal(res.ticket, i + 1);
	}
	memslot_vm_destroy(f->vm);
	f->vm = NULL;
	pthread_mutex_lock(&f->log.lock);
	assert_int_equal(f->log.ev[f->log.n - 1].kind, EV_COMPLETE);
	assert_int_equal(f->log.ev[f->log.n - 1].ticket, 8);
	pthread_mutex_unlock(&f->log.lock);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_register_errors), T(test_order_and_unregister),
		T(test_sized_copy), T(test_abort_on_refusal),
		T(test_abort_on_max_gfn), T(test_writer_from_hook),
		T(test_deferred_create), T(test_deferred_move_waits_for_reader),
		T(test_late_listener_skips_pending),
		T(test_destroy_completes),
	};

	return cmocka_run_group_tests_name("listener", tests, NULL, NULL);
}
