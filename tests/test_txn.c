/* SPDX-License-Identifier: MIT */
/*
 * Tests of memslot_set_regions(), the multi-slot transaction.
 *
 * The layout a test expects is written out as a table and compared with a
 * full walk of the active set.  The flush hook looks at the layout readers
 * see in the middle of a batch (the INVALID phase) and counts what it
 * finds, because the hook runs under the writer lock and must not jump out
 * of it with a failed assertion.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <memslot/memslot.h>

#include "common.h"

#define PAGE TC_PAGE
#define HVA 0x10000000ull
#define MAX_SLOTS 16

/* One slot as a walk sees it. */
struct shape {
	uint32_t id;
	uint64_t base;
	uint64_t npages;
	uint64_t hva;
	uint32_t flags;
};

struct layout {
	size_t n;
	struct shape s[MAX_SLOTS];
};

struct fixture {
	struct memslot_vm *vm;
	struct memslot_config cfg;
	struct memslot_callbacks cb;
	struct tc_alloc alloc;	/* counts bytes, fails on request */
	/* What the flush hook saw: the layout at the first call, over the
	 * gfn window [probe_lo, probe_hi). */
	int flushes;
	int prepares;
	int commits;
	uint64_t probe_lo;
	uint64_t probe_hi;
	struct layout mid;
	int mid_holes;		/* gfns of the old layout found in no slot */
	int mid_valid;		/* of those found, not INVALID */
	int mid_hva_ok;		/* translations that did not fail */
	struct tc_layout before; /* the VM before the batch */
};

static struct shape shape_of(const struct memslot_slot *s)
{
	struct shape sh = {
		.id = memslot_slot_id(s),
		.base = memslot_slot_base_gfn(s),
		.npages = memslot_slot_npages(s),
		.hva = memslot_slot_hva(s),
		.flags = memslot_slot_flags(s),
	};

	return sh;
}

/* Every slot of @as_id, ascending; the caller holds a read section. */
static void walk(struct memslot_vm *vm, unsigned int as_id, struct layout *l)
{
	struct memslot_gfn_iter it;
	const struct memslot_slot *s;

	l->n = 0;
	memslot_gfn_iter_init(&it, vm, as_id, 0, UINT64_MAX);
	while ((s = memslot_gfn_iter_next(&it)) && l->n < MAX_SLOTS)
		l->s[l->n++] = shape_of(s);
}

static void snapshot(struct fixture *f, unsigned int as_id, struct layout *l)
{
	memslot_read_lock(f->vm);
	walk(f->vm, as_id, l);
	memslot_read_unlock(f->vm);
}

/* The whole VM, slot pointers included, to show a failure changed nothing. */
static void take_before(struct fixture *f, struct tc_layout *l)
{
	tc_layout_take(l, f->vm, f->cfg.nr_as, true);
}

/* Where the old layout had memory, the INVALID phase must still find a
 * slot for every gfn (never a hole) and that slot must not translate. */
static void probe_mid(struct fixture *f)
{
	memslot_read_lock(f->vm);
	walk(f->vm, 0, &f->mid);
	for (uint64_t g = f->probe_lo; g < f->probe_hi; g++) {
		const struct memslot_slot *s = memslot_gfn_to_slot(f->vm, 0, g);
		const struct memslot_slot *t = memslot_search(f->vm, 0, g, false);
		uint64_t hva;

		if (!s || s != t) {
			f->mid_holes++;
			continue;
		}
		f->mid_valid += !(memslot_slot_flags(s) & MEMSLOT_INVALID);
		f->mid_hva_ok += memslot_gfn_to_hva(f->vm, 0, g, false, &hva) == 0;
	}
	memslot_read_unlock(f->vm);
}

static void on_flush(void *ctx, const struct memslot_slot *old)
{
	struct fixture *f = ctx;

	(void)old;
	if (f->flushes++ == 0)
		probe_mid(f);
}

static int on_prepare(void *ctx, const struct memslot_slot *old,
		      const struct memslot_slot *new_slot,
		      enum memslot_change change)
{
	struct fixture *f = ctx;

	(void)old;
	(void)new_slot;
	(void)change;
	f->prepares++;
	return 0;
}

static void on_commit(void *ctx, const struct memslot_slot *old,
		      const struct memslot_slot *new_slot,
		      enum memslot_change change)
{
	struct fixture *f = ctx;

	(void)old;
	(void)new_slot;
	(void)change;
	f->commits++;
}

static struct fixture *fixture_new(unsigned int nr_as)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	memslot_config_init_x86_64(&f->cfg);
	f->cfg.nr_as = nr_as;
	f->cfg.rcu = memslot_rcu_none();
	f->cb = (struct memslot_callbacks){
		.size = sizeof(f->cb), .flush = on_flush,
		.prepare = on_prepare, .commit = on_commit, .ctx = f,
	};
	f->cfg.callbacks = &f->cb;
	tc_alloc_init(&f->alloc);
	f->cfg.alloc = &f->alloc.ops;
	assert_int_equal(memslot_vm_create(&f->cfg, &f->vm), 0);
	return f;
}

/* Destroying the VM gives back every byte: nothing leaked, including on
 * the failure paths the test took. */
static void fixture_free(struct fixture *f)
{
	memslot_vm_destroy(f->vm);
	assert_int_equal(f->alloc.live, 0);
	tc_layout_free(&f->before);
	free(f);
}

/* Slot @id of @as_id over @npages pages at @gfn, backed at byte @hva. */
static struct memslot_region reg(unsigned int as_id, uint32_t id,
				 uint64_t gfn, uint64_t npages, uint64_t hva,
				 uint32_t flags)
{
	return tc_region_pages(as_id, id, flags, gfn, npages, hva);
}

static struct memslot_region del(uint32_t id)
{
	return reg(0, id, 0, 0, 0, 0);
}

static void add(struct fixture *f, uint32_t id, uint64_t gfn, uint64_t npages,
		uint64_t hva)
{
	struct memslot_region r = reg(0, id, gfn, npages, hva, 0);

	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
}

static void reset_counts(struct fixture *f)
{
	f->flushes = f->prepares = f->commits = 0;
	f->mid_holes = f->mid_valid = f->mid_hva_ok = 0;
	memset(&f->mid, 0, sizeof(f->mid));
}

static void assert_layout(const struct layout *got, const struct shape *want,
			  size_t n)
{
	assert_int_equal(got->n, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(got->s[i].id, want[i].id);
		assert_int_equal(got->s[i].base, want[i].base);
		assert_int_equal(got->s[i].npages, want[i].npages);
		assert_int_equal(got->s[i].hva, want[i].hva);
		assert_int_equal(got->s[i].flags, want[i].flags);
	}
}

static void assert_active(struct fixture *f, const struct shape *want,
			  size_t n)
{
	struct layout l;

	snapshot(f, 0, &l);
	assert_layout(&l, want, n);
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- shapes of the layout ------------------------------------------- */

static void test_split(void **state)
{
	struct fixture *f = fixture_new(1);
	struct memslot_region r[] = {
		del(1),
		reg(0, 1, 0x100, 0x10, HVA, 0),
		reg(0, 2, 0x110, 0x10, HVA + 0x10 * PAGE, 0),
		reg(0, 3, 0x120, 0x10, HVA + 0x20 * PAGE, 0),
	};
	const struct shape mid[] = {
		{ 1, 0x100, 0x30, HVA, MEMSLOT_INVALID },
	};
	const struct shape after[] = {
		{ 1, 0x100, 0x10, HVA, 0 },
		{ 2, 0x110, 0x10, HVA + 0x10 * PAGE, 0 },
		{ 3, 0x120, 0x10, HVA + 0x20 * PAGE, 0 },
	};
	struct memslot_txn_result res = { 0 };
	uint64_t gen;

	(void)state;
	add(f, 1, 0x100, 0x30, HVA);
	gen = memslot_generation(f->vm, 0);
	reset_counts(f);
	f->probe_lo = 0x100;
	f->probe_hi = 0x130;
	assert_int_equal(memslot_set_regions(f->vm, r, NELEM(r), &res), 0);
	assert_int_equal(res.rule, MEMSLOT_RULE_OK);
	/* The INVALID phase: the whole old slot, no hole, no translation. */
	assert_int_equal(f->flushes, 1);
	assert_layout(&f->mid, mid, NELEM(mid));
	assert_int_equal(f->mid_holes, 0);
	assert_int_equal(f->mid_valid, 0);
	assert_int_equal(f->mid_hva_ok, 0);
	assert_active(f, after, NELEM(after));
	assert_int_equal(memslot_generation(f->vm, 0), gen + 2);
	fixture_free(f);
}

static void test_merge(void **state)
{
	struct fixture *f = fixture_new(1);
	struct memslot_region r[] = {
		del(1), del(2), reg(0, 7, 0x100, 0x30, HVA, 0),
	};
	const struct shape mid[] = {
		{ 1, 0x100, 0x10, HVA, MEMSLOT_INVALID },
		{ 2, 0x110, 0x20, HVA + 0x10 * PAGE, MEMSLOT_INVALID },
	};
	const struct shape after[] = { { 7, 0x100, 0x30, HVA, 0 } };
	struct memslot_txn_result res = { 0 };
	struct memslot_stats st;
	uint64_t gen;

	(void)state;
	add(f, 1, 0x100, 0x10, HVA);
	add(f, 2, 0x110, 0x20, HVA + 0x10 * PAGE);
	gen = memslot_generation(f->vm, 0);
	reset_counts(f);
	f->probe_lo = 0x100;
	f->probe_hi = 0x130;
	assert_int_equal(memslot_set_regions(f->vm, r, NELEM(r), &res), 0);
	/* Both halves are INVALID at once: one swap published them. */
	assert_int_equal(f->flushes, 2);
	assert_layout(&f->mid, mid, NELEM(mid));
	assert_int_equal(f->mid_holes, 0);
	assert_int_equal(f->mid_valid, 0);
	assert_int_equal(f->prepares, 3);
	assert_int_equal(f->commits, 3);
	assert_active(f, after, NELEM(after));
	assert_int_equal(memslot_generation(f->vm, 0), gen + 2);
	assert_int_equal(memslot_vm_stats(f->vm, 0, &st), 0);
	assert_int_equal(st.used_ids, 1);
	assert_int_equal(st.total_pages, 0x30);
	fixture_free(f);
}

/* Delete and create of one id: a new size (and, second case, a new base
 * and hva) must take effect, with the new request's user data. */
static void test_resize(void **state)
{
	struct fixture *f = fixture_new(1);
	struct memslot_region grow[] = {
		del(1), reg(0, 1, 0x100, 0x20, HVA, 0),
	};
	struct memslot_region elsewhere[] = {
		del(1), reg(0, 1, 0x400, 0x8, HVA + 0x100 * PAGE, 0),
	};
	const struct shape after_grow[] = { { 1, 0x100, 0x20, HVA, 0 } };
	const struct shape after_else[] = {
		{ 1, 0x400, 0x8, HVA + 0x100 * PAGE, 0 },
	};
	struct memslot_change_info ch[4];
	struct memslot_txn_result res = { .changes = ch, .max_changes = 4 };
	const struct memslot_slot *s;
	struct memslot_stats st;
	int tag;

	(void)state;
	add(f, 1, 0x100, 0x10, HVA);
	grow[1].user_data = &tag;
	assert_int_equal(memslot_set_regions(f->vm, grow, 2, &res), 0);
	assert_active(f, after_grow, NELEM(after_grow));
	memslot_read_lock(f->vm);
	s = memslot_id_to_slot(f->vm, 0, 1);
	assert_ptr_equal(memslot_slot_user_data(s), &tag);
	memslot_read_unlock(f->vm);
	/* A VMM replays it as KVM must see it: delete, then create. */
	assert_int_equal(res.nchanges, 2);
	assert_int_equal(ch[0].change, MEMSLOT_CHANGE_DELETE);
	assert_int_equal(ch[0].old_region.memory_size, 0x10 * PAGE);
	assert_int_equal(ch[1].change, MEMSLOT_CHANGE_CREATE);
	assert_int_equal(ch[1].new_region.memory_size, 0x20 * PAGE);
	assert_int_equal(memslot_vm_stats(f->vm, 0, &st), 0);
	assert_int_equal(st.total_pages, 0x20);
	assert_int_equal(memslot_set_regions(f->vm, elsewhere, 2, &res), 0);
	assert_active(f, after_else, NELEM(after_else));
	assert_int_equal(res.nchanges, 2);
	assert_int_equal(memslot_vm_stats(f->vm, 0, &st), 0);
	assert_int_equal(st.total_pages, 0x8);
	assert_int_equal(st.used_ids, 1);
	fixture_free(f);
}

/* Shift three adjacent slots up by one slot's width: each target overlaps
 * the next slot's old range, so the requests go from the top down. */
static void test_move_group(void **state)
{
	struct fixture *f = fixture_new(1);
	struct memslot_region r[] = {
		reg(0, 3, 0x130, 0x10, HVA + 0x20 * PAGE, 0),
		reg(0, 2, 0x120, 0x10, HVA + 0x10 * PAGE, 0),
		reg(0, 1, 0x110, 0x10, HVA, 0),
	};
	const struct shape after[] = {
		{ 1, 0x110, 0x10, HVA, 0 },
		{ 2, 0x120, 0x10, HVA + 0x10 * PAGE, 0 },
		{ 3, 0x130, 0x10, HVA + 0x20 * PAGE, 0 },
	};
	struct memslot_change_info ch[3];
	struct memslot_txn_result res = { .changes = ch, .max_changes = 3 };
	uint64_t gen;

	(void)state;
	add(f, 1, 0x100, 0x10, HVA);
	add(f, 2, 0x110, 0x10, HVA + 0x10 * PAGE);
	add(f, 3, 0x120, 0x10, HVA + 0x20 * PAGE);
	gen = memslot_generation(f->vm, 0);
	reset_counts(f);
	f->probe_lo = 0x100;
	f->probe_hi = 0x130;
	assert_int_equal(memslot_set_regions(f->vm, r, NELEM(r), &res), 0);
	assert_int_equal(f->flushes, 3);
	assert_int_equal(f->mid.n, 3);
	assert_int_equal(f->mid_holes, 0);
	assert_int_equal(f->mid_valid, 0);
	assert_active(f, after, NELEM(after));
	assert_int_equal(memslot_generation(f->vm, 0), gen + 2);
	assert_int_equal(res.nchanges, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(ch[i].change, MEMSLOT_CHANGE_MOVE);
		assert_int_equal(ch[i].new_region.guest_phys_addr,
				 ch[i].old_region.guest_phys_addr + 0x10 * PAGE);
	}
	/* In the wrong order the first move overlaps slot 2. */
	r[0] = reg(0, 1, 0x120, 0x10, HVA, 0);
	r[1] = reg(0, 2, 0x130, 0x10, HVA + 0x10 * PAGE, 0);
	r[2] = reg(0, 3, 0x140, 0x10, HVA + 0x20 * PAGE, 0);
	assert_int_equal(memslot_set_regions(f->vm, r, 3, &res), -EEXIST);
	assert_int_equal(res.failed, 0);
	assert_int_equal(res.rule, MEMSLOT_RULE_OVERLAP);
	assert_active(f, after, NELEM(after));
	fixture_free(f);
}

/* Create then delete of one id nets out: nothing happens at all. */
static void test_collapse(void **state)
{
	struct fixture *f = fixture_new(1);
	struct memslot_region r[] = {
		reg(0, 4, 0x800, 0x10, HVA, 0),
		reg(0, 4, 0x800, 0x10, HVA, MEMSLOT_MEM_LOG_DIRTY_PAGES),
		reg(0, 4, 0x900, 0x10, HVA, MEMSLOT_MEM_LOG_DIRTY_PAGES),
	};
	const struct shape one[] = {
		{ 4, 0x900, 0x10, HVA, MEMSLOT_MEM_LOG_DIRTY_PAGES },
	};
	struct memslot_change_info ch[2];
	struct memslot_txn_result res = { .changes = ch, .max_changes = 2 };
	struct memslot_region gone[] = {
		reg(0, 5, 0x200, 0x10, HVA, 0), del(5),
	};
	uint64_t gen = memslot_generation(f->vm, 0);

	(void)state;
	reset_counts(f);
	assert_int_equal(memslot_set_regions(f->vm, r, NELEM(r), &res), 0);
	assert_int_equal(res.nchanges, 1);
	assert_int_equal(ch[0].change, MEMSLOT_CHANGE_CREATE);
	assert_int_equal(ch[0].new_region.guest_phys_addr, 0x900 * PAGE);
	assert_int_equal(ch[0].new_region.flags, MEMSLOT_MEM_LOG_DIRTY_PAGES);
	assert_active(f, one, 1);
	assert_int_equal(memslot_generation(f->vm, 0), gen + 1);
	assert_int_equal(f->commits, 1);
	gen = memslot_generation(f->vm, 0);
	assert_int_equal(memslot_set_regions(f->vm, gone, 2, &res), 0);
	assert_int_equal(res.nchanges, 0);
	assert_int_equal(memslot_generation(f->vm, 0), gen);
	assert_active(f, one, 1);
	fixture_free(f);
}

/* ---- failures change nothing ----------------------------------------- */

struct bad_case {
	struct memslot_region req;
	int err;
	enum memslot_rule rule;
};

static void expect_untouched(struct fixture *f, uint64_t gen)
{
	struct tc_layout now = { 0 };
	struct memslot_stats st;

	take_before(f, &now);
	tc_layout_assert_equal(&now, &f->before);
	tc_layout_free(&now);
	assert_int_equal(memslot_generation(f->vm, 0), gen);
	assert_int_equal(memslot_vm_stats(f->vm, 0, &st), 0);
	assert_int_equal(st.used_ids, f->before.nslots);
	/* The VM's count agrees with the allocator's (spare index nodes it
	 * keeps for later changes included); leaks show at destruction. */
	assert_int_equal(st.bytes, f->alloc.live);
	assert_int_equal(f->flushes + f->prepares + f->commits, 0);
}

static void test_failure_in_middle(void **state)
{
	struct fixture *f = fixture_new(1);
	const struct bad_case bad[] = {
		{ reg(0, 9, 0x105, 4, HVA, 0), -EEXIST, MEMSLOT_RULE_OVERLAP },
		/* overlaps the slot request 0 creates */
		{ reg(0, 9, 0x1008, 4, HVA, 0), -EEXIST, MEMSLOT_RULE_OVERLAP },
		{ reg(0, 9, 0x3000, 4, HVA, 1u << 7), -EINVAL,
		  MEMSLOT_RULE_FLAGS_UNKNOWN },
		{ del(12), -EINVAL, MEMSLOT_RULE_DELETE_MISSING },
		{ reg(0, 1, 0x100, 0x20, HVA, 0), -EINVAL, MEMSLOT_RULE_MODIFY },
		{ reg(0, 9, 0x3000, 4, HVA + 1, 0), -EINVAL, MEMSLOT_RULE_HVA },
	};
	struct memslot_region r[4];
	struct memslot_txn_result res = { 0 };
	uint64_t gen;

	(void)state;
	add(f, 1, 0x100, 0x10, HVA);
	add(f, 2, 0x200, 0x10, HVA + 0x10 * PAGE);
	take_before(f, &f->before);
	gen = memslot_generation(f->vm, 0);
	for (size_t i = 0; i < NELEM(bad); i++) {
		/* good, good (a delete), bad, good */
		r[0] = reg(0, 8, 0x1000, 0x10, HVA, 0);
		r[1] = del(2);
		r[2] = bad[i].req;
		r[3] = reg(0, 10, 0x2000, 0x10, HVA, 0);
		reset_counts(f);
		memset(&res, 0, sizeof(res));
		assert_int_equal(memslot_set_regions(f->vm, r, 4, &res),
				 bad[i].err);
		assert_int_equal(res.failed, 2);
		assert_int_equal(res.rule, bad[i].rule);
		expect_untouched(f, gen);
	}
	fixture_free(f);
}

/* Fail each allocation of a batch in turn, until the batch succeeds. */
static void test_allocation_failure(void **state)
{
	struct fixture *f = fixture_new(1);
	struct memslot_region r[] = {
		del(1),
		reg(0, 1, 0x100, 0x10, HVA, 0),
		reg(0, 3, 0x110, 0x20, HVA + 0x10 * PAGE, 0),
		reg(0, 2, 0x500, 0x10, HVA + 0x30 * PAGE, 0),
		reg(0, 4, 0x600, 0x10, HVA, MEMSLOT_MEM_LOG_DIRTY_PAGES),
	};
	struct memslot_txn_result res = { 0 };
	uint64_t gen;
	long k;
	int err;

	(void)state;
	add(f, 1, 0x100, 0x30, HVA);
	add(f, 2, 0x400, 0x10, HVA + 0x30 * PAGE);
	take_before(f, &f->before);
	gen = memslot_generation(f->vm, 0);
	for (k = 0; k < 1000; k++) {
		reset_counts(f);
		tc_alloc_fail_nth(&f->alloc, k);
		memset(&res, 0, sizeof(res));
		err = memslot_set_regions(f->vm, r, NELEM(r), &res);
		if (!err)
			break;
		assert_int_equal(err, -ENOMEM);
		assert_int_equal(res.rule, MEMSLOT_RULE_NOMEM);
		assert_true(res.failed <= NELEM(r));
		/* The first allocation is the batch's own bookkeeping. */
		if (k == 0)
			assert_int_equal(res.failed, NELEM(r));
		tc_alloc_disarm(&f->alloc);
		expect_untouched(f, gen);
	}
	tc_alloc_disarm(&f->alloc);
	/* Some allocation was failed before the batch got through. */
	assert_true(k > 2);
	assert_int_equal(err, 0);
	assert_int_equal(memslot_generation(f->vm, 0), gen + 2);
	fixture_free(f);
}

/* ---- the change list and the generation -------------------------------- */

static void test_change_list(void **state)
{
	struct fixture *f = fixture_new(1);
	/* Given in the reverse of the order the list reports. */
	struct memslot_region r[] = {
		reg(0, 9, 0x900, 0x10, HVA + 0x90 * PAGE, 0),
		reg(0, 3, 0x700, 0x10, HVA + 0x30 * PAGE, 0),
		reg(0, 2, 0x200, 0x10, HVA + 0x20 * PAGE,
		    MEMSLOT_MEM_LOG_DIRTY_PAGES),
		del(1),
	};
	const enum memslot_change kinds[] = {
		MEMSLOT_CHANGE_DELETE, MEMSLOT_CHANGE_FLAGS_ONLY,
		MEMSLOT_CHANGE_MOVE, MEMSLOT_CHANGE_CREATE,
	};
	const uint32_t ids[] = { 1, 2, 3, 9 };
	struct memslot_change_info ch[5];
	struct memslot_txn_result res = { .changes = ch, .max_changes = 5 };
	int tag;

	(void)state;
	add(f, 1, 0x100, 0x10, HVA + 0x10 * PAGE);
	add(f, 2, 0x200, 0x10, HVA + 0x20 * PAGE);
	add(f, 3, 0x300, 0x10, HVA + 0x30 * PAGE);
	r[0].user_data = &tag;
	memset(ch, 0xa5, sizeof(ch));
	assert_int_equal(memslot_set_regions(f->vm, r, NELEM(r), &res), 0);
	assert_int_equal(res.nchanges, 4);
	for (size_t i = 0; i < 4; i++) {
		const struct memslot_region *o = &ch[i].old_region;
		const struct memslot_region *n = &ch[i].new_region;

		assert_int_equal(ch[i].change, kinds[i]);
		if (kinds[i] != MEMSLOT_CHANGE_CREATE)
			assert_int_equal(o->slot, ids[i]);
		if (kinds[i] != MEMSLOT_CHANGE_DELETE)
			assert_int_equal(n->slot, ids[i]);
	}
	assert_int_equal(ch[0].old_region.guest_phys_addr, 0x100 * PAGE);
	assert_int_equal(ch[0].old_region.memory_size, 0x10 * PAGE);
	assert_int_equal(ch[0].new_region.memory_size, 0);
	assert_int_equal(ch[1].old_region.flags, 0);
	assert_int_equal(ch[1].new_region.flags, MEMSLOT_MEM_LOG_DIRTY_PAGES);
	assert_int_equal(ch[2].old_region.guest_phys_addr, 0x300 * PAGE);
	assert_int_equal(ch[2].new_region.guest_phys_addr, 0x700 * PAGE);
	assert_int_equal(ch[2].new_region.userspace_addr, HVA + 0x30 * PAGE);
	assert_int_equal(ch[3].old_region.memory_size, 0);
	assert_int_equal(ch[3].new_region.guest_phys_addr, 0x900 * PAGE);
	assert_ptr_equal(ch[3].new_region.user_data, &tag);
	/* The entry after the last was left alone. */
	assert_int_equal(((unsigned char *)&ch[4])[0], 0xa5);
	fixture_free(f);
}

static void test_change_list_truncated(void **state)
{
	struct fixture *f = fixture_new(1);
	struct memslot_region r[] = {
		reg(0, 7, 0x700, 0x10, HVA, 0),
		reg(0, 6, 0x600, 0x10, HVA, 0),
		del(1),
	};
	struct memslot_change_info ch[2];
	struct memslot_txn_result res = { .changes = ch, .max_changes = 1 };

	(void)state;
	add(f, 1, 0x100, 0x10, HVA);
	memset(ch, 0x5a, sizeof(ch));
	assert_int_equal(memslot_set_regions(f->vm, r, NELEM(r), &res), 0);
	assert_int_equal(res.nchanges, 3);
	assert_int_equal(ch[0].change, MEMSLOT_CHANGE_DELETE);
	assert_int_equal(((unsigned char *)&ch[1])[0], 0x5a);
	/* No list at all is fine too. */
	r[0] = del(7);
	r[1] = del(6);
	res.changes = NULL;
	res.max_changes = 0;
	assert_int_equal(memslot_set_regions(f->vm, r, 2, &res), 0);
	assert_int_equal(res.nchanges, 2);
	assert_int_equal(f->before.nslots, 0);
	fixture_free(f);
}

/*
 * A NULL change list with a non-zero max_changes counts as an empty list:
 * the batch goes through, nchanges is reported, nothing is written.
 */
static void test_change_list_null(void **state)
{
	struct fixture *f = fixture_new(1);
	struct memslot_region r[] = {
		reg(0, 7, 0x700, 0x10, HVA, 0),
		del(1),
	};
	const struct shape want[] = { { 7, 0x700, 0x10, HVA, 0 } };
	struct memslot_txn_result res = { .changes = NULL, .max_changes = 4 };

	(void)state;
	add(f, 1, 0x100, 0x10, HVA);
	assert_int_equal(memslot_set_regions(f->vm, r, NELEM(r), &res), 0);
	assert_int_equal(res.rule, MEMSLOT_RULE_OK);
	assert_int_equal(res.nchanges, 2);
	assert_active(f, want, NELEM(want));
	fixture_free(f);
}

static void test_generation_steps(void **state)
{
	struct fixture *f = fixture_new(2);
	struct memslot_region create[] = {
		reg(1, 1, 0x100, 0x10, HVA, 0),
		reg(1, 2, 0x200, 0x10, HVA, 0),
	};
	struct memslot_region flags[] = {
		reg(1, 1, 0x100, 0x10, HVA, MEMSLOT_MEM_LOG_DIRTY_PAGES),
		reg(1, 3, 0x300, 0x10, HVA, 0),
	};
	struct memslot_region move[] = {
		reg(1, 3, 0x400, 0x10, HVA, 0),
		reg(1, 1, 0x100, 0x10, HVA, 0),
	};
	struct memslot_region drop[] = { reg(1, 2, 0, 0, 0, 0) };
	struct memslot_txn_result res = { 0 };
	uint64_t g0 = memslot_generation(f->vm, 0);
	uint64_t g1 = memslot_generation(f->vm, 1);

	(void)state;
	assert_int_equal(g1 % 2, 1);
	assert_int_equal(memslot_set_regions(f->vm, create, 2, &res), 0);
	assert_int_equal(memslot_generation(f->vm, 1), g1 + 2);
	assert_int_equal(memslot_set_regions(f->vm, flags, 2, &res), 0);
	assert_int_equal(memslot_generation(f->vm, 1), g1 + 4);
	assert_int_equal(memslot_set_regions(f->vm, move, 2, &res), 0);
	assert_int_equal(memslot_generation(f->vm, 1), g1 + 8);
	assert_int_equal(memslot_set_regions(f->vm, drop, 1, &res), 0);
	assert_int_equal(memslot_generation(f->vm, 1), g1 + 12);
	/* The other address space never moved. */
	assert_int_equal(memslot_generation(f->vm, 0), g0);
	fixture_free(f);
}

static void test_two_address_spaces(void **state)
{
	struct fixture *f = fixture_new(2);
	struct memslot_region r[] = {
		reg(0, 1, 0x100, 0x10, HVA, 0),
		reg(1, 1, 0x100, 0x10, HVA, 0),
	};
	struct memslot_txn_result res = { 0 };
	struct layout l;
	uint64_t g0 = memslot_generation(f->vm, 0);
	uint64_t g1 = memslot_generation(f->vm, 1);

	(void)state;
	assert_int_equal(memslot_set_regions(f->vm, r, 2, &res), -EINVAL);
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.rule, MEMSLOT_RULE_AS_ID);
	assert_int_equal(memslot_generation(f->vm, 0), g0);
	assert_int_equal(memslot_generation(f->vm, 1), g1);
	snapshot(f, 0, &l);
	assert_int_equal(l.n, 0);
	snapshot(f, 1, &l);
	assert_int_equal(l.n, 0);
	fixture_free(f);
}

static void test_empty_batch(void **state)
{
	struct fixture *f = fixture_new(1);
	struct memslot_txn_result res = { .rule = MEMSLOT_RULE_COUNT,
					  .nchanges = 99 };
	uint64_t gen = memslot_generation(f->vm, 0);
	long allocs = f->alloc.calls;

	(void)state;
	assert_int_equal(memslot_set_regions(f->vm, NULL, 0, &res), 0);
	assert_int_equal(res.rule, MEMSLOT_RULE_OK);
	assert_int_equal(res.nchanges, 0);
	assert_int_equal(memslot_set_regions(f->vm, NULL, 0, NULL), 0);
	assert_int_equal(memslot_generation(f->vm, 0), gen);
	assert_int_equal(f->alloc.calls, allocs); /* not even bookkeeping */
	assert_int_equal(memslot_set_regions(f->vm, NULL, 1, &res), -EINVAL);
	fixture_free(f);
}

/* ---- batches of creates ------------------------------------------------ */

struct create_case {
	struct memslot_region req[4];
	int err;
	size_t failed;
	enum memslot_rule rule;
};

#define C(id, gfn, npages) reg(0, id, gfn, npages, HVA + (id) * 0x100 * PAGE, 0)

/*
 * Creates of new ids take a sorted check instead of request-by-request
 * staging: the verdict, the failing request and its rule must be the
 * ones of the requests taken in order, wherever the culprit pair sits in
 * gfn order, and repeated ids still count as changes of the first one.
 */
static void test_creates_verdicts(void **state)
{
	struct fixture *f = fixture_new(1);
	const struct create_case cases[] = {
		/* request 3 meets request 0; 1 and 2 lie between them */
		{ { C(3, 0x300, 0x10), C(6, 0x600, 0x10), C(4, 0x500, 0x10),
		    C(7, 0x308, 0x10) }, -EEXIST, 3, MEMSLOT_RULE_OVERLAP },
		/* the later request lies below the one it meets */
		{ { C(3, 0x308, 0x10), C(6, 0x600, 0x10), C(4, 0x500, 0x10),
		    C(7, 0x300, 0x10) }, -EEXIST, 3, MEMSLOT_RULE_OVERLAP },
		/* two overlapping pairs: the earlier culprit is reported */
		{ { C(3, 0x300, 0x10), C(6, 0x600, 0x10), C(4, 0x605, 0x10),
		    C(7, 0x30f, 0x10) }, -EEXIST, 2, MEMSLOT_RULE_OVERLAP },
		/* meets the slot already there */
		{ { C(3, 0x300, 0x10), C(6, 0x600, 0x10), C(9, 0x10f, 1),
		    C(7, 0x700, 0x10) }, -EEXIST, 2, MEMSLOT_RULE_OVERLAP },
		/* a bad request before an overlapping one */
		{ { C(3, 0x300, 0x10), reg(0, 6, 0x600, 0x10, HVA + 1, 0),
		    C(4, 0x300, 0x10), C(7, 0x700, 0x10) }, -EINVAL, 1,
		  MEMSLOT_RULE_HVA },
		/* id 3 again with another size: a modify KVM refuses */
		{ { C(3, 0x300, 0x10), C(6, 0x600, 0x10), C(3, 0x800, 0x20),
		    C(7, 0x700, 0x10) }, -EINVAL, 2, MEMSLOT_RULE_MODIFY },
		/* id 3 again, same size and hva, in a range id 6 holds */
		{ { C(3, 0x300, 0x10), C(6, 0x600, 0x10), C(3, 0x608, 0x10),
		    C(7, 0x700, 0x10) }, -EEXIST, 2, MEMSLOT_RULE_OVERLAP },
	};
	struct memslot_txn_result res = { 0 };
	uint64_t gen;

	(void)state;
	add(f, 1, 0x100, 0x10, HVA + 0x100 * PAGE);
	take_before(f, &f->before);
	gen = memslot_generation(f->vm, 0);
	for (size_t i = 0; i < NELEM(cases); i++) {
		reset_counts(f);
		memset(&res, 0, sizeof(res));
		assert_int_equal(memslot_set_regions(f->vm, cases[i].req, 4,
						     &res), cases[i].err);
		assert_int_equal(res.failed, cases[i].failed);
		assert_int_equal(res.rule, cases[i].rule);
		expect_untouched(f, gen);
	}
	fixture_free(f);
}

/* Repeated ids and an existing id go the general way and succeed. */
static void test_creates_repeat(void **state)
{
	struct fixture *f = fixture_new(1);
	struct memslot_region r[] = {
		C(3, 0x300, 0x10), C(6, 0x600, 0x10), C(3, 0x800, 0x10),
		reg(0, 1, 0x900, 0x10, HVA + 0x100 * PAGE, 0),
	};
	const struct shape want[] = {
		{ 6, 0x600, 0x10, HVA + 6 * 0x100 * PAGE, 0 },
		{ 3, 0x800, 0x10, HVA + 3 * 0x100 * PAGE, 0 },
		{ 1, 0x900, 0x10, HVA + 0x100 * PAGE, 0 },
	};

	(void)state;
	add(f, 1, 0x100, 0x10, HVA + 0x100 * PAGE);
	assert_int_equal(memslot_set_regions(f->vm, r, NELEM(r), NULL), 0);
	assert_active(f, want, NELEM(want));
	fixture_free(f);
}

#define MANY 300

/* Slot i of a large batch: shuffled ids, gfns and hvas; hvas of pairs
 * alias, so the hva index orders equal keys. */
static struct memslot_region many_region(unsigned int i)
{
	unsigned int id = (i * 7919) % MANY + 2;
	uint64_t gfn = 0x1000 + (uint64_t)((i * 131) % MANY) * 0x20;
	uint64_t hva = HVA + (uint64_t)((i * 17) % (MANY / 2)) * 0x10 * PAGE;

	return reg(0, id, gfn, 0x10, hva, 0);
}

/* Many creates in no order: every index finds every new slot. */
static void test_creates_many(void **state)
{
	struct fixture *f = fixture_new(1);
	struct memslot_region r[MANY];
	struct memslot_hva_iter it;
	struct memslot_hva_hit hit;
	size_t hits = 0;

	(void)state;
	add(f, 1, 0x100, 0x10, HVA);
	for (unsigned int i = 0; i < MANY; i++)
		r[i] = many_region(i);
	assert_int_equal(memslot_set_regions(f->vm, r, MANY, NULL), 0);
	memslot_read_lock(f->vm);
	for (unsigned int i = 0; i < MANY; i++) {
		const struct memslot_slot *s =
			memslot_search(f->vm, 0, r[i].guest_phys_addr / PAGE + 3,
				       false);

		assert_non_null(s);
		assert_int_equal(memslot_slot_id(s), r[i].slot);
		assert_ptr_equal(memslot_id_to_slot(f->vm, 0, r[i].slot), s);
	}
	memslot_read_unlock(f->vm);
	/* One page that slot 1 and two new slots map. */
	memslot_hva_iter_init(&it, f->vm, HVA, HVA + PAGE);
	while (memslot_hva_iter_next(&it, &hit))
		hits++;
	assert_int_equal(hits, 3);
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_resize),
		cmocka_unit_test(test_move_group),
		cmocka_unit_test(test_collapse),
		cmocka_unit_test(test_failure_in_middle),
		cmocka_unit_test(test_allocation_failure),
		cmocka_unit_test(test_change_list),
		cmocka_unit_test(test_change_list_truncated),
		cmocka_unit_test(test_change_list_null),
		cmocka_unit_test(test_generation_steps),
		cmocka_unit_test(test_two_address_spaces),
		cmocka_unit_test(test_empty_batch),
		cmocka_unit_test(test_creates_verdicts),
		cmocka_unit_test(test_creates_repeat),
		cmocka_unit_test(test_creates_many),
	};

	return cmocka_run_group_tests_name("txn", tests, NULL, NULL);
}
