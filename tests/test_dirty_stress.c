/* SPDX-License-Identifier: MIT */
/*
 * Stress: marking threads race a harvesting thread, and no mark is lost.
 *
 * Each page has an owner thread (page % threads), so every word is marked
 * by every thread at once.  An owner marks a page only when its previous
 * mark has been harvested, so each mark is one event: issued[p] counts
 * them, harvested[p] counts the bits the protect hook reported for p (the
 * bits a harvest or clear really took).  At the end, after a last harvest,
 * every page must have harvested[p] == issued[p]: a dropped bit shows as
 * fewer, a bit reported twice as more.  Meanwhile the harvester also moves
 * the slot back and forth (the bitmap must follow it, and marks made
 * through the old slot object must still land) and, in one case, uses
 * manual-protect mode (GET, then CLEAR of what it got).  Default-mode
 * harvests run both ways: one atomic exchange per word, and the switch of
 * bitmap halves with a grace period (forced here for a small slot).
 * test_checker_catches_drop makes the harvester drop one bit and expects
 * the checker to report exactly that page.
 *
 * MEMSLOT_STRESS_SECONDS sets each case's length (default 3; 1 here).
 */
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

#include "common.h"
#include "vm.h"		/* dirty.flip_words */

#define PAGE TC_PAGE
#define NPAGES 1000		/* not a multiple of 64: a partial last word */
#define WORDS ((NPAGES + 63) / 64)
#define MARKERS 3
#define SLOT 5
#define BASE_A 0x1000ull
#define BASE_B 0x9000ull

struct stress {
	struct memslot_vm *vm;
	_Atomic bool stop;
	bool manual;
	bool flip;		/* whole-slot harvests switch halves */
	bool drop_one;		/* fault injection for the checker test */
	bool dropped;
	_Atomic uint64_t issued[NPAGES];
	_Atomic uint64_t harvested[NPAGES];
	uint64_t base;
};

/* The protect hook: the bits a harvest or clear took. */
static void on_protect(void *ctx, const struct memslot_slot *slot,
		       uint64_t offset, uint64_t mask)
{
	struct stress *st = ctx;

	(void)slot;
	if (st->drop_one && !st->dropped) {
		mask &= mask - 1;	/* lose the lowest bit */
		st->dropped = true;
	}
	for (; mask; mask &= mask - 1) {
		uint64_t p = offset + (uint64_t)__builtin_ctzll(mask);

		atomic_fetch_add_explicit(&st->harvested[p], 1,
					  memory_order_release);
	}
}

/* One mark of page @p through whatever slot object is active now. */
static bool mark_once(struct stress *st, uint64_t p)
{
	const struct memslot_slot *s;
	bool done = false;

	memslot_read_lock(st->vm);
	s = memslot_id_to_slot(st->vm, 0, SLOT);
	/* An INVALID copy never marks: try again after the move. */
	if (s && !(memslot_slot_flags(s) & MEMSLOT_INVALID)) {
		atomic_fetch_add_explicit(&st->issued[p], 1,
					  memory_order_relaxed);
		memslot_slot_mark_page_dirty(s, memslot_slot_base_gfn(s) + p);
		done = true;
	}
	memslot_read_unlock(st->vm);
	return done;
}

struct marker {
	struct stress *st;
	unsigned int index;
	pthread_t thread;
};

static void *marker_main(void *arg)
{
	struct marker *m = arg;
	struct stress *st = m->st;

	memslot_thread_register(st->vm);
	while (!atomic_load_explicit(&st->stop, memory_order_acquire)) {
		for (uint64_t p = m->index; p < NPAGES; p += MARKERS) {
			/* Re-mark only once the last mark was harvested. */
			if (atomic_load_explicit(&st->harvested[p],
						 memory_order_acquire) ==
			    atomic_load_explicit(&st->issued[p],
						 memory_order_relaxed))
				mark_once(st, p);
		}
	}
	memslot_thread_unregister(st->vm);
	return NULL;
}

static void move_slot(struct stress *st)
{
	struct memslot_region r = {
		.slot = SLOT, .flags = MEMSLOT_MEM_LOG_DIRTY_PAGES,
		.memory_size = NPAGES * PAGE, .userspace_addr = 0x40000000,
	};

	st->base = st->base == BASE_A ? BASE_B : BASE_A;
	r.guest_phys_addr = st->base * PAGE;
	assert_int_equal(memslot_set_region(st->vm, &r, NULL), 0);
}

static void harvest(struct stress *st)
{
	uint64_t bm[WORDS];

	assert_int_equal(memslot_get_dirty_log(st->vm, SLOT, bm), 0);
	if (st->manual)
		assert_int_equal(memslot_clear_dirty_log(st->vm, SLOT, 0,
							 NPAGES, bm), 0);
}

/* Pages whose harvest count differs from their mark count. */
static unsigned int check_exactly_once(struct stress *st, uint64_t *first)
{
	unsigned int bad = 0;

	for (uint64_t p = 0; p < NPAGES; p++) {
		if (atomic_load(&st->harvested[p]) == atomic_load(&st->issued[p]))
			continue;
		if (!bad++)
			*first = p;
	}
	return bad;
}

static uint64_t marks_issued(struct stress *st)
{
	uint64_t n = 0;

	for (uint64_t p = 0; p < NPAGES; p++)
		n += atomic_load_explicit(&st->issued[p], memory_order_relaxed);
	return n;
}

/*
 * Harvest for the configured time, and on a loaded machine longer, until
 * every page was marked a few times over (MIN_MARKS), or the test would
 * prove little; GIVE_UP seconds more at most.
 */
#define MIN_MARKS (4 * NPAGES)
#define GIVE_UP 60.0

static bool keep_going(struct stress *st, double end, unsigned int rounds)
{
	double t = tc_now();

	if (t >= end + GIVE_UP)
		return false;
	return t < end || rounds < 20 ||
	       (rounds % 16 == 0 ? marks_issued(st) <= MIN_MARKS : true);
}

static unsigned int run(struct stress *st, uint64_t *first, uint64_t *marks)
{
	struct memslot_config cfg;
	struct marker m[MARKERS];
	double end = tc_now() + tc_stress_seconds(1.0);
	unsigned int rounds = 0, bad;

	memslot_config_init_x86_64(&cfg);
#ifdef TC_UNDER_TSAN
	cfg.rcu = memslot_rcu_counter();	/* orderings TSan can see */
#endif
	assert_int_equal(memslot_vm_create(&cfg, &st->vm), 0);
	st->vm->dirty.flip_words = st->flip ? 1 : UINT64_MAX;
	assert_int_equal(memslot_vm_set_dirty_protect(st->vm, on_protect, st), 0);
	assert_int_equal(memslot_vm_enable_manual_protect(st->vm,
		st->manual ? MEMSLOT_DIRTY_LOG_MANUAL_PROTECT_ENABLE : 0), 0);
	move_slot(st);
	for (unsigned int i = 0; i < MARKERS; i++) {
		m[i] = (struct marker){ st, i, 0 };
		assert_int_equal(pthread_create(&m[i].thread, NULL, marker_main,
						&m[i]), 0);
	}
	while (keep_going(st, end, rounds)) {
		harvest(st);
		if (++rounds % 8 == 0)
			move_slot(st);
	}
	atomic_store(&st->stop, true);
	for (unsigned int i = 0; i < MARKERS; i++)
		pthread_join(m[i].thread, NULL);
	harvest(st);		/* what is still pending */
	*marks = marks_issued(st);
	bad = check_exactly_once(st, first);
	memslot_vm_destroy(st->vm);
	return bad;
}

static void run_mode(bool manual, bool flip)
{
	struct stress *st = calloc(1, sizeof(*st));
	uint64_t first = 0, marks;

	assert_non_null(st);
	st->manual = manual;
	st->flip = flip;
	assert_int_equal(run(st, &first, &marks), 0);
	/* Every page was marked many times, or the test proved little. */
	assert_true(marks > MIN_MARKS);
	free(st);
}

static void test_no_mark_lost(void **state)
{
	(void)state;
	run_mode(false, false);
}

static void test_no_mark_lost_flip(void **state)
{
	(void)state;
	run_mode(false, true);
}

static void test_no_mark_lost_manual(void **state)
{
	(void)state;
	run_mode(true, false);
}

static void test_checker_catches_drop(void **state)
{
	struct stress *st = calloc(1, sizeof(*st));
	uint64_t first = UINT64_MAX, marks;

	(void)state;
	assert_non_null(st);
	st->drop_one = true;
	st->flip = true;
	assert_int_equal(run(st, &first, &marks), 1);
	assert_true(st->dropped);
	assert_true(first < NPAGES);
	free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_mark_lost),
		cmocka_unit_test(test_no_mark_lost_flip),
		cmocka_unit_test(test_no_mark_lost_manual),
		cmocka_unit_test(test_checker_catches_drop),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
