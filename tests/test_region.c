/* SPDX-License-Identifier: MIT */
/*
 * Tests of lib/region.c: KVM_SET_USER_MEMORY_REGION validation (one case
 * per rule, and the order when two rules fail at once), every change kind
 * with its generation step, the INVALID phase seen from the flush hook,
 * prepare-failure rollback, the id limits of the profiles, and the small
 * queries around them (lowest free id, stats, messages).
 *
 * A rejected request must change nothing: every rejection below is checked
 * against a snapshot of the generations and of the whole layout, slot
 * object pointers included.
 */
#define _POSIX_C_SOURCE 200809L	/* strerror_r() */

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <memslot/memslot.h>

#include "common.h"

#define PAGE TC_PAGE
#define HVA 0x10000000ull
#define X86_USER_SLOTS 32764u
#define X86_TOTAL_SLOTS 32767u

/* ---- fixture ------------------------------------------------------------ */

/**
 * struct hook_log - what the hooks saw
 * @ret: what prepare returns
 * @flush_calls: flush calls
 * @prepare_calls: prepare calls
 * @flush_gfn: gfn the flush hook looks up
 * @seen_flags: slot flags found by gfn_to_slot inside flush
 * @seen_search_flags: flags found by memslot_search inside flush
 * @seen_id_flags: flags found by memslot_id_to_slot inside flush
 * @seen_hva_ret: memslot_gfn_to_hva() inside flush
 * @seen_found: gfn_to_slot found a slot inside flush
 * @prepare_change: change kind prepare was called with
 */
struct hook_log {
	int ret;
	int flush_calls;
	int prepare_calls;
	uint64_t flush_gfn;
	uint32_t seen_flags;
	uint32_t seen_search_flags;
	uint32_t seen_id_flags;
	int seen_hva_ret;
	bool seen_found;
	enum memslot_change prepare_change;
};

struct fixture {
	struct memslot_config cfg;
	struct memslot_callbacks cb;
	struct memslot_vm *vm;
	struct hook_log log;
};

static void on_flush(void *ctx, const struct memslot_slot *old)
{
	struct fixture *f = ctx;
	const struct memslot_slot *s;
	uint64_t hva = 0;

	f->log.flush_calls++;
	memslot_read_lock(f->vm);
	s = memslot_gfn_to_slot(f->vm, memslot_slot_as_id(old), f->log.flush_gfn);
	f->log.seen_found = s != NULL;
	f->log.seen_flags = s ? memslot_slot_flags(s) : 0;
	s = memslot_search(f->vm, memslot_slot_as_id(old), f->log.flush_gfn,
			   false);
	f->log.seen_search_flags = s ? memslot_slot_flags(s) : 0;
	s = memslot_id_to_slot(f->vm, memslot_slot_as_id(old),
			       memslot_slot_id(old));
	f->log.seen_id_flags = s ? memslot_slot_flags(s) : 0;
	f->log.seen_hva_ret = memslot_gfn_to_hva(f->vm, memslot_slot_as_id(old),
						 f->log.flush_gfn, false, &hva);
	memslot_read_unlock(f->vm);
}

static int on_prepare(void *ctx, const struct memslot_slot *old,
		      const struct memslot_slot *new_slot,
		      enum memslot_change change)
{
	struct fixture *f = ctx;

	(void)old;
	(void)new_slot;
	f->log.prepare_calls++;
	f->log.prepare_change = change;
	return f->log.ret;
}

static void fixture_open(struct fixture *f)
{
	f->cfg.rcu = memslot_rcu_none();
	f->cb.size = sizeof(f->cb);
	f->cb.flush = on_flush;
	f->cb.prepare = on_prepare;
	f->cb.ctx = f;
	f->cfg.callbacks = &f->cb;
	assert_int_equal(memslot_vm_create(&f->cfg, &f->vm), 0);
}

static int setup_nr_as(void **state, unsigned int nr_as)
{
	struct fixture *f = test_calloc(1, sizeof(*f));

	memslot_config_init_x86_64(&f->cfg);
	f->cfg.nr_as = nr_as;
	fixture_open(f);
	*state = f;
	return 0;
}

static int setup_x86(void **state)
{
	return setup_nr_as(state, 1);
}

static int setup_two_as(void **state)
{
	return setup_nr_as(state, 2);
}

static int setup_unbounded(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));

	memslot_config_init_unbounded(&f->cfg);
	fixture_open(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	memslot_vm_destroy(f->vm);
	test_free(f);
	return 0;
}

/* ---- helpers ------------------------------------------------------------ */

/* The hva add() gives a slot at @gfn: distinct for nearby gfns, and below
 * the x86-64 user limit for any gfn. */
static uint64_t slot_hva(uint64_t gfn)
{
	return HVA + (gfn & 0xfffffff) * PAGE;
}

/* A valid user slot of @npages at gfn @gfn. */
static void add(struct fixture *f, uint32_t slot, uint64_t gfn,
		uint64_t npages)
{
	struct memslot_region r = tc_region(slot, 0, gfn * PAGE, npages * PAGE,
					    slot_hva(gfn));
	enum memslot_rule rule = MEMSLOT_RULE_COUNT;

	assert_int_equal(memslot_set_region(f->vm, &r, &rule), 0);
	assert_int_equal(rule, MEMSLOT_RULE_OK);
}

static uint64_t gen(const struct fixture *f, unsigned int as_id)
{
	return memslot_generation(f->vm, as_id);
}

static const struct memslot_slot *by_id(struct fixture *f, unsigned int as_id,
					uint32_t id)
{
	const struct memslot_slot *s;

	memslot_read_lock(f->vm);
	s = memslot_id_to_slot(f->vm, as_id, id);
	memslot_read_unlock(f->vm);
	return s;
}

/* The generations and every slot of every address space, with the slot
 * object pointers. */
static void snap_take(struct fixture *f, struct tc_layout *sn)
{
	tc_layout_take(sn, f->vm, f->cfg.nr_as, true);
}

/* @a and @b must be equal; both are freed (and may be taken again). */
static void snap_equal(struct tc_layout *a, struct tc_layout *b)
{
	tc_layout_assert_equal(a, b);
	tc_layout_free(a);
	tc_layout_free(b);
}

/* @r must fail with @err by @rule and leave everything as it was. */
static void reject_via(struct fixture *f, const struct memslot_region *r,
		       bool internal, int err, enum memslot_rule want)
{
	enum memslot_rule rule = MEMSLOT_RULE_COUNT;
	struct tc_layout before = { 0 }, after = { 0 };
	int ret;

	snap_take(f, &before);
	ret = internal ? memslot_set_internal_region(f->vm, r, &rule)
		       : memslot_set_region(f->vm, r, &rule);
	assert_int_equal(ret, err);
	assert_int_equal(rule, want);
	snap_take(f, &after);
	snap_equal(&before, &after);
}

static void reject(struct fixture *f, const struct memslot_region *r,
		   enum memslot_rule want)
{
	reject_via(f, r, false,
		   want == MEMSLOT_RULE_OVERLAP ? -EEXIST : -EINVAL, want);
}

/* ---- one case per rule -------------------------------------------------- */

static void test_rule1_flags_unknown(void **state)
{
	struct fixture *f = *state;

	/* Every bit but LOG_DIRTY and READONLY; GUEST_MEMFD needs the v2
	 * call (cfg.guest_memfd) and INVALID is internal. */
	for (unsigned int bit = 2; bit < 32; bit++) {
		struct memslot_region r = tc_region(0, 1u << bit, 0, PAGE, HVA);

		reject(f, &r, MEMSLOT_RULE_FLAGS_UNKNOWN);
	}
}

static void test_rule2_id_user(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(X86_USER_SLOTS, 0, 0, PAGE, HVA);

	reject(f, &r, MEMSLOT_RULE_ID_USER);
	r.slot = X86_TOTAL_SLOTS - 1;
	reject(f, &r, MEMSLOT_RULE_ID_USER);
	r.slot = 0xffff;
	reject(f, &r, MEMSLOT_RULE_ID_USER);
}

static void test_rule3_flags_combo(void **state)
{
	struct fixture *f = *state;
	struct fixture g = { 0 };
	struct memslot_region r = tc_region(0, MEMSLOT_MEM_READONLY, 0, PAGE,
					    HVA);

	(void)f;
	memslot_config_init_x86_64(&g.cfg);
	g.cfg.readonly = false;
	g.cfg.guest_memfd = true;
	fixture_open(&g);
	reject(&g, &r, MEMSLOT_RULE_FLAGS_COMBO);
	r.flags = MEMSLOT_MEM_GUEST_MEMFD | MEMSLOT_MEM_LOG_DIRTY_PAGES;
	reject(&g, &r, MEMSLOT_RULE_FLAGS_COMBO);
	r.flags = MEMSLOT_MEM_GUEST_MEMFD | MEMSLOT_MEM_READONLY;
	reject(&g, &r, MEMSLOT_RULE_FLAGS_COMBO);
	/* 3 before 4. */
	r.memory_size = PAGE + 1;
	reject(&g, &r, MEMSLOT_RULE_FLAGS_COMBO);
	r.memory_size = PAGE;
	/* GUEST_MEMFD alone is fine once the config allows it. */
	r.flags = MEMSLOT_MEM_GUEST_MEMFD;
	assert_int_equal(memslot_set_region(g.vm, &r, NULL), 0);
	memslot_vm_destroy(g.vm);
}

/* A GUEST_MEMFD request of @npages at gfn @gfn bound to @fd at @off. */
static struct memslot_region gmem_region(uint32_t slot, uint64_t gfn,
					 uint64_t npages, uint32_t fd,
					 uint64_t off)
{
	struct memslot_region r = tc_region(slot, MEMSLOT_MEM_GUEST_MEMFD,
					    gfn * PAGE, npages * PAGE,
					    slot_hva(gfn));

	r.guest_memfd = fd;
	r.guest_memfd_offset = off;
	return r;
}

static int setup_gmem(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));

	memslot_config_init_x86_64(&f->cfg);
	f->cfg.guest_memfd = true;
	fixture_open(f);
	*state = f;
	return 0;
}

/* Rule 7: the guest_memfd offset is page aligned and offset + size does
 * not wrap; checked after the hva and before the address space. */
static void test_rule7_gmem_offset(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = gmem_region(1, 16, 4, 3, PAGE + 8);

	reject(f, &r, MEMSLOT_RULE_GMEM_OFFSET);
	r.guest_memfd_offset = 0 - 2 * PAGE;	/* + 4 pages wraps */
	reject(f, &r, MEMSLOT_RULE_GMEM_OFFSET);
	r.guest_memfd_offset = 0 - 4 * PAGE;	/* ends exactly at 2^64 */
	reject(f, &r, MEMSLOT_RULE_GMEM_OFFSET);
	/* 6 before 7 */
	r.userspace_addr += 1;
	reject(f, &r, MEMSLOT_RULE_HVA);
	r.userspace_addr -= 1;
	/* 7 before 8 */
	r.slot = 1u << 16 | 1;
	reject(f, &r, MEMSLOT_RULE_GMEM_OFFSET);
	/* a delete with the flag is checked too */
	r.slot = 1;
	r.memory_size = 0;
	r.guest_memfd_offset = 1;
	reject(f, &r, MEMSLOT_RULE_GMEM_OFFSET);
	/* without the flag the fields are ignored, and not stored */
	r = tc_region(1, 0, 16 * PAGE, 4 * PAGE, slot_hva(16));
	r.guest_memfd = 9;
	r.guest_memfd_offset = 0 - PAGE + 1;
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	memslot_slot_region(f->vm, by_id(f, 0, 1), &r);
	assert_int_equal(r.guest_memfd, 0);
	assert_int_equal(r.guest_memfd_offset, 0);
	/* the largest offset that still fits */
	r = gmem_region(2, 32, 4, 3, 0 - 5 * PAGE);
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
}

/*
 * Rules 13 and 14: a GUEST_MEMFD slot can only be created and deleted.
 * Moving it with or without the flag, dropping the flag, sending its own
 * request again, and adding the flag to a plain slot are all -EINVAL.
 */
static void test_rule13_gmem_immutable(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = gmem_region(1, 16, 4, 7, 2 * PAGE);
	struct memslot_region got;

	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	memslot_slot_region(f->vm, by_id(f, 0, 1), &got);
	assert_int_equal(got.flags, MEMSLOT_MEM_GUEST_MEMFD);
	assert_int_equal(got.guest_memfd, 7);
	assert_int_equal(got.guest_memfd_offset, 2 * PAGE);
	reject(f, &r, MEMSLOT_RULE_GMEM_IMMUTABLE);	/* not a no-op */
	r.guest_phys_addr = 64 * PAGE;
	reject(f, &r, MEMSLOT_RULE_GMEM_IMMUTABLE);	/* move */
	r.flags = 0;
	reject(f, &r, MEMSLOT_RULE_MODIFY);		/* move, flag dropped */
	r.guest_phys_addr = 16 * PAGE;
	reject(f, &r, MEMSLOT_RULE_MODIFY);		/* flag dropped */
	/* 13 before 14: another size too */
	r = gmem_region(1, 16, 8, 7, 2 * PAGE);
	reject(f, &r, MEMSLOT_RULE_GMEM_IMMUTABLE);
	/* a plain slot cannot gain the flag */
	add(f, 2, 100, 4);
	r = gmem_region(2, 100, 4, 7, 0);
	reject(f, &r, MEMSLOT_RULE_GMEM_IMMUTABLE);
	/* deleting works, with or without the flag in the request */
	r = tc_region(1, 0, 0, 0, 0);
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	r = tc_region(2, MEMSLOT_MEM_GUEST_MEMFD, 0, 0, 0);
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
}

/* A batch that deletes a GUEST_MEMFD slot and creates it again with the
 * same geometry but another binding changes it: DELETE + CREATE. */
static void test_gmem_rebind_in_batch(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r[2] = {
		tc_region(1, 0, 0, 0, 0),
		gmem_region(1, 16, 4, 8, 4 * PAGE),
	};
	struct memslot_change_info ch[2];
	struct memslot_txn_result res = { .changes = ch, .max_changes = 2 };
	struct memslot_region got, first = gmem_region(1, 16, 4, 7, 0);

	assert_int_equal(memslot_set_region(f->vm, &first, NULL), 0);
	assert_int_equal(memslot_set_regions(f->vm, r, 2, &res), 0);
	assert_int_equal(res.nchanges, 2);
	assert_int_equal(ch[0].change, MEMSLOT_CHANGE_DELETE);
	assert_int_equal(ch[0].old_region.guest_memfd, 7);
	assert_int_equal(ch[1].change, MEMSLOT_CHANGE_CREATE);
	assert_int_equal(ch[1].new_region.guest_memfd, 8);
	assert_int_equal(ch[1].new_region.guest_memfd_offset, 4 * PAGE);
	memslot_slot_region(f->vm, by_id(f, 0, 1), &got);
	assert_int_equal(got.guest_memfd, 8);
	assert_int_equal(got.guest_memfd_offset, 4 * PAGE);
}

static void test_rule4_size_align(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(0, 0, 0, PAGE + 1, HVA);

	reject(f, &r, MEMSLOT_RULE_SIZE_ALIGN);
	r.memory_size = PAGE - 1;
	reject(f, &r, MEMSLOT_RULE_SIZE_ALIGN);
}

static void test_rule5_gpa_align(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(0, 0, PAGE + 8, PAGE, HVA);

	reject(f, &r, MEMSLOT_RULE_GPA_ALIGN);
}

static void test_rule6_hva(void **state)
{
	struct fixture *f = *state;
	struct fixture g = { 0 };
	const uint64_t limit = 0x7ffffffff000ull;
	struct memslot_region r = tc_region(0, 0, 0, PAGE, HVA + 16);

	reject(f, &r, MEMSLOT_RULE_HVA);
	r.userspace_addr = limit;		/* ends one page too high */
	reject(f, &r, MEMSLOT_RULE_HVA);
	r.userspace_addr = 0;
	r.memory_size = limit + PAGE;		/* larger than the limit */
	reject(f, &r, MEMSLOT_RULE_HVA);
	r.userspace_addr = UINT64_MAX - PAGE + 1; /* hva + size wraps */
	r.memory_size = 2 * PAGE;
	reject(f, &r, MEMSLOT_RULE_HVA);
	/* Ending exactly at the limit is allowed, and hva 0 too. */
	r = tc_region(0, 0, 0, PAGE, limit - PAGE);
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	r = tc_region(1, 0, PAGE, PAGE, 0);
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);

	memslot_config_init_x86_64(&g.cfg);
	g.cfg.hva_tag_mask = 0xffull << 56;
	g.cfg.hva_limit = UINT64_MAX;
	fixture_open(&g);
	r = tc_region(0, 0, 0, PAGE, (1ull << 57) | HVA);
	reject(&g, &r, MEMSLOT_RULE_HVA);
	r.userspace_addr = (1ull << 55) | HVA;	/* below the tag bits */
	assert_int_equal(memslot_set_region(g.vm, &r, NULL), 0);
	memslot_vm_destroy(g.vm);
}

static void test_rule8_as_id(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(1u << 16, 0, 0, PAGE, HVA);

	reject(f, &r, MEMSLOT_RULE_AS_ID);
	r.slot = 0xffffu << 16;
	reject(f, &r, MEMSLOT_RULE_AS_ID);
	/* The internal path skips rule 2, so the id range is rule 8. */
	r.slot = X86_TOTAL_SLOTS;
	reject_via(f, &r, true, -EINVAL, MEMSLOT_RULE_AS_ID);
}

static void test_rule9_gpa_wrap(void **state)
{
	struct fixture *f = *state;
	/* A sum of exactly 2^64 counts as wrapping. */
	struct memslot_region r = tc_region(0, 0, 0 - PAGE, PAGE, HVA);

	reject(f, &r, MEMSLOT_RULE_GPA_WRAP);
	r.guest_phys_addr = 0 - 2 * PAGE;
	r.memory_size = 3 * PAGE;
	reject(f, &r, MEMSLOT_RULE_GPA_WRAP);
}

static void test_rule10_too_large(void **state)
{
	struct fixture *f = *state;
	const uint64_t max_pages = (1ull << 31) - 1;
	struct memslot_region r = tc_region(0, 0, 0, (max_pages + 1) * PAGE,
					    HVA);

	reject(f, &r, MEMSLOT_RULE_TOO_LARGE);
	/* Exactly the maximum is accepted (8 TiB, as KVM). */
	r.memory_size = max_pages * PAGE;
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	r.memory_size = 0;
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
}

static void test_rule11_delete_missing(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(3, 0, 0, 0, HVA);

	reject(f, &r, MEMSLOT_RULE_DELETE_MISSING);
	add(f, 4, 0, 1);
	reject(f, &r, MEMSLOT_RULE_DELETE_MISSING);
}

static void test_rule14_modify(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(0, 0, 0x100 * PAGE, 4 * PAGE,
					    HVA + 0x100 * PAGE);

	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	r.userspace_addr += PAGE;
	reject(f, &r, MEMSLOT_RULE_MODIFY);
	r.userspace_addr -= PAGE;
	r.memory_size += PAGE;
	reject(f, &r, MEMSLOT_RULE_MODIFY);
	r.memory_size -= 2 * PAGE;
	reject(f, &r, MEMSLOT_RULE_MODIFY);
	r.memory_size += PAGE;
	r.flags = MEMSLOT_MEM_READONLY;
	reject(f, &r, MEMSLOT_RULE_MODIFY);
	/* Also when moving at the same time. */
	r.guest_phys_addr += 0x10 * PAGE;
	reject(f, &r, MEMSLOT_RULE_MODIFY);
}

static void test_rule15_noop(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(0, MEMSLOT_MEM_LOG_DIRTY_PAGES,
					    0x100 * PAGE, 4 * PAGE, HVA);
	enum memslot_rule rule = MEMSLOT_RULE_COUNT;
	struct tc_layout before = { 0 }, after = { 0 };

	r.user_data = (void *)0x1234;
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	snap_take(f, &before);
	r.user_data = (void *)0x5678;	/* ignored: nothing changes */
	assert_int_equal(memslot_set_region(f->vm, &r, &rule), 0);
	assert_int_equal(rule, MEMSLOT_RULE_NOOP);
	snap_take(f, &after);
	snap_equal(&before, &after);
}

static void test_rule16_overlap(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(1, 0, 0x103 * PAGE, 4 * PAGE, HVA);

	add(f, 0, 0x100, 4);
	reject(f, &r, MEMSLOT_RULE_OVERLAP);		/* last page */
	r.guest_phys_addr = 0xfd * PAGE;
	reject(f, &r, MEMSLOT_RULE_OVERLAP);		/* first page */
	r.guest_phys_addr = 0xf0 * PAGE;
	r.memory_size = 0x100 * PAGE;
	reject(f, &r, MEMSLOT_RULE_OVERLAP);		/* covers it */
	/* Adjacent on both sides is fine. */
	add(f, 1, 0xfc, 4);
	add(f, 2, 0x104, 4);
}

static void test_rule17_max_gfn(void **state)
{
	struct fixture *f = *state;
	const uint64_t max_gfn = (1ull << 40) - 1;
	struct memslot_region r = tc_region(0, 0, max_gfn * PAGE, 2 * PAGE,
					    HVA);

	/* CREATE: nothing was published, the generation stays. */
	reject(f, &r, MEMSLOT_RULE_MAX_GFN);
	r.memory_size = PAGE;			/* last gfn == max: fine */
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	assert_int_equal(gen(f, 0), 1);
}

/* A MOVE fails rule 17 after its INVALID swap: +2, layout unchanged. */
static void test_rule17_move(void **state)
{
	struct fixture *f = *state;
	const uint64_t max_gfn = (1ull << 40) - 1;
	struct memslot_region r = tc_region(0, 0, max_gfn * PAGE, 4 * PAGE,
					    HVA + 0x100 * PAGE);
	enum memslot_rule rule = MEMSLOT_RULE_COUNT;
	const struct memslot_slot *old;
	struct tc_layout before = { 0 }, after = { 0 };

	add(f, 0, 0x100, 4);
	old = by_id(f, 0, 0);
	snap_take(f, &before);
	assert_int_equal(memslot_set_region(f->vm, &r, &rule), -EINVAL);
	assert_int_equal(rule, MEMSLOT_RULE_MAX_GFN);
	snap_take(f, &after);
	/* the first number is address space 0's generation */
	assert_int_equal(after.v[0], before.v[0] + 2);
	after.v[0] = before.v[0];
	snap_equal(&before, &after);
	assert_ptr_equal(by_id(f, 0, 0), old);
	assert_int_equal(f->log.flush_calls, 1);
}

/* ---- check order -------------------------------------------------------- */

static void test_check_order(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r;

	/* 1 before 2: unknown flag and a non-user id. */
	r = tc_region(X86_USER_SLOTS, 1u << 5, 0, PAGE, HVA);
	reject(f, &r, MEMSLOT_RULE_FLAGS_UNKNOWN);
	/* 2 before 4. */
	r = tc_region(X86_USER_SLOTS, MEMSLOT_MEM_READONLY, 0, PAGE + 1, HVA);
	reject(f, &r, MEMSLOT_RULE_ID_USER);
	/* 4 before 5, 5 before 6, 6 before 8. */
	r = tc_region(1u << 16, 0, 1, PAGE + 1, HVA + 1);
	reject(f, &r, MEMSLOT_RULE_SIZE_ALIGN);
	r.memory_size = PAGE;
	reject(f, &r, MEMSLOT_RULE_GPA_ALIGN);
	r.guest_phys_addr = 0;
	reject(f, &r, MEMSLOT_RULE_HVA);
	/* 8 before 9, 9 before 10. */
	r = tc_region(1u << 16, 0, 0 - PAGE, PAGE, HVA);
	reject(f, &r, MEMSLOT_RULE_AS_ID);
	r = tc_region(0, 0, 0 - PAGE, (1ull << 31) * PAGE, 0);
	reject(f, &r, MEMSLOT_RULE_GPA_WRAP);
	/* A delete still runs rules 1-10 on every field. */
	r = tc_region(5, 0, 0, 0, HVA + 1);
	reject(f, &r, MEMSLOT_RULE_HVA);
	/* 14 before 16: a modify that also overlaps another slot. */
	add(f, 0, 0x100, 4);
	add(f, 1, 0x200, 4);
	r = tc_region(0, 0, 0x200 * PAGE, 4 * PAGE, HVA + PAGE);
	reject(f, &r, MEMSLOT_RULE_MODIFY);
	/* 16 before 17: overlapping and beyond the max gfn. */
	add(f, 2, (1ull << 40) - 4, 4);
	r = tc_region(3, 0, ((1ull << 40) - 2) * PAGE, 4 * PAGE, HVA);
	reject(f, &r, MEMSLOT_RULE_OVERLAP);
}

/* ---- change kinds and generations --------------------------------------- */

static void expect_ok(struct fixture *f, const struct memslot_region *r,
		      unsigned int as_id, uint64_t step)
{
	uint64_t before = gen(f, as_id);
	enum memslot_rule rule = MEMSLOT_RULE_COUNT;

	assert_int_equal(memslot_set_region(f->vm, r, &rule), 0);
	assert_int_equal(rule, MEMSLOT_RULE_OK);
	assert_int_equal(gen(f, as_id), before + step);
}

static void test_change_kinds(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(7, 0, 0x100 * PAGE, 4 * PAGE, HVA);
	const struct memslot_slot *s0, *s1;

	assert_int_equal(gen(f, 0), 0);
	expect_ok(f, &r, 0, 1);				/* CREATE */
	s0 = by_id(f, 0, 7);
	r.flags = MEMSLOT_MEM_LOG_DIRTY_PAGES;
	expect_ok(f, &r, 0, 1);				/* FLAGS_ONLY */
	s1 = by_id(f, 0, 7);
	assert_ptr_not_equal(s0, s1);
	assert_int_equal(memslot_slot_flags(s1), MEMSLOT_MEM_LOG_DIRTY_PAGES);
	r.guest_phys_addr = 0x300 * PAGE;
	r.flags = 0;					/* MOVE + flags */
	expect_ok(f, &r, 0, 2);
	s0 = by_id(f, 0, 7);
	assert_ptr_not_equal(s0, s1);
	assert_int_equal(memslot_slot_base_gfn(s0), 0x300);
	assert_int_equal(memslot_slot_flags(s0), 0);
	r.memory_size = 0;				/* DELETE */
	expect_ok(f, &r, 0, 2);
	assert_null(by_id(f, 0, 7));
	assert_int_equal(f->log.flush_calls, 2);	/* MOVE and DELETE */
}

static void test_user_data(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(2, 0, 0x10 * PAGE, PAGE, HVA);

	r.user_data = (void *)0xabc;
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	r.user_data = (void *)0xdef;	/* a modify keeps the backing */
	r.guest_phys_addr = 0x20 * PAGE;
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	assert_ptr_equal(memslot_slot_user_data(by_id(f, 0, 2)), (void *)0xabc);
	r.flags = MEMSLOT_MEM_LOG_DIRTY_PAGES;
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	assert_ptr_equal(memslot_slot_user_data(by_id(f, 0, 2)), (void *)0xabc);
	r.memory_size = 0;
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	r.memory_size = PAGE;
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	assert_ptr_equal(memslot_slot_user_data(by_id(f, 0, 2)), (void *)0xdef);
}

static void test_two_address_spaces(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(1u << 16 | 3, 0, 0, 4 * PAGE, HVA);
	uint64_t g0 = gen(f, 0);

	assert_int_equal(g0, 0);
	assert_int_equal(gen(f, 1), 1);
	expect_ok(f, &r, 1, 2);				/* CREATE: +nr_as */
	assert_int_equal(gen(f, 0), g0);
	assert_null(by_id(f, 0, 3));
	assert_int_equal(memslot_slot_as_id(by_id(f, 1, 3)), 1);
	/* The same id and range in AS 0 is another slot: no overlap. */
	r.slot = 3;
	expect_ok(f, &r, 0, 2);
	r.slot = 1u << 16 | 3;
	r.guest_phys_addr = 0x40 * PAGE;		/* MOVE: +2 * nr_as */
	expect_ok(f, &r, 1, 4);
	r.flags = MEMSLOT_MEM_READONLY;
	reject(f, &r, MEMSLOT_RULE_MODIFY);
	r.flags = MEMSLOT_MEM_LOG_DIRTY_PAGES;		/* FLAGS_ONLY */
	expect_ok(f, &r, 1, 2);
	r.memory_size = 0;				/* DELETE */
	expect_ok(f, &r, 1, 4);
	assert_int_equal(gen(f, 0) % 2, 0);
	assert_int_equal(gen(f, 1) % 2, 1);
	assert_int_equal(gen(f, 0), 2);
	assert_int_equal(gen(f, 1), 13);
	assert_int_equal(memslot_generation(f->vm, 2), 0);
	/* Overlap is per address space. */
	r = tc_region(1u << 16 | 4, 0, 0, PAGE, HVA);
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	r.slot = 4;
	reject(f, &r, MEMSLOT_RULE_OVERLAP);
}

/* ---- the INVALID phase and prepare rollback ----------------------------- */

static void test_invalid_visible_in_flush(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(5, 0, 0x100 * PAGE, 4 * PAGE,
					    HVA + 0x100 * PAGE);

	add(f, 5, 0x100, 4);
	f->log.flush_gfn = 0x102;
	r.guest_phys_addr = 0x400 * PAGE;		/* MOVE */
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	assert_int_equal(f->log.flush_calls, 1);
	assert_true(f->log.seen_found);
	assert_true(f->log.seen_flags & MEMSLOT_INVALID);
	assert_true(f->log.seen_search_flags & MEMSLOT_INVALID);
	assert_true(f->log.seen_id_flags & MEMSLOT_INVALID);
	assert_int_equal(f->log.seen_hva_ret, -EFAULT);
	/* Afterwards the slot is valid again, at its new place. */
	assert_int_equal(memslot_slot_flags(by_id(f, 0, 5)), 0);

	f->log = (struct hook_log){ .flush_gfn = 0x401 };
	r.memory_size = 0;				/* DELETE */
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	assert_int_equal(f->log.flush_calls, 1);
	assert_true(f->log.seen_flags & MEMSLOT_INVALID);
	assert_int_equal(f->log.seen_hva_ret, -EFAULT);
}

/* @r (a DELETE or MOVE of slot 0) is refused by prepare and rolled back. */
static void prepare_refused(struct fixture *f, const struct memslot_region *r,
			    int hook_ret, int err)
{
	enum memslot_rule rule = MEMSLOT_RULE_COUNT;
	const struct memslot_slot *old = by_id(f, 0, 0);
	struct tc_layout before = { 0 }, after = { 0 };

	snap_take(f, &before);
	f->log.ret = hook_ret;
	assert_int_equal(memslot_set_region(f->vm, r, &rule), err);
	f->log.ret = 0;
	assert_int_equal(rule, MEMSLOT_RULE_PREPARE);
	snap_take(f, &after);
	/* the first number is address space 0's generation */
	assert_int_equal(after.v[0], before.v[0] + 2);
	after.v[0] = before.v[0];
	snap_equal(&before, &after);
	/* The original object, not a copy, and not INVALID. */
	assert_ptr_equal(by_id(f, 0, 0), old);
	assert_int_equal(memslot_slot_flags(old), 0);
}

static void test_prepare_failure(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(0, 0, 0x100 * PAGE, 4 * PAGE,
					    HVA + 0x100 * PAGE);
	uint64_t hva = 0;

	add(f, 0, 0x100, 4);
	add(f, 1, 0x200, 4);
	r.memory_size = 0;
	prepare_refused(f, &r, -EIO, -EIO);
	assert_int_equal(f->log.prepare_change, MEMSLOT_CHANGE_DELETE);
	r.memory_size = 4 * PAGE;
	r.guest_phys_addr = 0x300 * PAGE;
	prepare_refused(f, &r, EPERM, -EPERM);		/* positive: negated */
	assert_int_equal(f->log.prepare_change, MEMSLOT_CHANGE_MOVE);
	/* The restored slot translates again. */
	memslot_read_lock(f->vm);
	assert_int_equal(memslot_gfn_to_hva(f->vm, 0, 0x101, true, &hva), 0);
	memslot_read_unlock(f->vm);
	assert_int_equal(hva, HVA + 0x101 * PAGE);

	/* CREATE: no INVALID swap, so no generation change. */
	r = tc_region(2, 0, 0x500 * PAGE, PAGE, HVA);
	f->log.ret = -ENOSPC;
	reject_via(f, &r, false, -ENOSPC, MEMSLOT_RULE_PREPARE);
	f->log.ret = 0;
	assert_int_equal(f->log.prepare_change, MEMSLOT_CHANGE_CREATE);
	assert_null(by_id(f, 0, 2));
}

/* ---- layouts ------------------------------------------------------------ */

static void test_aliasing_hva(void **state)
{
	struct fixture *f = *state;
	struct memslot_region a = tc_region(0, 0, 0x100 * PAGE, 4 * PAGE, HVA);
	struct memslot_region b = tc_region(1, 0, 0x800 * PAGE, 8 * PAGE, HVA);
	struct memslot_hva_iter it;
	struct memslot_hva_hit hit;
	bool seen[2] = { false, false };
	int hits = 0;

	assert_int_equal(memslot_set_region(f->vm, &a, NULL), 0);
	assert_int_equal(memslot_set_region(f->vm, &b, NULL), 0);
	memslot_read_lock(f->vm);
	memslot_hva_iter_init(&it, f->vm, HVA + PAGE + 1, HVA + 5 * PAGE);
	while (memslot_hva_iter_next(&it, &hit)) {
		uint32_t id = memslot_slot_id(hit.slot);
		uint64_t base = id ? 0x800 : 0x100;

		assert_true(id < 2);
		seen[id] = true;
		hits++;
		assert_int_equal(hit.hva_start, HVA + PAGE + 1);
		assert_int_equal(hit.hva_end, id ? HVA + 5 * PAGE : HVA + 4 * PAGE);
		assert_int_equal(hit.gfn_start, base + 1);
		assert_int_equal(hit.gfn_end, base + (id ? 5 : 4));
	}
	memslot_read_unlock(f->vm);
	assert_int_equal(hits, 2);
	assert_true(seen[0] && seen[1]);
}

static void test_move_overlapping_itself(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(0, 0, 0x108 * PAGE, 16 * PAGE,
					    HVA + 0x100 * PAGE);

	add(f, 0, 0x100, 16);
	add(f, 1, 0x200, 4);
	expect_ok(f, &r, 0, 2);			/* overlaps its old range */
	r.guest_phys_addr = 0x100 * PAGE;
	expect_ok(f, &r, 0, 2);			/* and back */
	r.guest_phys_addr = 0x1f4 * PAGE;	/* last 4 pages meet slot 1 */
	reject(f, &r, MEMSLOT_RULE_OVERLAP);
	assert_int_equal(memslot_slot_base_gfn(by_id(f, 0, 0)), 0x100);
}

/* All 32764 user ids, then the internal ones, as KVM. */
static void test_fill_all_ids(void **state)
{
	struct fixture *f = *state;
	const uint64_t huge = 1ull << 31;	/* above max_pages */
	struct memslot_stats st;
	struct memslot_region r;
	uint32_t id;

	for (uint32_t i = 0; i < X86_USER_SLOTS; i++)
		add(f, i, i, 1);
	assert_int_equal(memslot_lowest_free_id(f->vm, 0, &id), -ENOSPC);
	r = tc_region(X86_USER_SLOTS, 0, 0x10000 * PAGE, PAGE, HVA);
	reject(f, &r, MEMSLOT_RULE_ID_USER);
	for (uint32_t i = X86_USER_SLOTS; i < X86_TOTAL_SLOTS; i++) {
		r = tc_region(i, 0, (i - X86_USER_SLOTS + 1) * huge * PAGE,
			      huge * PAGE, HVA);
		assert_int_equal(memslot_set_internal_region(f->vm, &r, NULL), 0);
	}
	r = tc_region(X86_TOTAL_SLOTS, 0, 0x10000 * PAGE, PAGE, HVA);
	reject_via(f, &r, true, -EINVAL, MEMSLOT_RULE_AS_ID);
	assert_int_equal(memslot_vm_stats(f->vm, 0, &st), 0);
	assert_int_equal(st.used_ids, X86_TOTAL_SLOTS);
	assert_int_equal(st.free_user_ids, 0);
	assert_int_equal(st.total_pages, X86_USER_SLOTS + 3 * huge);
	/* The huge internal slots go again right away. */
	for (uint32_t i = X86_USER_SLOTS; i < X86_TOTAL_SLOTS; i++) {
		r = tc_region(i, 0, 0, 0, 0);
		assert_int_equal(memslot_set_internal_region(f->vm, &r, NULL), 0);
	}
	r = tc_region(100, 0, 0, 0, 0);
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	assert_int_equal(memslot_lowest_free_id(f->vm, 0, &id), 0);
	assert_int_equal(id, 100);
}

static void test_unbounded_profile(void **state)
{
	struct fixture *f = *state;
	const uint64_t npages = 1ull << 40;	/* far above 2^31 */
	struct memslot_region r = tc_region(70000, 0, 0, npages * PAGE, 0);
	const uint32_t ids[] = { 65536, 1u << 24, UINT32_MAX - 1 };
	struct memslot_stats st;
	uint64_t hva = 0;

	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	for (size_t i = 0; i < 3; i++)
		add(f, ids[i], npages + 16 * i, 4);
	memslot_read_lock(f->vm);
	assert_int_equal(memslot_slot_id(memslot_gfn_to_slot(f->vm, 0, npages - 1)),
			 70000);
	assert_int_equal(memslot_gfn_to_hva(f->vm, 0, npages - 1, true, &hva), 0);
	assert_int_equal(hva, (npages - 1) * PAGE);
	assert_int_equal(memslot_slot_id(memslot_id_to_slot(f->vm, 0,
						UINT32_MAX - 1)), UINT32_MAX - 1);
	memslot_read_unlock(f->vm);
	assert_int_equal(memslot_vm_stats(f->vm, 0, &st), 0);
	assert_int_equal(st.used_ids, 4);
	assert_int_equal(st.total_pages, npages + 12);
	/* A slot near the top of the 64-bit gfn and hva ranges. */
	r = tc_region(5, 0, UINT64_MAX - 2 * PAGE + 1, PAGE,
		      UINT64_MAX - 2 * PAGE + 1);
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	r.slot = 70000;
	r.memory_size = 0;
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
}

/* ---- queries ------------------------------------------------------------ */

static void test_lowest_free_id(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(1, 0, 0, 0, 0);
	uint32_t id = UINT32_MAX;

	assert_int_equal(memslot_lowest_free_id(f->vm, 0, &id), 0);
	assert_int_equal(id, 0);
	for (uint32_t i = 0; i < 3; i++)
		add(f, i, 0x10 * i, 1);
	assert_int_equal(memslot_lowest_free_id(f->vm, 0, &id), 0);
	assert_int_equal(id, 3);
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	assert_int_equal(memslot_lowest_free_id(f->vm, 0, &id), 0);
	assert_int_equal(id, 1);
	assert_int_equal(memslot_lowest_free_id(f->vm, 1, &id), -EINVAL);
}

static void test_stats(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(X86_USER_SLOTS + 1, 0,
					    0x1000 * PAGE, 8 * PAGE, HVA);
	struct memslot_stats st0, st;

	assert_int_equal(memslot_vm_stats(f->vm, 0, &st0), 0);
	assert_int_equal(st0.used_ids, 0);
	assert_int_equal(st0.free_user_ids, X86_USER_SLOTS);
	assert_int_equal(st0.total_pages, 0);
	assert_true(st0.bytes > 0);
	add(f, 0, 0, 4);
	add(f, 9, 0x100, 2);
	assert_int_equal(memslot_set_internal_region(f->vm, &r, NULL), 0);
	assert_int_equal(memslot_vm_stats(f->vm, 0, &st), 0);
	assert_int_equal(st.used_ids, 3);
	assert_int_equal(st.free_user_ids, X86_USER_SLOTS - 2);
	assert_int_equal(st.total_pages, 14);
	assert_true(st.bytes > st0.bytes);
	assert_int_equal(memslot_vm_stats(f->vm, 1, &st), -EINVAL);
}

/* A positive prepare return aborts too, returned negated. */
static void test_prepare_positive(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(3, 0, 0x300 * PAGE, PAGE, HVA);
	enum memslot_rule rule;

	f->log.ret = EPERM;
	assert_int_equal(memslot_set_region(f->vm, &r, &rule), -EPERM);
	assert_int_equal(rule, MEMSLOT_RULE_PREPARE);
	assert_null(by_id(f, 0, 3));
	f->log.ret = 0;
	assert_int_equal(memslot_set_region(f->vm, &r, &rule), 0);
}

/* The id index shrinks with the slots: after many slots come and go, the
 * VM holds about what it held before (the spare node pool aside). */
static void test_ids_shrink(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(0, 0, 0, PAGE, HVA);
	struct memslot_stats st0, st;

	assert_int_equal(memslot_vm_stats(f->vm, 0, &st0), 0);
	for (uint32_t id = 0; id < 20000; id++) {
		r = tc_region(id, 0, (uint64_t)id * 2 * PAGE, PAGE,
			      HVA + (uint64_t)id * PAGE);
		assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	}
	assert_int_equal(memslot_vm_stats(f->vm, 0, &st), 0);
	assert_true(st.bytes > st0.bytes + 20000 * 100);
	for (uint32_t id = 0; id < 20000; id++) {
		r = tc_region(id, 0, 0, 0, 0);
		assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	}
	assert_int_equal(memslot_vm_stats(f->vm, 0, &st), 0);
	/* Only the spare pool (POOL_KEEP leaves and inners) and the id
	 * map's summary may stay: far below 20000 slots' worth. */
	assert_true(st.bytes < st0.bytes + 256 * 1024);
}

static void test_messages(void **state)
{
	const int errs[] = { 0, -EINVAL, -EEXIST, -ENOENT, -ENOMEM, -EFAULT,
			     -EROFS, -EBUSY, -EDEADLK, -ENOSPC };
	const char *unknown;
	char unknown_err[128];

	(void)state;
	/* the C library's text lives in a per-thread buffer: keep a copy */
	assert_non_null(memslot_strerror(-12345));
	snprintf(unknown_err, sizeof(unknown_err), "%s",
		 memslot_strerror(-12345));
	unknown = unknown_err;
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		const char *m = memslot_strerror(errs[i]);

		assert_non_null(m);
		assert_string_not_equal(m, unknown);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(m, memslot_strerror(errs[j]));
	}
	unknown = memslot_rule_str(MEMSLOT_RULE_COUNT);
	assert_non_null(unknown);
	assert_non_null(memslot_rule_str((enum memslot_rule)-1));
	for (int i = 0; i < MEMSLOT_RULE_COUNT; i++) {
		const char *m = memslot_rule_str((enum memslot_rule)i);

		assert_non_null(m);
		assert_true(m[0] != '\0');
		assert_string_not_equal(m, unknown);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(m,
				memslot_rule_str((enum memslot_rule)j));
	}
}

/*
 * Errors the library gives no meaning of its own get the C library's
 * text; the library's own texts say only what is true for every call that
 * returns them.
 */
static void test_messages_errno(void **state)
{
	const int errs[] = { -EPERM, -EINVAL, -EIO, -EAGAIN, -ENOTSUP };
	char want[128];

	(void)state;
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		assert_int_equal(strerror_r(-errs[i], want, sizeof(want)), 0);
		assert_string_equal(memslot_strerror(errs[i]), want);
	}
	/* -EBUSY also comes from the queries, which change no slot */
	assert_null(strstr(memslot_strerror(-EBUSY), "change"));
	assert_non_null(strstr(memslot_strerror(-EDEADLK), "deadlock"));
	assert_non_null(strstr(memslot_strerror(-EEXIST), "overlap"));
	assert_non_null(memslot_strerror(INT_MIN));
	assert_non_null(memslot_strerror(5));
}

/* The rule numbers the header, the docs and the tests use are the enum
 * values, in check order (doc/design.md). */
static void test_rule_numbers(void **state)
{
	static const enum memslot_rule order[] = {
		MEMSLOT_RULE_OK, MEMSLOT_RULE_FLAGS_UNKNOWN,
		MEMSLOT_RULE_ID_USER, MEMSLOT_RULE_FLAGS_COMBO,
		MEMSLOT_RULE_SIZE_ALIGN, MEMSLOT_RULE_GPA_ALIGN,
		MEMSLOT_RULE_HVA, MEMSLOT_RULE_GMEM_OFFSET, MEMSLOT_RULE_AS_ID,
		MEMSLOT_RULE_GPA_WRAP, MEMSLOT_RULE_TOO_LARGE,
		MEMSLOT_RULE_DELETE_MISSING, MEMSLOT_RULE_PAGES_OVERFLOW,
		MEMSLOT_RULE_GMEM_IMMUTABLE, MEMSLOT_RULE_MODIFY,
		MEMSLOT_RULE_NOOP, MEMSLOT_RULE_OVERLAP, MEMSLOT_RULE_MAX_GFN,
		MEMSLOT_RULE_NOMEM, MEMSLOT_RULE_PREPARE, MEMSLOT_RULE_BUSY,
	};

	(void)state;
	assert_int_equal(sizeof(order) / sizeof(order[0]), MEMSLOT_RULE_COUNT);
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		assert_int_equal(order[i], i);
	assert_int_equal(MEMSLOT_RULE_PAGES_OVERFLOW, 12);
	assert_int_equal(MEMSLOT_RULE_OVERLAP, 16);
}

static void test_null_arguments(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r = tc_region(0, 0, 0, PAGE, HVA);
	struct memslot_txn_result res = { 0 };

	assert_int_equal(memslot_set_region(NULL, &r, NULL), -EINVAL);
	assert_int_equal(memslot_set_region(f->vm, NULL, NULL), -EINVAL);
	assert_int_equal(memslot_set_internal_region(NULL, &r, NULL), -EINVAL);
	assert_int_equal(memslot_set_internal_region(f->vm, NULL, NULL),
			 -EINVAL);
	assert_int_equal(memslot_set_regions(NULL, &r, 1, &res), -EINVAL);
	assert_int_equal(memslot_set_regions(f->vm, NULL, 1, &res), -EINVAL);
	assert_int_equal(memslot_set_regions(f->vm, NULL, 0, &res), 0);
	assert_int_equal(gen(f, 0), 0);
	/* A NULL rule pointer is allowed. */
	assert_int_equal(memslot_set_region(f->vm, &r, NULL), 0);
	assert_int_equal(gen(f, 0), 1);
}

/* ---- regressions ------------------------------------------------------- */

/* A batch that changes a slot's flags and then deletes it must count the
 * deleted pages from a live object (stage() used to read the freed
 * FLAGS_ONLY copy: garbage total_pages, a use-after-free under ASan). */
static void test_txn_flags_then_delete(void **state)
{
	struct fixture *f = *state;
	struct memslot_region r[2] = {
		tc_region(0, MEMSLOT_MEM_LOG_DIRTY_PAGES, 0x100 * PAGE,
			  4 * PAGE, slot_hva(0x100)),
		tc_region(0, 0, 0, 0, 0),
	};
	struct memslot_txn_result res = { 0 };
	struct memslot_stats st;

	add(f, 0, 0x100, 4);
	add(f, 1, 0x200, 2);
	assert_int_equal(memslot_set_regions(f->vm, r, 2, &res), 0);
	assert_null(by_id(f, 0, 0));
	assert_int_equal(memslot_vm_stats(f->vm, 0, &st), 0);
	assert_int_equal(st.used_ids, 1);
	assert_int_equal(st.total_pages, 2);
}

/*
 * Rule 17 is the arch's prepare step, for a batch as for one request: it
 * runs after rules 1-16 of every request, so a later overlap is reported
 * first, and the failed batch changes nothing.
 */
static void test_txn_max_gfn_after_layout_rules(void **state)
{
	struct fixture *f = *state;
	const uint64_t max_gfn = (1ull << 40) - 1;
	struct memslot_region r[3] = {
		/* a delete, a rule 17 failure, a rule 16 failure */
		tc_region(0, 0, 0, 0, 0),
		tc_region(2, 0, max_gfn * PAGE, 2 * PAGE, HVA),
		tc_region(3, 0, 0x200 * PAGE, PAGE, HVA),
	};
	struct memslot_txn_result res = { 0 };
	struct tc_layout before = { 0 }, after = { 0 };

	add(f, 0, 0x100, 4);
	add(f, 1, 0x200, 2);
	snap_take(f, &before);
	assert_int_equal(memslot_set_regions(f->vm, r, 3, &res), -EEXIST);
	assert_int_equal(res.failed, 2);
	assert_int_equal(res.rule, MEMSLOT_RULE_OVERLAP);
	snap_take(f, &after);
	snap_equal(&before, &after);
	assert_int_equal(f->log.flush_calls, 0);
}

/*
 * A batch that deletes or moves and then fails rule 17 behaves as a
 * single MOVE beyond the max gfn: INVALID phase, flush, restore, +2.
 */
static void test_txn_max_gfn_like_single_move(void **state)
{
	struct fixture *f = *state;
	const uint64_t max_gfn = (1ull << 40) - 1;
	struct memslot_region r[2] = {
		/* a delete, then a rule 17 failure */
		tc_region(0, 0, 0, 0, 0),
		tc_region(2, 0, max_gfn * PAGE, 2 * PAGE, HVA),
	};
	struct memslot_txn_result res = { 0 };
	struct tc_layout before = { 0 }, after = { 0 };

	add(f, 0, 0x100, 4);
	add(f, 1, 0x200, 2);
	snap_take(f, &before);
	assert_int_equal(memslot_set_regions(f->vm, r, 2, &res), -EINVAL);
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.rule, MEMSLOT_RULE_MAX_GFN);
	snap_take(f, &after);
	/* the first number is address space 0's generation */
	assert_int_equal(after.v[0], before.v[0] + 2);
	after.v[0] = before.v[0];
	snap_equal(&before, &after);
	assert_int_equal(f->log.flush_calls, 1);
	/* Without a delete or move there is no INVALID phase: +0. */
	snap_take(f, &before);
	assert_int_equal(memslot_set_regions(f->vm, &r[1], 1, &res), -EINVAL);
	assert_int_equal(res.rule, MEMSLOT_RULE_MAX_GFN);
	snap_take(f, &after);
	snap_equal(&before, &after);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_x86, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_rule1_flags_unknown), T(test_rule2_id_user),
		T(test_rule3_flags_combo), T(test_rule4_size_align),
		T(test_rule5_gpa_align), T(test_rule6_hva),
		T(test_rule8_as_id), T(test_rule9_gpa_wrap),
		T(test_rule10_too_large), T(test_rule11_delete_missing),
		T(test_rule14_modify), T(test_rule15_noop),
		T(test_rule16_overlap), T(test_rule17_max_gfn),
		T(test_rule17_move), T(test_check_order),
		T(test_change_kinds), T(test_user_data),
		cmocka_unit_test_setup_teardown(test_two_address_spaces,
						setup_two_as, teardown),
		T(test_invalid_visible_in_flush), T(test_prepare_failure),
		T(test_aliasing_hva), T(test_move_overlapping_itself),
		T(test_fill_all_ids),
		cmocka_unit_test_setup_teardown(test_unbounded_profile,
						setup_unbounded, teardown),
		cmocka_unit_test_setup_teardown(test_rule7_gmem_offset,
						setup_gmem, teardown),
		cmocka_unit_test_setup_teardown(test_rule13_gmem_immutable,
						setup_gmem, teardown),
		cmocka_unit_test_setup_teardown(test_gmem_rebind_in_batch,
						setup_gmem, teardown),
		T(test_lowest_free_id), T(test_stats), T(test_messages), T(test_messages_errno),
		T(test_rule_numbers),
		T(test_null_arguments), T(test_txn_flags_then_delete),
		T(test_txn_max_gfn_after_layout_rules),
		T(test_txn_max_gfn_like_single_move),
		T(test_prepare_positive), T(test_ids_shrink),
	};

	return cmocka_run_group_tests_name("region", tests, NULL, NULL);
}
