/* SPDX-License-Identifier: MIT */
/*
 * Tests of lib/vcpu.c, the per-vCPU lookup cache.
 *
 * A correct cache returns the same answers as a search, so a hit cannot be
 * told from a miss by its result alone.  The tests therefore hide the
 * active set's gfn index for a moment (the private header allows it): with
 * no index, only a cached slot can still be found, and a lookup that finds
 * nothing proves the cache was dropped.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "vm.h"

#define PAGE TC_PAGE

struct fixture {
	struct memslot_vm *vm;
	struct memslot_vcpu *vcpu;
	struct memslot_config cfg;
	struct memslot_callbacks cb;
	/* Filled by the flush hook. */
	const struct memslot_slot *flush_old;
	/* What the vCPU found inside flush; the INVALID copy is freed when
	 * the change returns, so its fields are copied while it lives. */
	const struct memslot_slot *flush_seen;
	uint32_t flush_seen_flags;
	uint64_t flush_seen_base;
	uint64_t flush_gfn;
	int flush_calls;
};

static void on_flush(void *ctx, const struct memslot_slot *old);

static void fixture_init(struct fixture *f, unsigned int nr_as,
			 bool with_flush)
{
	memset(f, 0, sizeof(*f));
	memslot_config_init_x86_64(&f->cfg);
	f->cfg.rcu = memslot_rcu_none();
	f->cfg.nr_as = nr_as;
	f->cb.size = sizeof(f->cb);
	f->cb.flush = on_flush;
	f->cb.ctx = f;
	f->cfg.callbacks = with_flush ? &f->cb : NULL;
	assert_int_equal(memslot_vm_create(&f->cfg, &f->vm), 0);
	assert_int_equal(memslot_vcpu_create(f->vm, &f->vcpu), 0);
}

static void fixture_fini(struct fixture *f)
{
	memslot_vcpu_destroy(f->vcpu);
	memslot_vm_destroy(f->vm);
}

/* Set slot @id of @as_id to [@gfn, @gfn + @npages) backed at @hva. */
static int set_slot(struct fixture *f, unsigned int as_id, uint32_t id,
		    uint64_t gfn, uint64_t npages, uint64_t hva)
{
	struct memslot_region r = tc_region_pages(as_id, id, 0, gfn, npages,
						  hva);
	enum memslot_rule rule;

	return memslot_set_region(f->vm, &r, &rule);
}

static const struct memslot_slot *vlook(struct fixture *f, unsigned int as_id,
					uint64_t gfn)
{
	const struct memslot_slot *s;

	memslot_read_lock(f->vm);
	s = memslot_vcpu_gfn_to_slot(f->vcpu, as_id, gfn);
	memslot_read_unlock(f->vm);
	return s;
}

/* A vCPU lookup while the active set of @as_id has no gfn index: it can
 * only be answered from the vCPU's cache. */
static const struct memslot_slot *cache_only(struct fixture *f,
					     unsigned int as_id, uint64_t gfn)
{
	struct memslot_set *set = vm_active(f->vm, as_id);
	struct bpt saved = set->gfn;
	const struct memslot_slot *s;

	bpt_init(&set->gfn, NULL);
	/* The index really is hidden: a plain search finds nothing. */
	assert_null(memslot_search(f->vm, as_id, gfn, false));
	s = vlook(f, as_id, gfn);
	set->gfn = saved;
	return s;
}

static const struct memslot_slot *search(struct fixture *f,
					 unsigned int as_id, uint64_t gfn)
{
	return memslot_search(f->vm, as_id, gfn, false);
}

static void test_hit(void **state)
{
	struct fixture f;
	const struct memslot_slot *a;

	(void)state;
	fixture_init(&f, 1, false);
	assert_int_equal(set_slot(&f, 0, 1, 0x100, 16, 0x100000), 0);
	a = vlook(&f, 0, 0x105);
	assert_non_null(a);
	assert_ptr_equal(a, search(&f, 0, 0x105));
	/* Every gfn of the cached slot hits, its ends included. */
	assert_ptr_equal(cache_only(&f, 0, 0x100), a);
	assert_ptr_equal(cache_only(&f, 0, 0x10f), a);
	/* Just outside the slot the cache does not answer. */
	assert_null(cache_only(&f, 0, 0x110));
	assert_null(cache_only(&f, 0, 0xff));
	fixture_fini(&f);
}

static void test_miss_then_hit(void **state)
{
	struct fixture f;
	const struct memslot_slot *a, *b;

	(void)state;
	fixture_init(&f, 1, false);
	assert_int_equal(set_slot(&f, 0, 1, 0x100, 16, 0x100000), 0);
	assert_int_equal(set_slot(&f, 0, 2, 0x200, 16, 0x200000), 0);
	a = vlook(&f, 0, 0x100);
	b = vlook(&f, 0, 0x208);	/* miss: searches and caches b */
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_not_equal(a, b);
	assert_int_equal(memslot_slot_id(b), 2);
	assert_ptr_equal(cache_only(&f, 0, 0x20f), b);
	/* The cache holds one slot: a is no longer in it. */
	assert_null(cache_only(&f, 0, 0x100));
	fixture_fini(&f);
}

static void test_empty_miss_keeps_entry(void **state)
{
	struct fixture f;
	const struct memslot_slot *a;

	(void)state;
	fixture_init(&f, 1, false);
	assert_int_equal(set_slot(&f, 0, 1, 0x100, 16, 0x100000), 0);
	a = vlook(&f, 0, 0x100);
	assert_non_null(a);
	assert_null(vlook(&f, 0, 0x5000));	/* a hole */
	assert_null(vlook(&f, 0, 0));
	assert_ptr_equal(cache_only(&f, 0, 0x101), a);
	fixture_fini(&f);
}

static void test_generation_drops_cache(void **state)
{
	struct fixture f;
	const struct memslot_slot *a;

	(void)state;
	fixture_init(&f, 1, false);
	assert_int_equal(set_slot(&f, 0, 1, 0x100, 16, 0x100000), 0);
	a = vlook(&f, 0, 0x100);
	assert_ptr_equal(cache_only(&f, 0, 0x100), a);
	/* An unrelated change: a stays valid, but the cache must go. */
	assert_int_equal(set_slot(&f, 0, 7, 0x9000, 1, 0x900000), 0);
	assert_ptr_equal(search(&f, 0, 0x100), a);
	assert_null(cache_only(&f, 0, 0x100));
	/* Refilled from the new generation, it hits again. */
	assert_ptr_equal(vlook(&f, 0, 0x100), a);
	assert_ptr_equal(cache_only(&f, 0, 0x100), a);
	fixture_fini(&f);
}

static void test_move_of_cached_slot(void **state)
{
	struct fixture f;
	const struct memslot_slot *a, *moved;

	(void)state;
	fixture_init(&f, 1, false);
	assert_int_equal(set_slot(&f, 0, 1, 0x100, 16, 0x100000), 0);
	a = vlook(&f, 0, 0x104);
	assert_non_null(a);
	assert_int_equal(set_slot(&f, 0, 1, 0x400, 16, 0x100000), 0);
	/* The old gfn must not resolve through the stale entry. */
	assert_null(vlook(&f, 0, 0x104));
	moved = vlook(&f, 0, 0x404);
	assert_non_null(moved);
	assert_int_equal(memslot_slot_base_gfn(moved), 0x400);
	assert_int_equal(memslot_slot_id(moved), 1);
	assert_ptr_equal(cache_only(&f, 0, 0x40f), moved);
	fixture_fini(&f);
}

static void test_delete_of_cached_slot(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f, 1, false);
	assert_int_equal(set_slot(&f, 0, 1, 0x100, 16, 0x100000), 0);
	assert_non_null(vlook(&f, 0, 0x100));
	assert_int_equal(set_slot(&f, 0, 1, 0x100, 0, 0x100000), 0);
	assert_null(vlook(&f, 0, 0x100));
	/* A new slot at the same place is a new object, found afresh. */
	assert_int_equal(set_slot(&f, 0, 2, 0x100, 16, 0x300000), 0);
	assert_int_equal(memslot_slot_id(vlook(&f, 0, 0x100)), 2);
	assert_int_equal(memslot_slot_hva(vlook(&f, 0, 0x100)), 0x300000);
	fixture_fini(&f);
}

static void test_address_space_switch(void **state)
{
	struct fixture f;
	const struct memslot_slot *s0, *s1;

	(void)state;
	fixture_init(&f, 2, false);
	/* The same gfn in both address spaces, backed differently. */
	assert_int_equal(set_slot(&f, 0, 3, 0x100, 16, 0x100000), 0);
	assert_int_equal(set_slot(&f, 1, 3, 0x100, 16, 0x700000), 0);
	s0 = search(&f, 0, 0x100);
	s1 = search(&f, 1, 0x100);
	assert_ptr_not_equal(s0, s1);
	for (int i = 0; i < 8; i++) {
		unsigned int as_id = (unsigned int)i & 1;
		const struct memslot_slot *s = vlook(&f, as_id, 0x100 + i);

		assert_ptr_equal(s, as_id ? s1 : s0);
		assert_int_equal(memslot_slot_as_id(s), as_id);
		assert_int_equal(memslot_slot_hva(s),
				 as_id ? 0x700000 : 0x100000);
	}
	/* Out-of-range address spaces find nothing. */
	assert_null(vlook(&f, 2, 0x100));
	assert_null(vlook(&f, ~0u, 0x100));
	fixture_fini(&f);
}

/* A gfn only in AS 1: the entry cached from AS 1 must not answer AS 0. */
static void test_address_space_no_leak(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f, 2, false);
	assert_int_equal(set_slot(&f, 1, 3, 0x100, 16, 0x700000), 0);
	assert_non_null(vlook(&f, 1, 0x100));
	assert_null(vlook(&f, 0, 0x100));
	assert_non_null(vlook(&f, 1, 0x101));
	assert_null(cache_only(&f, 0, 0x101));
	fixture_fini(&f);
}

static void on_flush(void *ctx, const struct memslot_slot *old)
{
	struct fixture *f = ctx;

	f->flush_calls++;
	f->flush_old = old;
	f->flush_seen = vlook(f, 0, f->flush_gfn);
	if (f->flush_seen) {
		f->flush_seen_flags = memslot_slot_flags(f->flush_seen);
		f->flush_seen_base = memslot_slot_base_gfn(f->flush_seen);
	}
}

static void test_invalid_phase(void **state)
{
	struct fixture f;
	const struct memslot_slot *a;

	(void)state;
	fixture_init(&f, 1, true);
	assert_int_equal(set_slot(&f, 0, 1, 0x100, 16, 0x100000), 0);
	assert_int_equal(f.flush_calls, 0);
	a = vlook(&f, 0, 0x102);
	f.flush_gfn = 0x102;
	/* Moving it: while flush runs the vCPU must see the INVALID copy,
	 * not its cached (still valid-looking) old object. */
	assert_int_equal(set_slot(&f, 0, 1, 0x800, 16, 0x100000), 0);
	assert_int_equal(f.flush_calls, 1);
	assert_ptr_equal(f.flush_old, a);
	assert_non_null(f.flush_seen);
	assert_ptr_not_equal(f.flush_seen, a);
	assert_true(f.flush_seen_flags & MEMSLOT_INVALID);
	assert_int_equal(f.flush_seen_base, 0x100);
	/* After the change the vCPU finds the moved slot, valid again. */
	a = vlook(&f, 0, 0x802);
	assert_non_null(a);
	assert_false(memslot_slot_flags(a) & MEMSLOT_INVALID);
	/* Same for a delete. */
	f.flush_gfn = 0x803;
	assert_int_equal(set_slot(&f, 0, 1, 0x800, 0, 0x100000), 0);
	assert_int_equal(f.flush_calls, 2);
	assert_ptr_equal(f.flush_old, a);
	assert_non_null(f.flush_seen);
	assert_true(f.flush_seen_flags & MEMSLOT_INVALID);
	assert_int_equal(f.flush_seen_base, 0x800);
	assert_null(vlook(&f, 0, 0x803));
	fixture_fini(&f);
}

static const struct memslot_slot *last_used(struct fixture *f)
{
	return set_cached_slot(vm_active(f->vm, 0));
}

static void test_set_cache_untouched(void **state)
{
	struct fixture f;
	const struct memslot_slot *a, *b;

	(void)state;
	fixture_init(&f, 1, false);
	assert_int_equal(set_slot(&f, 0, 1, 0x100, 16, 0x100000), 0);
	assert_int_equal(set_slot(&f, 0, 2, 0x200, 16, 0x200000), 0);
	memslot_read_lock(f.vm);
	a = memslot_gfn_to_slot(f.vm, 0, 0x100);
	memslot_read_unlock(f.vm);
	assert_ptr_equal(last_used(&f), a);
	/* vCPU misses, hits and empty misses leave the set's cache alone. */
	b = vlook(&f, 0, 0x200);
	assert_int_equal(memslot_slot_id(b), 2);
	assert_ptr_equal(vlook(&f, 0, 0x201), b);
	assert_null(vlook(&f, 0, 0x300));
	assert_ptr_equal(last_used(&f), a);
	/* ... while a set-wide lookup does move it (the check can fail). */
	memslot_read_lock(f.vm);
	assert_ptr_equal(memslot_gfn_to_slot(f.vm, 0, 0x200), b);
	memslot_read_unlock(f.vm);
	assert_ptr_equal(last_used(&f), b);
	fixture_fini(&f);
}

static const struct memslot_slot *set_wide(struct fixture *f, uint64_t gfn)
{
	const struct memslot_slot *s;

	memslot_read_lock(f->vm);
	s = memslot_gfn_to_slot(f->vm, 0, gfn);
	memslot_read_unlock(f->vm);
	return s;
}

/*
 * The set-wide cache holds a position in the gfn index; a change makes new
 * leaves, so the writer must find the cached slot's successor again in the
 * new layout (or drop the cache when the slot is gone).
 */
static void test_set_cache_follows_changes(void **state)
{
	struct memslot_region r = tc_region_pages(
		0, 1, MEMSLOT_MEM_LOG_DIRTY_PAGES, 0x100, 16, 0x100000);
	struct fixture f;
	const struct memslot_slot *a, *a2;
	enum memslot_rule rule;

	(void)state;
	fixture_init(&f, 1, false);
	assert_int_equal(set_slot(&f, 0, 1, 0x100, 16, 0x100000), 0);
	assert_int_equal(set_slot(&f, 0, 2, 0x200, 16, 0x200000), 0);
	a = set_wide(&f, 0x105);
	assert_ptr_equal(last_used(&f), a);
	/* A flags-only change replaces slot 1's object: the cache follows. */
	assert_int_equal(memslot_set_region(f.vm, &r, &rule), 0);
	a2 = last_used(&f);
	assert_non_null(a2);
	assert_ptr_not_equal(a2, a);
	assert_int_equal(memslot_slot_id(a2), 1);
	assert_int_equal(memslot_slot_flags(a2), MEMSLOT_MEM_LOG_DIRTY_PAGES);
	/* Creates split the leaf the position was in, more than once. */
	for (uint32_t id = 3; id < 80; id++)
		assert_int_equal(set_slot(&f, 0, id, 0x1000 + id * 0x10, 1,
					  0x400000 + id * 0x10000), 0);
	for (uint32_t id = 80; id < 120; id++)
		assert_int_equal(set_slot(&f, 0, id, id, 1,
					  0x800000 + id * 0x10000), 0);
	assert_ptr_equal(last_used(&f), a2);
	assert_ptr_equal(set_wide(&f, 0x10f), a2);
	assert_int_equal(memslot_slot_id(set_wide(&f, 0x205)), 2);
	assert_int_equal(memslot_slot_id(last_used(&f)), 2);
	/* Deleting the cached slot empties the cache. */
	assert_int_equal(set_slot(&f, 0, 2, 0x200, 0, 0x200000), 0);
	assert_null(last_used(&f));
	assert_null(set_wide(&f, 0x205));
	assert_ptr_equal(set_wide(&f, 0x100), a2);
	fixture_fini(&f);
}

static void test_create_destroy_args(void **state)
{
	struct fixture f;
	struct memslot_vcpu *v = NULL;

	(void)state;
	fixture_init(&f, 1, false);
	assert_int_equal(memslot_vcpu_create(NULL, &v), -EINVAL);
	assert_int_equal(memslot_vcpu_create(f.vm, NULL), -EINVAL);
	memslot_vcpu_destroy(NULL);
	/* A fresh cache on an empty VM finds nothing and does not crash. */
	assert_null(vlook(&f, 0, 0));
	assert_null(vlook(&f, 0, UINT64_MAX));
	fixture_fini(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit),
		cmocka_unit_test(test_miss_then_hit),
		cmocka_unit_test(test_empty_miss_keeps_entry),
		cmocka_unit_test(test_generation_drops_cache),
		cmocka_unit_test(test_move_of_cached_slot),
		cmocka_unit_test(test_delete_of_cached_slot),
		cmocka_unit_test(test_address_space_switch),
		cmocka_unit_test(test_address_space_no_leak),
		cmocka_unit_test(test_invalid_phase),
		cmocka_unit_test(test_set_cache_untouched),
		cmocka_unit_test(test_set_cache_follows_changes),
		cmocka_unit_test(test_create_destroy_args),
	};

	return cmocka_run_group_tests_name("vcpu", tests, NULL, NULL);
}
