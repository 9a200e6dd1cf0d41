/* SPDX-License-Identifier: MIT */
/*
 * Allocation failure: every operation that allocates is run with an
 * allocator that fails its Nth allocation, for N = 0, 1, ... until the
 * operation no longer needs the failing allocation and succeeds.  Each
 * failure must be -ENOMEM with rule MEMSLOT_RULE_NOMEM and leave the VM
 * exactly as it was (layout with slot pointers, generations, lookups, hva
 * walk, lowest free id, counts); the same operation must then succeed with
 * a working allocator and reach the same state as a run that never failed;
 * and the VM must give back every byte when destroyed.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <memslot/memslot.h>

#include "common.h"

#define PAGE TC_PAGE
#define NR_AS 2

/* The allocator under test: counts calls and bytes, fails the Nth call. */
static struct tc_alloc failer;

static unsigned long cases;	/* (operation, N) pairs run */

static void arm(long n)
{
	tc_alloc_fail_nth(&failer, n);
}

static void disarm(void)
{
	tc_alloc_disarm(&failer);
}

static void config(struct memslot_config *cfg)
{
	memslot_config_init_x86_64(cfg);
	cfg->nr_as = NR_AS;
	cfg->rcu = memslot_rcu_none();
	cfg->alloc = &failer.ops;
}

/* ---- the observable state of a VM, as a vector of numbers ------------ */

/* Lookups of every slot's first, last and next gfn, and of its id. */
static void snap_lookups(struct tc_layout *s, struct memslot_vm *vm,
			 unsigned int as_id)
{
	struct memslot_gfn_iter it;
	const struct memslot_slot *slot, *found;
	uint64_t probes[64];
	size_t n = 0;

	memslot_gfn_iter_init(&it, vm, as_id, 0, UINT64_MAX);
	while ((slot = memslot_gfn_iter_next(&it)) && n + 3 <= 64) {
		uint64_t b = memslot_slot_base_gfn(slot);

		probes[n++] = b;
		probes[n++] = b + memslot_slot_npages(slot) - 1;
		probes[n++] = b + memslot_slot_npages(slot);
		found = memslot_id_to_slot(vm, as_id, memslot_slot_id(slot));
		tc_layout_put_slot(s, found);
	}
	for (size_t i = 0; i < n; i++) {
		found = memslot_gfn_to_slot(vm, as_id, probes[i]);
		tc_layout_put_slot(s, found);
		found = memslot_search(vm, as_id, probes[i], true);
		tc_layout_put_slot(s, found);
	}
}

static void snap_as(struct tc_layout *s, struct memslot_vm *vm,
		    unsigned int as_id)
{
	struct memslot_stats st;
	uint32_t id = 0;

	memslot_read_lock(vm);
	snap_lookups(s, vm, as_id);
	memslot_read_unlock(vm);
	tc_layout_put(s, (uint64_t)memslot_lowest_free_id(vm, as_id, &id));
	tc_layout_put(s, id);
	assert_int_equal(memslot_vm_stats(vm, as_id, &st), 0);
	tc_layout_put(s, st.used_ids);
	tc_layout_put(s, st.free_user_ids);
	tc_layout_put(s, st.total_pages);
	/* the library's byte count follows the allocator's */
	assert_int_equal(st.bytes, failer.live);
}

/*
 * The layout (tc_layout_take()), then for each address space the lookups,
 * the lowest free id and the counts, then the hva walk.  @pointers: slot
 * pointers are recorded (within one VM), or only whether a lookup found a
 * slot (to compare with another VM).
 */
static void snap_take(struct tc_layout *s, struct memslot_vm *vm,
		      bool pointers)
{
	struct memslot_hva_iter it;
	struct memslot_hva_hit hit;

	tc_layout_take(s, vm, NR_AS, pointers);
	for (unsigned int as_id = 0; as_id < NR_AS; as_id++)
		snap_as(s, vm, as_id);
	memslot_read_lock(vm);
	memslot_hva_iter_init(&it, vm, 0, UINT64_MAX);
	while (memslot_hva_iter_next(&it, &hit)) {
		tc_layout_put_slot(s, hit.slot);
		tc_layout_put(s, hit.hva_start);
		tc_layout_put(s, hit.hva_end);
		tc_layout_put(s, hit.gfn_start);
		tc_layout_put(s, hit.gfn_end);
	}
	memslot_read_unlock(vm);
}

/* ---- scenarios: a setup and one operation ---------------------------- */

/* Slot @id of @as_id in pages, backed at page @hva_page; its user data
 * tells slots apart across two VMs. */
static struct memslot_region reg(unsigned int as_id, uint32_t id,
				 uint32_t flags, uint64_t gfn,
				 uint64_t npages, uint64_t hva_page)
{
	struct memslot_region r = tc_region_pages(as_id, id, flags, gfn, npages,
						  hva_page * PAGE);

	r.user_data = (void *)(uintptr_t)(id + 1);
	return r;
}

struct scenario {
	const char *name;
	unsigned int nslots;		/* setup: slots 0..nslots-1 in AS 0 */
	struct memslot_region req[40];	/* the operation */
	size_t nreq;			/* 1: memslot_set_region */
	bool internal;
	bool deferred;			/* memslot_set_regions_deferred */
	unsigned int warm;		/* deferred changes made before */
	enum memslot_rule want;		/* rule of the successful run */
};

/* @n deferred changes that leave the layout as it was (slot 200 comes
 * and goes), each waited for: the reclaim thread then has stocked the
 * VM's spares, and later changes take objects from them. */
static void warm_up(struct memslot_vm *vm, unsigned int n)
{
	struct memslot_txn_result res = { 0 };
	struct memslot_region r;

	for (unsigned int i = 0; i < 2 * n; i++) {
		r = reg(0, 200, 0, 20000, i % 2 ? 0 : 4, 20000);
		assert_int_equal(memslot_set_regions_deferred(vm, &r, 1, &res),
				 0);
		assert_int_equal(memslot_vm_wait(vm, res.ticket), 0);
	}
}

/* Slots 0..n-1 in AS 0 (4 pages each, gfn 8i, logging on even ids) and
 * slot 0 of AS 1, so a failure in one space can be seen not to touch the
 * other. */
static struct memslot_vm *setup(unsigned int n)
{
	struct memslot_config cfg;
	struct memslot_vm *vm;
	struct memslot_region r;

	config(&cfg);
	disarm();
	assert_int_equal(memslot_vm_create(&cfg, &vm), 0);
	for (uint32_t id = 0; id < n; id++) {
		r = reg(0, id, id % 2 ? 0 : MEMSLOT_MEM_LOG_DIRTY_PAGES,
			8ull * id, 4, 1000 + 8ull * id);
		assert_int_equal(memslot_set_region(vm, &r, NULL), 0);
	}
	r = reg(1, 0, 0, 0, 16, 1000);
	assert_int_equal(memslot_set_region(vm, &r, NULL), 0);
	return vm;
}

static int run_op(struct memslot_vm *vm, const struct scenario *sc,
		  enum memslot_rule *rule, size_t *failed)
{
	struct memslot_txn_result res = { 0 };
	int r;

	*failed = 0;
	if (sc->deferred) {
		r = memslot_set_regions_deferred(vm, sc->req, sc->nreq, &res);
		*rule = sc->nreq > 1 || r ? res.rule : MEMSLOT_RULE_OK;
		*failed = res.failed;
		/* Completion frees the old objects: wait, so that the state
		 * compared and the bytes counted are final. */
		if (!r)
			assert_int_equal(memslot_vm_wait(vm, res.ticket), 0);
		return r;
	}
	if (sc->nreq > 1) {
		r = memslot_set_regions(vm, sc->req, sc->nreq, &res);
		*rule = res.rule;
		*failed = res.failed;
		return r;
	}
	if (sc->internal)
		return memslot_set_internal_region(vm, sc->req, rule);
	return memslot_set_region(vm, sc->req, rule);
}

static struct memslot_vm *setup_for(const struct scenario *sc)
{
	struct memslot_vm *vm = setup(sc->nslots);

	warm_up(vm, sc->warm);
	return vm;
}

/* The state after @sc with an allocator that never fails. */
static void reference(const struct scenario *sc, struct tc_layout *after)
{
	struct memslot_vm *vm = setup_for(sc);
	enum memslot_rule rule;
	size_t failed;

	assert_int_equal(run_op(vm, sc, &rule, &failed), 0);
	assert_int_equal(rule, sc->want);
	snap_take(after, vm, false);
	memslot_vm_destroy(vm);
	assert_int_equal(failer.live, 0);
}

/* One (operation, N) case.  Return: the operation succeeded at once. */
static bool one_case(const struct scenario *sc, long n,
		     const struct tc_layout *want_after)
{
	struct tc_layout before = { 0 }, now = { 0 };
	struct memslot_vm *vm = setup_for(sc);
	enum memslot_rule rule = MEMSLOT_RULE_OK;
	size_t failed;
	int r, first;

	snap_take(&before, vm, true);
	arm(n);
	first = r = run_op(vm, sc, &rule, &failed);
	disarm();
	cases++;
	if (r) {
		if (r != -ENOMEM || rule != MEMSLOT_RULE_NOMEM)
			fail_msg("%s, N=%ld: %d rule %d", sc->name, n, r, rule);
		if (sc->nreq > 1)
			assert_int_equal(failed, sc->nreq);
		snap_take(&now, vm, true);
		if (!tc_layout_equal(&before, &now))
			fail_msg("%s, N=%ld: state changed by a failed op",
				 sc->name, n);
		r = run_op(vm, sc, &rule, &failed);
		if (r)
			fail_msg("%s, N=%ld: retry gave %d", sc->name, n, r);
	}
	assert_int_equal(rule, sc->want);
	snap_take(&now, vm, false);
	if (!tc_layout_equal(want_after, &now))
		fail_msg("%s, N=%ld: end state differs", sc->name, n);
	memslot_vm_destroy(vm);
	assert_int_equal(failer.live, 0);
	tc_layout_free(&before);
	tc_layout_free(&now);
	return !first;
}

/* N = 0, 1, ... until the operation gets through. */
static void run_scenario(const struct scenario *sc)
{
	struct tc_layout after = { 0 };
	long n = 0;

	reference(sc, &after);
	while (!one_case(sc, n, &after)) {
		n++;
		assert_true(n < 10000);
	}
	printf("  %-28s %ld failing allocation points\n", sc->name, n);
	tc_layout_free(&after);
}

#define ONE(...) .req = { __VA_ARGS__ }, .nreq = 1
#define TXN(k, ...) .req = { __VA_ARGS__ }, .nreq = (k)

static void test_single_ops(void **state)
{
	const struct scenario sc[] = {
		{ "create", 3, ONE(reg(0, 10, 0, 100, 8, 5000)),
		  .want = MEMSLOT_RULE_OK },
		{ "create logging", 3,
		  ONE(reg(0, 10, MEMSLOT_MEM_LOG_DIRTY_PAGES, 100, 8, 5000)),
		  .want = MEMSLOT_RULE_OK },
		{ "create in AS 1", 3, ONE(reg(1, 7, 0, 100, 8, 5000)),
		  .want = MEMSLOT_RULE_OK },
		{ "delete", 3, ONE(reg(0, 1, 0, 0, 0, 0)),
		  .want = MEMSLOT_RULE_OK },
		{ "move", 3, ONE(reg(0, 1, 0, 200, 4, 1008)),
		  .want = MEMSLOT_RULE_OK },
		{ "move onto own range", 3, ONE(reg(0, 1, 0, 10, 4, 1008)),
		  .want = MEMSLOT_RULE_OK },
		{ "flags only", 3,
		  ONE(reg(0, 1, MEMSLOT_MEM_LOG_DIRTY_PAGES, 8, 4, 1008)),
		  .want = MEMSLOT_RULE_OK },
		/* Slot 2 logs: a move shares its bitmap, the others free it. */
		{ "move logging", 3,
		  ONE(reg(0, 2, MEMSLOT_MEM_LOG_DIRTY_PAGES, 800, 4, 1016)),
		  .want = MEMSLOT_RULE_OK },
		{ "logging off", 3, ONE(reg(0, 2, 0, 16, 4, 1016)),
		  .want = MEMSLOT_RULE_OK },
		{ "delete logging", 3, ONE(reg(0, 2, 0, 0, 0, 0)),
		  .want = MEMSLOT_RULE_OK },
		{ "no-op", 3, ONE(reg(0, 1, 0, 8, 4, 1008)),
		  .want = MEMSLOT_RULE_NOOP },
		{ "internal create", 3, ONE(reg(0, 32765, 0, 300, 4, 9000)),
		  .internal = true, .want = MEMSLOT_RULE_OK },
		{ "internal delete", 0, ONE(reg(1, 0, 0, 0, 0, 0)),
		  .internal = true, .want = MEMSLOT_RULE_OK },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(sc) / sizeof(sc[0]); i++)
		run_scenario(&sc[i]);
}

static void test_transactions(void **state)
{
	const struct scenario sc[] = {
		/* slot 1 (gfn 8..11) becomes slots 1 (8..9) and 5 (10..11) */
		{ "txn split", 3,
		  TXN(3, reg(0, 1, 0, 0, 0, 0), reg(0, 1, 0, 8, 2, 1008),
		      reg(0, 5, 0, 10, 2, 1010)),
		  .want = MEMSLOT_RULE_OK },
		/* slots 1 and 2 (gfn 8..19 with the hole) become one */
		{ "txn merge", 3,
		  TXN(3, reg(0, 2, 0, 0, 0, 0), reg(0, 1, 0, 0, 0, 0),
		      reg(0, 1, 0, 8, 12, 1008)),
		  .want = MEMSLOT_RULE_OK },
		{ "txn resize", 3,
		  TXN(2, reg(0, 2, 0, 0, 0, 0), reg(0, 2, 0, 16, 8, 1016)),
		  .want = MEMSLOT_RULE_OK },
		{ "txn create two", 3,
		  TXN(2, reg(0, 20, 0, 500, 1, 1), reg(0, 21, 0, 501, 1, 2)),
		  .want = MEMSLOT_RULE_OK },
		{ "txn move and flags", 3,
		  TXN(2, reg(0, 1, 0, 600, 4, 1008), reg(0, 2, 0, 16, 4, 1016)),
		  .want = MEMSLOT_RULE_OK },
		/* Two fresh bitmaps: the second failing frees the first. */
		{ "txn two logging", 3,
		  TXN(2, reg(0, 20, MEMSLOT_MEM_LOG_DIRTY_PAGES, 500, 1, 1),
		      reg(0, 21, MEMSLOT_MEM_LOG_DIRTY_PAGES, 501, 70, 2)),
		  .want = MEMSLOT_RULE_OK },
		{ "txn resize logging", 3,
		  TXN(2, reg(0, 2, 0, 0, 0, 0),
		      reg(0, 2, MEMSLOT_MEM_LOG_DIRTY_PAGES, 16, 8, 1016)),
		  .want = MEMSLOT_RULE_OK },
		{ "txn four", 4,
		  TXN(4, reg(0, 3, 0, 0, 0, 0), reg(0, 0, 0, 700, 4, 1000),
		      reg(0, 9, 0, 24, 4, 1), reg(0, 1, 0, 8, 4, 1008)),
		  .want = MEMSLOT_RULE_OK },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(sc) / sizeof(sc[0]); i++)
		run_scenario(&sc[i]);
}

/* The same changes made deferred: the retire record is one more
 * allocation of the reserve stage, and a failure anywhere changes nothing. */
static void test_deferred_ops(void **state)
{
	const struct scenario sc[] = {
		{ "deferred create", 3, ONE(reg(0, 10, 0, 100, 8, 5000)),
		  .deferred = true },
		{ "deferred delete", 3, ONE(reg(0, 1, 0, 0, 0, 0)),
		  .deferred = true },
		{ "deferred move", 3, ONE(reg(0, 1, 0, 200, 4, 1008)),
		  .deferred = true },
		{ "deferred flags", 3,
		  ONE(reg(0, 1, MEMSLOT_MEM_LOG_DIRTY_PAGES, 8, 4, 1008)),
		  .deferred = true },
		{ "deferred delete logging", 3, ONE(reg(0, 2, 0, 0, 0, 0)),
		  .deferred = true },
		{ "deferred txn split", 3,
		  TXN(3, reg(0, 1, 0, 0, 0, 0), reg(0, 1, 0, 8, 2, 1008),
		      reg(0, 5, 0, 10, 2, 1010)),
		  .deferred = true },
		{ "deferred txn merge", 3,
		  TXN(3, reg(0, 2, 0, 0, 0, 0), reg(0, 1, 0, 0, 0, 0),
		      reg(0, 1, 0, 8, 12, 1008)),
		  .deferred = true },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(sc) / sizeof(sc[0]); i++)
		run_scenario(&sc[i]);
}

/*
 * Deferred changes on a VM whose reclaim thread has stocked the spares:
 * objects come from the stock, and a failure after some were taken (the
 * bitmaps, the change list, the sort room and the large retire record
 * still come from the allocator) must give them back to the spares.
 */
static void test_deferred_warm(void **state)
{
	struct scenario sc[] = {
		{ "warm deferred create", 3, ONE(reg(0, 10, 0, 100, 8, 5000)),
		  .deferred = true, .warm = 4 },
		{ "warm deferred delete logging", 3,
		  ONE(reg(0, 2, 0, 0, 0, 0)), .deferred = true, .warm = 4 },
		{ "warm deferred txn split", 3,
		  TXN(3, reg(0, 1, 0, 0, 0, 0), reg(0, 1, 0, 8, 2, 1008),
		      reg(0, 5, 0, 10, 2, 1010)),
		  .deferred = true, .warm = 4 },
		{ "warm deferred 36 creates", 3, .nreq = 36, .deferred = true,
		  .warm = 4 },
	};

	(void)state;
	for (uint32_t i = 0; i < 36; i++)
		sc[3].req[i] = reg(0, 10 + i, i % 3 ? 0 :
				   MEMSLOT_MEM_LOG_DIRTY_PAGES,
				   100 + 4ull * i, 4, 3000 + 4ull * (i % 5));
	for (size_t i = 0; i < sizeof(sc) / sizeof(sc[0]); i++)
		run_scenario(&sc[i]);
}

/* In steady state a single deferred change neither allocates nor frees on
 * the writer's thread: the reclaim thread does both, ahead of time. */
static void test_deferred_steady(void **state)
{
	struct memslot_vm *vm = setup(3);
	struct memslot_txn_result res = { 0 };
	struct memslot_region r;

	(void)state;
	warm_up(vm, 4);
	for (unsigned int i = 0; i < 40; i++) {
		r = reg(0, 10 + i % 4, 0, 100 + 8ull * (i % 4), i % 8 < 4 ? 4 : 0,
			5000 + 8ull * (i % 4));
		failer.owner_mallocs = failer.owner_frees = 0;
		assert_int_equal(memslot_set_regions_deferred(vm, &r, 1, &res),
				 0);
		assert_int_equal(failer.owner_mallocs, 0);
		assert_int_equal(failer.owner_frees, 0);
		assert_int_equal(memslot_vm_wait(vm, res.ticket), 0);
	}
	memslot_vm_destroy(vm);
	assert_int_equal(failer.live, 0);
}

/* Registering a listener grows the VM's list: a failure registers
 * nothing, and the listeners already there keep working. */
static void test_listener_register(void **state)
{
	struct memslot_listener l[8];
	struct memslot_vm *vm = setup(1);
	struct memslot_region r = reg(0, 5, 0, 400, 1, 7000);
	size_t ok = 0;

	(void)state;
	memset(l, 0, sizeof(l));
	for (size_t i = 0; i < 8; i++) {
		l[i].size = sizeof(l[i]);
		arm(0);
		if (memslot_listener_register(vm, &l[i]) == 0) {
			ok++;
		} else {
			disarm();
			assert_int_equal(memslot_listener_unregister(vm, &l[i]),
					 -ENOENT);
			assert_int_equal(memslot_listener_register(vm, &l[i]),
					 0);
			ok++;
		}
		disarm();
		cases++;
	}
	assert_int_equal(ok, 8);
	assert_int_equal(memslot_set_region(vm, &r, NULL), 0);
	for (size_t i = 0; i < 8; i++)
		assert_int_equal(memslot_listener_unregister(vm, &l[i]), 0);
	memslot_vm_destroy(vm);
	assert_int_equal(failer.live, 0);
}

/* Transactions with enough creates that the indexes are rebuilt in bulk
 * (set_bulk_pays()), alone and mixed with a delete, a move and a flags
 * change that edit the same indexes first. */
static void test_bulk_transactions(void **state)
{
	struct scenario plain = { "txn bulk 36 creates", 3, .nreq = 36,
				  .want = MEMSLOT_RULE_OK };
	struct scenario mixed = { "txn bulk mixed", 3, .nreq = 37,
				  .want = MEMSLOT_RULE_OK };

	(void)state;
	for (uint32_t i = 0; i < 36; i++)
		plain.req[i] = reg(0, 10 + i, i % 3 ? 0 :
				   MEMSLOT_MEM_LOG_DIRTY_PAGES,
				   100 + 4ull * i, 4, 3000 + 4ull * (i % 5));
	mixed.req[0] = reg(0, 0, 0, 0, 0, 0);
	mixed.req[1] = reg(0, 1, 0, 900, 4, 1008);
	mixed.req[2] = reg(0, 2, 0, 16, 4, 1016);
	for (uint32_t i = 0; i < 34; i++)
		mixed.req[3 + i] = reg(0, 10 + i, 0, 100 + 4ull * i, 4,
				       3000 + 4ull * i);
	run_scenario(&plain);
	run_scenario(&mixed);
}

/* Creates and deletes where the B+ trees (gfn, hva and id indexes) split
 * or merge (16 keys per node: 16/17, 256/257) and the id map grows. */
static void test_growth_points(void **state)
{
	static const unsigned int sizes[] = { 15, 16, 17, 127, 128, 129,
					      255, 256, 257, 511, 512, 513 };
	char names[3][sizeof(sizes) / sizeof(sizes[0])][40];

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned int k = sizes[i];
		struct scenario create = {
			names[0][i], k, ONE(reg(0, k, 0, 8ull * k, 4, 7)),
			.want = MEMSLOT_RULE_OK,
		};
		struct scenario del = {
			names[1][i], k, ONE(reg(0, k - 1, 0, 0, 0, 0)),
			.want = MEMSLOT_RULE_OK,
		};
		/* Deferred: the reserve stage also takes a retire record
		 * (before the id map grows: the map keeps its growth). */
		struct scenario dcreate = {
			names[2][i], k, ONE(reg(0, k, 0, 8ull * k, 4, 7)),
			.want = MEMSLOT_RULE_OK, .deferred = true,
		};

		snprintf(names[0][i], sizeof(names[0][i]), "create at %u", k);
		snprintf(names[1][i], sizeof(names[1][i]), "delete at %u", k);
		snprintf(names[2][i], sizeof(names[2][i]),
			 "deferred create at %u", k);
		run_scenario(&create);
		run_scenario(&del);
		run_scenario(&dcreate);
	}
}

static void test_vcpu_create(void **state)
{
	struct memslot_vm *vm;
	long n;

	(void)state;
	for (n = 0;; n++) {
		struct memslot_vcpu *vcpu = NULL;
		struct tc_layout before = { 0 }, now = { 0 };
		int r;

		vm = setup(3);
		snap_take(&before, vm, true);
		arm(n);
		r = memslot_vcpu_create(vm, &vcpu);
		disarm();
		cases++;
		snap_take(&now, vm, true);
		assert_true(tc_layout_equal(&before, &now));
		if (r) {
			assert_int_equal(r, -ENOMEM);
			assert_int_equal(memslot_vcpu_create(vm, &vcpu), 0);
		}
		memslot_read_lock(vm);
		assert_non_null(memslot_vcpu_gfn_to_slot(vcpu, 0, 9));
		memslot_read_unlock(vm);
		memslot_vcpu_destroy(vcpu);
		memslot_vm_destroy(vm);
		assert_int_equal(failer.live, 0);
		tc_layout_free(&before);
		tc_layout_free(&now);
		if (!r)
			break;
	}
	printf("  %-28s %ld failing allocation points\n", "vcpu create", n);
}

static void vm_create_case(unsigned int nr_as, const char *name)
{
	struct memslot_config cfg;
	long n;

	config(&cfg);
	cfg.nr_as = nr_as;
	for (n = 0;; n++) {
		struct memslot_vm *vm = NULL;
		struct memslot_region r = reg(nr_as - 1, 1, 0, 0, 4, 1);
		int err;

		arm(n);
		err = memslot_vm_create(&cfg, &vm);
		disarm();
		cases++;
		if (err) {
			assert_int_equal(err, -ENOMEM);
			assert_null(vm);
			assert_int_equal(failer.live, 0);
			assert_int_equal(memslot_vm_create(&cfg, &vm), 0);
		}
		/* the VM works */
		assert_int_equal(memslot_set_region(vm, &r, NULL), 0);
		memslot_vm_destroy(vm);
		assert_int_equal(failer.live, 0);
		if (!err)
			break;
	}
	printf("  %-28s %ld failing allocation points\n", name, n);
}

static void test_vm_create(void **state)
{
	(void)state;
	vm_create_case(1, "vm create (1 AS)");
	vm_create_case(2, "vm create (2 AS)");
}

static int report_cases(void **state)
{
	(void)state;
	printf("%lu (operation, N) cases\n", cases);
	return 0;
}

/* A failed test leaks its VM; start the next one from a clean count. */
static int reset(void **state)
{
	(void)state;
	disarm();
	failer.live = 0;
	failer.blocks = 0;
	tc_alloc_watch_thread(&failer);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_single_ops, reset),
		cmocka_unit_test_setup(test_transactions, reset),
		cmocka_unit_test_setup(test_bulk_transactions, reset),
		cmocka_unit_test_setup(test_growth_points, reset),
		cmocka_unit_test_setup(test_deferred_ops, reset),
		cmocka_unit_test_setup(test_deferred_warm, reset),
		cmocka_unit_test_setup(test_deferred_steady, reset),
		cmocka_unit_test_setup(test_listener_register, reset),
		cmocka_unit_test_setup(test_vcpu_create, reset),
		cmocka_unit_test_setup(test_vm_create, reset),
	};

	tc_alloc_init(&failer);
	return cmocka_run_group_tests(tests, NULL, report_cases);
}
