/* SPDX-License-Identifier: MIT */
/*
 * Tests of lib/dirty.c: the bitmap lifecycle across every change kind in
 * both change modes, manual-protect mode, KVM's verdicts for the dirty-log
 * calls and their order, the protect hook, marking through each path (and
 * never through an INVALID slot), harvest, count, merge and the iterator.
 * Every test runs twice: whole-slot harvests through the atomic path, then
 * through the switch of bitmap halves.
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
#define LOG MEMSLOT_MEM_LOG_DIRTY_PAGES
#define MAXW 8
#define MAXHOOK 16

/* vm->dirty.flip_words for this group of runs. */
static uint64_t flip_words;

struct hook_call {
	const struct memslot_slot *slot;
	uint64_t offset;
	uint64_t mask;
};

struct fixture {
	struct memslot_vm *vm;
	struct memslot_config cfg;
	struct memslot_callbacks cb;
	struct hook_call hook[MAXHOOK];
	int nhook;
	/* Set by the flush hook: a mark through the INVALID copy. */
	uint64_t flush_gfn;
	bool flush_marked;
	bool fail_prepare;
};

static int on_prepare(void *ctx, const struct memslot_slot *old,
		      const struct memslot_slot *new_slot,
		      enum memslot_change change)
{
	struct fixture *f = ctx;

	(void)old; (void)new_slot; (void)change;
	return f->fail_prepare ? -EPERM : 0;
}

static void on_protect(void *ctx, const struct memslot_slot *slot,
		       uint64_t offset, uint64_t mask)
{
	struct fixture *f = ctx;

	assert_true(f->nhook < MAXHOOK);
	f->hook[f->nhook++] = (struct hook_call){ slot, offset, mask };
}

/* Flush runs while the INVALID copy is what lookups find. */
static void on_flush(void *ctx, const struct memslot_slot *old)
{
	struct fixture *f = ctx;
	const struct memslot_slot *s;

	(void)old;
	if (!f->flush_gfn)
		return;
	s = memslot_gfn_to_slot(f->vm, 0, f->flush_gfn);
	assert_non_null(s);
	assert_true(memslot_slot_flags(s) & MEMSLOT_INVALID);
	memslot_slot_mark_page_dirty(s, f->flush_gfn);
	memslot_slot_mark_range_dirty(s, f->flush_gfn, 64);
	f->flush_marked = true;
}

static void fx_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	memslot_config_init_x86_64(&f->cfg);
	f->cfg.rcu = memslot_rcu_none();
	f->cb.size = sizeof(f->cb);
	f->cb.flush = on_flush;
	f->cb.prepare = on_prepare;
	f->cb.ctx = f;
	f->cfg.callbacks = &f->cb;
	assert_int_equal(memslot_vm_create(&f->cfg, &f->vm), 0);
	assert_int_equal(memslot_vm_set_dirty_protect(f->vm, on_protect, f), 0);
	f->vm->dirty.flip_words = flip_words;
}

static void fx_fini(struct fixture *f)
{
	memslot_vm_destroy(f->vm);
}

static int set(struct fixture *f, uint32_t slot, uint32_t flags, uint64_t gfn,
	       uint64_t npages)
{
	struct memslot_region r = tc_region(slot, flags, gfn * PAGE,
					    npages * PAGE, 0x10000000);

	return memslot_set_region(f->vm, &r, NULL);
}

static int set_deferred(struct fixture *f, uint32_t slot, uint32_t flags,
			uint64_t gfn, uint64_t npages)
{
	struct memslot_region r = tc_region(slot, flags, gfn * PAGE,
					    npages * PAGE, 0x10000000);
	struct memslot_txn_result res = { 0 };
	int err = memslot_set_regions_deferred(f->vm, &r, 1, &res);

	if (!err)
		assert_int_equal(memslot_vm_wait(f->vm, res.ticket), 0);
	return err;
}

static void mark(struct fixture *f, uint64_t gfn)
{
	memslot_read_lock(f->vm);
	memslot_mark_page_dirty(f->vm, 0, gfn);
	memslot_read_unlock(f->vm);
}

static _Atomic uint64_t *bitmap_of(struct fixture *f, uint32_t id)
{
	const struct memslot_slot *s = memslot_id_to_slot(f->vm, 0, id);

	return s ? s->dirty : NULL;
}

static uint64_t logging_slots(struct fixture *f, uint64_t *bytes)
{
	struct memslot_dirty_stats st;

	assert_int_equal(memslot_vm_dirty_stats(f->vm, 0, &st), 0);
	if (bytes)
		*bytes = st.bitmap_bytes;
	return st.logging_slots;
}

/* ---- lifecycle ---------------------------------------------------------- */

static void test_lifecycle_blocking(void **state)
{
	struct fixture f;
	uint64_t bm[MAXW], bytes;
	_Atomic uint64_t *map;

	(void)state;
	fx_init(&f);
	assert_int_equal(set(&f, 1, 0, 0x100, 100), 0);
	assert_null(bitmap_of(&f, 1));
	assert_int_equal(logging_slots(&f, NULL), 0);
	/* FLAGS_ONLY turning logging on allocates, zeroed. */
	assert_int_equal(set(&f, 1, LOG, 0x100, 100), 0);
	map = bitmap_of(&f, 1);
	assert_non_null(map);
	assert_int_equal(logging_slots(&f, &bytes), 1);
	assert_int_equal(bytes, 32);	/* 100 pages: two words, two halves */
	mark(&f, 0x103);
	mark(&f, 0x100 + 99);
	/* MOVE keeps the bitmap without reset: bit i is page i of the slot. */
	assert_int_equal(set(&f, 1, LOG, 0x1000, 100), 0);
	assert_ptr_equal(bitmap_of(&f, 1), map);
	mark(&f, 0x1000 + 64);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), 0);
	assert_int_equal(bm[0], 1ull << 3);
	assert_int_equal(bm[1], 1ull << 35 | 1ull << 0);
	/* FLAGS_ONLY turning logging off frees it. */
	assert_int_equal(set(&f, 1, 0, 0x1000, 100), 0);
	assert_null(bitmap_of(&f, 1));
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), -ENOENT);
	assert_int_equal(logging_slots(&f, NULL), 0);
	/* A fresh bitmap after logging is turned on again: no old bits. */
	mark(&f, 0x1003);
	assert_int_equal(set(&f, 1, LOG, 0x1000, 100), 0);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), 0);
	assert_int_equal(bm[0] | bm[1], 0);
	/* A MOVE that also turns logging off frees it too. */
	assert_int_equal(set(&f, 1, 0, 0x2000, 100), 0);
	assert_null(bitmap_of(&f, 1));
	assert_int_equal(set(&f, 1, LOG, 0x2000, 100), 0);
	/* DELETE frees (ASan and valgrind see any leak). */
	assert_int_equal(set(&f, 1, 0, 0, 0), 0);
	assert_int_equal(logging_slots(&f, &bytes), 0);
	assert_int_equal(bytes, 0);
	fx_fini(&f);
}

static void test_lifecycle_deferred(void **state)
{
	struct fixture f;
	uint64_t bm[MAXW], bytes;
	_Atomic uint64_t *map;

	(void)state;
	fx_init(&f);
	assert_int_equal(set_deferred(&f, 2, LOG, 0x100, 64), 0);
	map = bitmap_of(&f, 2);
	assert_non_null(map);
	mark(&f, 0x101);
	/* The retired old state shares the bitmap: reclaim must keep it. */
	assert_int_equal(set_deferred(&f, 2, LOG, 0x400, 64), 0);
	assert_ptr_equal(bitmap_of(&f, 2), map);
	assert_int_equal(memslot_get_dirty_log(f.vm, 2, bm), 0);
	assert_int_equal(bm[0], 1ull << 1);
	assert_int_equal(set_deferred(&f, 2, 0, 0x400, 64), 0);
	assert_null(bitmap_of(&f, 2));
	assert_int_equal(set_deferred(&f, 2, LOG, 0x400, 64), 0);
	assert_int_equal(set_deferred(&f, 2, 0, 0, 0), 0);
	assert_int_equal(logging_slots(&f, &bytes), 0);
	assert_int_equal(bytes, 0);
	fx_fini(&f);
}

/* A transaction follows its net change: recreated with another size
 * gives a fresh bitmap; deleted and created the same keeps it. */
static void test_lifecycle_txn(void **state)
{
	struct fixture f;
	struct memslot_region r[2] = {
		{ .slot = 3, .memory_size = 0 },
		{ .slot = 3, .flags = LOG, .guest_phys_addr = 0x100 * PAGE,
		  .memory_size = 64 * PAGE, .userspace_addr = 0x10000000 },
	};
	uint64_t bm[MAXW];
	_Atomic uint64_t *map;

	(void)state;
	fx_init(&f);
	assert_int_equal(set(&f, 3, LOG, 0x100, 64), 0);
	map = bitmap_of(&f, 3);
	mark(&f, 0x100);
	assert_int_equal(memslot_set_regions(f.vm, r, 2, NULL), 0);
	assert_ptr_equal(bitmap_of(&f, 3), map);
	r[1].memory_size = 128 * PAGE;
	assert_int_equal(memslot_set_regions(f.vm, r, 2, NULL), 0);
	assert_int_equal(memslot_get_dirty_log(f.vm, 3, bm), 0);
	assert_int_equal(bm[0] | bm[1], 0);
	fx_fini(&f);
}

/* A prepare failure frees a bitmap the change allocated, not a kept one. */
static void test_prepare_failure(void **state)
{
	struct fixture f;
	uint64_t bytes;
	_Atomic uint64_t *map;

	(void)state;
	fx_init(&f);
	assert_int_equal(set(&f, 1, LOG, 0x100, 64), 0);
	map = bitmap_of(&f, 1);
	mark(&f, 0x105);
	f.fail_prepare = true;
	assert_int_equal(set(&f, 4, LOG, 0x800, 64), -EPERM);
	assert_int_equal(set(&f, 1, LOG, 0x900, 64), -EPERM);
	assert_int_equal(set(&f, 1, 0, 0x100, 64), -EPERM);
	f.fail_prepare = false;
	assert_int_equal(logging_slots(&f, &bytes), 1);
	assert_int_equal(bytes, 16);
	assert_ptr_equal(bitmap_of(&f, 1), map);
	assert_int_equal(atomic_load(&map[0]), 1ull << 5);
	fx_fini(&f);
}

/* ---- manual protect ------------------------------------------------------ */

static void test_manual_protect_flags(void **state)
{
	struct fixture f;

	(void)state;
	fx_init(&f);
	assert_int_equal(memslot_vm_enable_manual_protect(NULL, 1), -EINVAL);
	assert_int_equal(memslot_vm_enable_manual_protect(f.vm, 2), -EINVAL);
	assert_int_equal(memslot_vm_enable_manual_protect(f.vm, 4), -EINVAL);
	assert_int_equal(memslot_vm_enable_manual_protect(f.vm, 5), -EINVAL);
	assert_int_equal(memslot_vm_enable_manual_protect(f.vm, 1ull << 63),
			 -EINVAL);
	assert_int_equal(memslot_vm_enable_manual_protect(f.vm, 1), 0);
	assert_int_equal(memslot_vm_enable_manual_protect(f.vm, 3), 0);
	assert_int_equal(memslot_vm_enable_manual_protect(f.vm, 0), 0);
	fx_fini(&f);
}

static void test_initially_set(void **state)
{
	struct fixture f;
	uint64_t bm[MAXW], n;

	(void)state;
	fx_init(&f);
	assert_int_equal(memslot_vm_enable_manual_protect(f.vm, 3), 0);
	assert_int_equal(set(&f, 1, LOG, 0x100, 70), 0);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), 0);
	assert_int_equal(bm[0], ~0ull);
	assert_int_equal(bm[1], 0x3f);	/* only the slot's 70 pages */
	/* Manual mode: GET copies and does not clear or call the hook. */
	assert_int_equal(memslot_dirty_count(f.vm, 1, &n), 0);
	assert_int_equal(n, 70);
	assert_int_equal(f.nhook, 0);
	/* CLEAR reports exactly the bits it cleared. */
	bm[0] = 0xff00;
	bm[1] = ~0ull;		/* bits beyond page 70 are ignored */
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1, 0, 70, bm), 0);
	assert_int_equal(f.nhook, 2);
	assert_int_equal(f.hook[0].offset, 0);
	assert_int_equal(f.hook[0].mask, 0xff00);
	assert_int_equal(f.hook[1].offset, 64);
	assert_int_equal(f.hook[1].mask, 0x3f);
	assert_ptr_equal(f.hook[0].slot, memslot_id_to_slot(f.vm, 0, 1));
	/* Clearing again clears nothing: no hook call. */
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1, 0, 70, bm), 0);
	assert_int_equal(f.nhook, 2);
	assert_int_equal(memslot_dirty_count(f.vm, 1, &n), 0);
	assert_int_equal(n, 56);
	/* Turning manual mode off: the next GET harvests and clears. */
	assert_int_equal(memslot_vm_enable_manual_protect(f.vm, 0), 0);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), 0);
	assert_int_equal(bm[0], ~0xff00ull);
	assert_int_equal(memslot_dirty_count(f.vm, 1, &n), 0);
	assert_int_equal(n, 0);
	/* ENABLE alone: a new bitmap starts clean. */
	assert_int_equal(memslot_vm_enable_manual_protect(f.vm, 1), 0);
	assert_int_equal(set(&f, 2, LOG, 0x800, 64), 0);
	assert_int_equal(memslot_dirty_count(f.vm, 2, &n), 0);
	assert_int_equal(n, 0);
	fx_fini(&f);
}

/* ---- verdicts -------------------------------------------------------------- */

static void test_get_verdicts(void **state)
{
	struct fixture f;
	struct memslot_region r = {
		.slot = 32764, .flags = LOG, .guest_phys_addr = 0x9000 * PAGE,
		.memory_size = PAGE, .userspace_addr = 0x10000000,
	};
	uint64_t bm[MAXW];

	(void)state;
	fx_init(&f);
	assert_int_equal(set(&f, 1, LOG, 0x100, 64), 0);
	assert_int_equal(set(&f, 2, 0, 0x200, 64), 0);
	assert_int_equal(memslot_set_internal_region(f.vm, &r, NULL), 0);
	assert_int_equal(memslot_get_dirty_log(NULL, 1, bm), -EINVAL);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1u << 16 | 1, bm), -EINVAL);
	/* An internal id is -EINVAL even with a bitmap, as KVM. */
	assert_int_equal(memslot_get_dirty_log(f.vm, 32764, bm), -EINVAL);
	assert_int_equal(memslot_get_dirty_log(f.vm, 32763, bm), -ENOENT);
	assert_int_equal(memslot_get_dirty_log(f.vm, 2, bm), -ENOENT);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, NULL), -EFAULT);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), 0);
	assert_int_equal(memslot_dirty_count(f.vm, 2, NULL), -ENOENT);
	assert_int_equal(memslot_dirty_count(f.vm, 1, NULL), -EFAULT);
	assert_int_equal(memslot_dirty_merge(f.vm, 9, bm), -ENOENT);
	fx_fini(&f);
}

static void test_clear_verdicts(void **state)
{
	struct fixture f;
	uint64_t bm[MAXW] = { 0 };

	(void)state;
	fx_init(&f);
	assert_int_equal(set(&f, 1, LOG, 0x100, 200), 0);
	/* Order: id, then alignment before the slot lookup. */
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1u << 16 | 7, 1, 0, bm),
			 -EINVAL);
	assert_int_equal(memslot_clear_dirty_log(f.vm, 7, 1, 0, bm), -EINVAL);
	assert_int_equal(memslot_clear_dirty_log(f.vm, 7, 64, 0, bm), -ENOENT);
	/* Then the range, after the lookup. */
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1, 256, 0, bm), -EINVAL);
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1, 192, 9, bm), -EINVAL);
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1, 0, 65, bm), -EINVAL);
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1, 0, 201, bm), -EINVAL);
	/* Reaching the end, any count is fine; so is nothing at the end. */
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1, 192, 8, bm), 0);
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1, 128, 72, bm), 0);
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1, 0, 200, bm), 0);
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1, 0, 64, bm), 0);
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1, 64, 0, NULL), 0);
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1, 64, 64, NULL), -EFAULT);
	/* harvest has the same rules. */
	assert_int_equal(memslot_dirty_harvest(f.vm, 1, 0, 65, bm), -EINVAL);
	assert_int_equal(memslot_dirty_harvest(f.vm, 1, 32, 64, bm), -EINVAL);
	fx_fini(&f);
}

/* ---- marking and harvest ----------------------------------------------------- */

static void test_get_clears_and_protects(void **state)
{
	struct fixture f;
	uint64_t bm[MAXW];

	(void)state;
	fx_init(&f);
	assert_int_equal(set(&f, 1, LOG, 0x100, 256), 0);
	mark(&f, 0x100 + 130);
	mark(&f, 0x100 + 131);
	mark(&f, 0x100 + 256);		/* outside: another slot's gfn */
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), 0);
	assert_int_equal(bm[0] | bm[1] | bm[3], 0);
	assert_int_equal(bm[2], 3ull << 2);
	assert_int_equal(f.nhook, 1);
	assert_int_equal(f.hook[0].offset, 128);
	assert_int_equal(f.hook[0].mask, 3ull << 2);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), 0);
	assert_int_equal(bm[2], 0);
	assert_int_equal(f.nhook, 1);
	fx_fini(&f);
}

static void test_mark_paths(void **state)
{
	struct fixture f;
	struct memslot_vcpu *vcpu;
	struct memslot_view *view;
	const struct memslot_slot *s;
	uint64_t bm[MAXW];

	(void)state;
	fx_init(&f);
	assert_int_equal(set(&f, 1, LOG, 0x100, 300), 0);
	assert_int_equal(set(&f, 2, 0, 0x500, 64), 0);
	assert_int_equal(memslot_vcpu_create(f.vm, &vcpu), 0);
	memslot_read_lock(f.vm);
	memslot_vcpu_mark_page_dirty(vcpu, 0, 0x101);
	memslot_vcpu_mark_page_dirty(vcpu, 0, 0x101);	/* cache hit */
	memslot_vcpu_mark_page_dirty(vcpu, 1, 0x102);	/* bad as_id */
	memslot_vcpu_mark_page_dirty(vcpu, 0, 0x501);	/* no bitmap */
	memslot_mark_page_dirty(f.vm, 5, 0x103);		/* bad as_id */
	view = memslot_view_get(f.vm, 0);
	memslot_view_mark_page_dirty(view, 0x104);
	s = memslot_view_id_to_slot(view, 1);
	memslot_slot_mark_page_dirty(s, 0x100 + 300);	/* outside */
	memslot_slot_mark_page_dirty(s, 0x0ff);		/* below */
	memslot_slot_mark_page_dirty(NULL, 0x100);
	/* A range across words, clipped at both ends of the slot. */
	memslot_slot_mark_range_dirty(s, 0x100 + 60, 10);
	memslot_slot_mark_range_dirty(s, 0x0f0, 0x11);
	memslot_slot_mark_range_dirty(s, 0x100 + 290, 1000);
	memslot_slot_mark_range_dirty(s, 0x0f0, 0x10);	/* all below */
	memslot_slot_mark_range_dirty(s, 0x100 + 128, 0);
	memslot_read_unlock(f.vm);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), 0);
	assert_int_equal(bm[0], 1ull << 1 | 1ull << 4 | 1ull << 0 |
				0xfull << 60);
	assert_int_equal(bm[1], 0x3f);
	assert_int_equal(bm[2], 0);
	assert_int_equal(bm[3], 0);
	assert_int_equal(bm[4], 0x3ffull << 34);
	memslot_vcpu_destroy(vcpu);
	fx_fini(&f);
}

static void test_no_mark_through_invalid(void **state)
{
	struct fixture f;
	uint64_t bm[MAXW];

	(void)state;
	fx_init(&f);
	assert_int_equal(set(&f, 1, LOG, 0x100, 128), 0);
	f.flush_gfn = 0x105;
	assert_int_equal(set(&f, 1, LOG, 0x800, 128), 0);
	assert_true(f.flush_marked);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), 0);
	assert_int_equal(bm[0] | bm[1], 0);
	fx_fini(&f);
}

static void test_harvest_count_merge(void **state)
{
	struct fixture f;
	uint64_t bm[MAXW] = { 0 }, ext[3] = { 0x5, 0, ~0ull }, n;

	(void)state;
	fx_init(&f);
	assert_int_equal(set(&f, 1, LOG, 0x100, 130), 0);
	/* Merge: bits beyond page 130 are dropped. */
	assert_int_equal(memslot_dirty_merge(f.vm, 1, ext), 0);
	assert_int_equal(memslot_dirty_merge(f.vm, 1, NULL), -EFAULT);
	assert_int_equal(memslot_dirty_count(f.vm, 1, &n), 0);
	assert_int_equal(n, 4);
	mark(&f, 0x100 + 64);
	/* Harvest only the second word. */
	assert_int_equal(memslot_dirty_harvest(f.vm, 1, 64, 64, bm), 1);
	assert_int_equal(bm[0], 1);
	assert_int_equal(f.nhook, 1);
	assert_int_equal(f.hook[0].offset, 64);
	assert_int_equal(memslot_dirty_harvest(f.vm, 1, 128, 2, bm), 2);
	assert_int_equal(bm[0], 3);
	assert_int_equal(memslot_dirty_harvest(f.vm, 1, 0, 130, bm), 2);
	assert_int_equal(bm[0], 5);
	assert_int_equal(memslot_dirty_count(f.vm, 1, &n), 0);
	assert_int_equal(n, 0);
	fx_fini(&f);
}

static void test_iter(void **state)
{
	uint64_t bm[4] = { 0x8001, 0, 0, 1ull << 63 | 1 }, page, got[8];
	struct memslot_dirty_iter it;
	size_t n = 0;

	(void)state;
	memslot_dirty_iter_init(&it, bm, 256);
	while (memslot_dirty_iter_next(&it, &page) && n < 8)
		got[n++] = page;
	assert_int_equal(n, 4);
	assert_int_equal(got[0], 0);
	assert_int_equal(got[1], 15);
	assert_int_equal(got[2], 192);
	assert_int_equal(got[3], 255);
	assert_false(memslot_dirty_iter_next(&it, &page));
	/* Bits at or beyond npages are not yielded. */
	n = 0;
	memslot_dirty_iter_init(&it, bm, 200);
	while (memslot_dirty_iter_next(&it, &page))
		n++;
	assert_int_equal(n, 3);
	memslot_dirty_iter_init(&it, bm, 0);
	assert_false(memslot_dirty_iter_next(&it, &page));
}

/* The half marks go to, as an index (0 or 1) into the allocation. */
static int live_half(struct fixture *f, uint32_t id)
{
	const struct memslot_slot *s = memslot_id_to_slot(f->vm, 0, id);

	return atomic_load(&s->dirty_live) != s->dirty;
}

/*
 * A whole-slot harvest switches halves only on the flip path; the other
 * calls follow the live half wherever it is, and a MOVE keeps it.
 */
static void test_halves(void **state)
{
	struct fixture f;
	struct memslot_vcpu *vcpu;
	uint64_t bm[MAXW], ext[2] = { 1ull << 9, 0 }, n;
	int flips = flip_words == 1;

	(void)state;
	fx_init(&f);
	assert_int_equal(set(&f, 1, LOG, 0x100, 128), 0);
	assert_int_equal(memslot_vcpu_create(f.vm, &vcpu), 0);
	assert_int_equal(live_half(&f, 1), 0);
	mark(&f, 0x101);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), 0);
	assert_int_equal(bm[0], 2);
	assert_int_equal(live_half(&f, 1), flips);
	/* Marks, merge and count after the switch use the new half. */
	memslot_read_lock(f.vm);
	memslot_vcpu_mark_page_dirty(vcpu, 0, 0x100 + 70);
	memslot_read_unlock(f.vm);
	assert_int_equal(memslot_dirty_merge(f.vm, 1, ext), 0);
	assert_int_equal(memslot_dirty_count(f.vm, 1, &n), 0);
	assert_int_equal(n, 2);
	/* A MOVE keeps the bitmap and its live half. */
	assert_int_equal(set(&f, 1, LOG, 0x900, 128), 0);
	assert_int_equal(live_half(&f, 1), flips);
	memslot_read_lock(f.vm);
	memslot_vcpu_mark_page_dirty(vcpu, 0, 0x900 + 3);
	memslot_read_unlock(f.vm);
	/* Manual mode: GET copies the live half, CLEAR clears in it. */
	assert_int_equal(memslot_vm_enable_manual_protect(f.vm, 1), 0);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), 0);
	assert_int_equal(bm[0], 1ull << 9 | 1ull << 3);
	assert_int_equal(bm[1], 1ull << 6);
	assert_int_equal(memslot_clear_dirty_log(f.vm, 1, 0, 64, bm), 0);
	assert_int_equal(memslot_dirty_count(f.vm, 1, &n), 0);
	assert_int_equal(n, 1);
	/* A full-range harvest counts what it took and switches back. */
	assert_int_equal(memslot_dirty_harvest(f.vm, 1, 0, 128, bm), 1);
	assert_int_equal(bm[1], 1ull << 6);
	assert_int_equal(live_half(&f, 1), 0);
	assert_int_equal(memslot_dirty_harvest(f.vm, 1, 0, 128, bm), 0);
	assert_int_equal(bm[0] | bm[1], 0);
	memslot_vcpu_destroy(vcpu);
	fx_fini(&f);
}

/* The vCPU path: a non-logging slot in the cache marks nothing, and a
 * logging one found after it marks. */
static void test_vcpu_mark_cache(void **state)
{
	struct fixture f;
	struct memslot_vcpu *vcpu;
	uint64_t bm[MAXW];

	(void)state;
	fx_init(&f);
	assert_int_equal(set(&f, 1, LOG, 0x100, 64), 0);
	assert_int_equal(set(&f, 2, 0, 0x200, 64), 0);
	assert_int_equal(memslot_vcpu_create(f.vm, &vcpu), 0);
	memslot_read_lock(f.vm);
	memslot_vcpu_mark_page_dirty(vcpu, 0, 0x201);
	memslot_vcpu_mark_page_dirty(vcpu, 0, 0x202);	/* cached, no log */
	memslot_vcpu_mark_page_dirty(vcpu, 0, 0x107);
	memslot_vcpu_mark_page_dirty(vcpu, 0, 0x300);	/* no slot */
	memslot_vcpu_mark_page_dirty(vcpu, 0, 0x13f);
	memslot_read_unlock(f.vm);
	assert_ptr_equal(memslot_vcpu_gfn_to_slot(vcpu, 0, 0x101),
			 memslot_id_to_slot(f.vm, 0, 1));
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), 0);
	assert_int_equal(bm[0], 1ull << 7 | 1ull << 63);
	/* Logging turned off: the cached slot is dropped with its
	 * generation, and the new state marks nothing. */
	assert_int_equal(set(&f, 1, 0, 0x100, 64), 0);
	memslot_read_lock(f.vm);
	memslot_vcpu_mark_page_dirty(vcpu, 0, 0x107);
	memslot_read_unlock(f.vm);
	assert_int_equal(set(&f, 1, LOG, 0x100, 64), 0);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), 0);
	assert_int_equal(bm[0], 0);
	memslot_vcpu_destroy(vcpu);
	fx_fini(&f);
}

/* The hook and mode calls are writer calls: refused in a read section. */
static void test_writer_calls_in_read_section(void **state)
{
	struct fixture f;
	uint64_t bm[MAXW];

	(void)state;
	fx_init(&f);
	assert_int_equal(set(&f, 1, LOG, 0x100, 64), 0);
	memslot_read_lock(f.vm);
	assert_int_equal(memslot_get_dirty_log(f.vm, 1, bm), -EDEADLK);
	assert_int_equal(memslot_vm_enable_manual_protect(f.vm, 1), -EDEADLK);
	memslot_read_unlock(f.vm);
	fx_fini(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lifecycle_blocking),
		cmocka_unit_test(test_lifecycle_deferred),
		cmocka_unit_test(test_lifecycle_txn),
		cmocka_unit_test(test_prepare_failure),
		cmocka_unit_test(test_manual_protect_flags),
		cmocka_unit_test(test_initially_set),
		cmocka_unit_test(test_get_verdicts),
		cmocka_unit_test(test_clear_verdicts),
		cmocka_unit_test(test_get_clears_and_protects),
		cmocka_unit_test(test_mark_paths),
		cmocka_unit_test(test_no_mark_through_invalid),
		cmocka_unit_test(test_harvest_count_merge),
		cmocka_unit_test(test_iter),
		cmocka_unit_test(test_writer_calls_in_read_section),
		cmocka_unit_test(test_halves),
		cmocka_unit_test(test_vcpu_mark_cache),
	};
	int r;

	flip_words = UINT64_MAX;	/* every harvest: atomic path */
	r = cmocka_run_group_tests_name("atomic", tests, NULL, NULL);
	flip_words = 1;			/* every whole-slot harvest flips */
	return r | cmocka_run_group_tests_name("flip", tests, NULL, NULL);
}
