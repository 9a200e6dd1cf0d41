/* SPDX-License-Identifier: MIT */
/*
 * Tests of lib/spares.c: the stocks of spare objects the reclaim thread
 * keeps for the writer of deferred changes.  The test plays both sides on
 * one thread, through an allocator that counts calls and live bytes and
 * can be told to fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "spares.h"

struct counter {
	long mallocs;
	long frees;
	long fail_after;	/* mallocs that succeed; -1: all */
	size_t live;
};

static void *count_malloc(void *ctx, size_t size)
{
	struct counter *c = ctx;
	void *p;

	if (c->fail_after >= 0 && c->mallocs >= c->fail_after)
		return NULL;
	p = malloc(size);
	if (p) {
		c->mallocs++;
		c->live += size;
	}
	return p;
}

static void count_free(void *ctx, void *ptr, size_t size)
{
	struct counter *c = ctx;

	assert_true(c->live >= size);
	c->live -= size;
	c->frees++;
	free(ptr);
}

#define SIZE 64

struct fixture {
	struct counter c;
	struct memslot_allocator ops;
	struct mem_alloc alloc;
	struct spares sp;
	struct spares_list back[SPARES_KINDS];
};

static int setup(void **state)
{
	static const size_t sizes[SPARES_KINDS] = { SIZE, 2 * SIZE, SIZE, SIZE,
						    SIZE };
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->c.fail_after = -1;
	f->ops = (struct memslot_allocator){
		.size = sizeof(struct memslot_allocator),
		.malloc = count_malloc,
		.free = count_free,
		.ctx = &f->c,
	};
	mem_alloc_init(&f->alloc, &f->ops);
	spares_init(&f->sp, &f->alloc, sizes);
	*state = f;
	return 0;
}

/* Every object is freed with the stocks, whatever state they are in. */
static int teardown(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < SPARES_KINDS; i++)
		assert_int_equal(f->back[i].n, 0);
	spares_destroy(&f->sp);
	assert_int_equal(f->c.live, 0);
	assert_int_equal(f->c.mallocs, f->c.frees);
	free(f);
	return 0;
}

/* The writer takes @n objects of @kind; they go to the thread's list. */
static void take_back(struct fixture *f, enum spares_kind kind, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		void *p = spares_take(&f->sp, kind);

		assert_non_null(p);
		spares_list_push(&f->back[kind], p);
	}
}

static void test_lists(void **state)
{
	struct spares_list a = { 0 }, b = { 0 };
	uint64_t obj[6][2];

	(void)state;
	assert_null(spares_list_pop(&a));
	for (int i = 0; i < 3; i++)
		spares_list_push(&a, obj[i]);
	for (int i = 3; i < 6; i++)
		spares_list_push(&b, obj[i]);
	spares_list_splice(&a, &b);
	assert_int_equal(a.n, 6);
	assert_int_equal(b.n, 0);
	assert_null(b.head);
	/* @b's objects come first, each list in push order reversed. */
	for (int i = 5; i >= 0; i--)
		assert_ptr_equal(spares_list_pop(&a), obj[i]);
	assert_null(spares_list_pop(&a));
	/* splicing into an empty list, and from one */
	spares_list_push(&b, obj[0]);
	spares_list_splice(&a, &b);
	spares_list_splice(&a, &b);
	assert_int_equal(a.n, 1);
	assert_ptr_equal(a.tail, obj[0]);
	spares_list_push(&b, obj[1]);
	spares_list_splice(&b, &a);
	assert_ptr_equal(spares_list_pop(&b), obj[0]);
	assert_ptr_equal(spares_list_pop(&b), obj[1]);
}

/* With nothing in stock the writer allocates; what it puts back it gets
 * again, without the allocator. */
static void test_take_put(void **state)
{
	struct fixture *f = *state;
	void *p = spares_take(&f->sp, SPARES_SLOT);
	void *q;

	assert_non_null(p);
	assert_int_equal(f->c.mallocs, 1);
	spares_put(&f->sp, SPARES_SLOT, p);
	q = spares_take(&f->sp, SPARES_SLOT);
	assert_ptr_equal(p, q);
	assert_int_equal(f->c.mallocs, 1);
	/* another kind has its own lists */
	q = spares_take(&f->sp, SPARES_WIDE);
	assert_ptr_not_equal(p, q);
	assert_int_equal(f->c.mallocs, 2);
	spares_put(&f->sp, SPARES_WIDE, q);
	spares_put(&f->sp, SPARES_SLOT, p);
	f->c.fail_after = f->c.mallocs;
	assert_null(spares_take(&f->sp, SPARES_SET));
}

/* A pass stocks what the writer took (returned ones first, then new
 * ones, with room to spare); the writer then takes it all without the
 * allocator, in batches. */
static void test_restock_fills(void **state)
{
	struct fixture *f = *state;
	size_t want;
	long before;

	take_back(f, SPARES_PLAIN, 100);
	assert_int_equal(f->c.mallocs, 100);
	spares_restock(&f->sp, f->back);
	want = spares_target(&f->sp, SPARES_PLAIN);
	assert_true(want >= 100 + SPARES_STOCK_MIN);
	assert_int_equal(spares_stocked(&f->sp, SPARES_PLAIN), want);
	assert_int_equal(f->c.mallocs,
			 (long)want + (SPARES_KINDS - 1) * SPARES_STOCK_MIN);
	/* other kinds keep their minimum */
	assert_int_equal(spares_stocked(&f->sp, SPARES_SLOT), SPARES_STOCK_MIN);
	before = f->c.mallocs;
	take_back(f, SPARES_PLAIN, want);
	assert_int_equal(f->c.mallocs, before);
	assert_int_equal(spares_stocked(&f->sp, SPARES_PLAIN), 0);
	spares_restock(&f->sp, f->back);
}

/* Back objects the stock has no room for are freed by the pass. */
static void test_restock_frees(void **state)
{
	struct fixture *f = *state;
	size_t want;

	take_back(f, SPARES_SET, 1000);
	spares_restock(&f->sp, f->back);
	want = spares_target(&f->sp, SPARES_SET);
	assert_int_equal(spares_stocked(&f->sp, SPARES_SET), want);
	/* the writer took less since: the size decays, the stock (still
	 * under twice its size) keeps what it has, the rest is freed */
	take_back(f, SPARES_SET, 100);
	spares_restock(&f->sp, f->back);
	assert_true(spares_target(&f->sp, SPARES_SET) < want);
	/* (the writer took whole batches; what it did not use is its own) */
	assert_int_equal(spares_stocked(&f->sp, SPARES_SET) +
			 spares_held(&f->sp, SPARES_SET), want - 100);
	assert_true(spares_held(&f->sp, SPARES_SET) < SPARES_BATCH);
	assert_int_equal(f->c.frees, 100);
}

/* When the writer stops, the size decays pass by pass to the minimum and
 * a stock more than twice its size is cut down. */
static void test_decay_trims(void **state)
{
	struct fixture *f = *state;
	int passes = 0;

	take_back(f, SPARES_RETIRE, 4000);
	spares_restock(&f->sp, f->back);
	assert_true(spares_stocked(&f->sp, SPARES_RETIRE) >= 4000);
	while (spares_target(&f->sp, SPARES_RETIRE) > SPARES_STOCK_MIN) {
		spares_restock(&f->sp, f->back);
		assert_true(spares_stocked(&f->sp, SPARES_RETIRE) <=
			    2 * spares_target(&f->sp, SPARES_RETIRE));
		assert_true(++passes < 100);
	}
	assert_true(spares_stocked(&f->sp, SPARES_RETIRE) <=
		    2 * SPARES_STOCK_MIN);
}

/* The stock never grows beyond its maximum. */
static void test_stock_max(void **state)
{
	struct fixture *f = *state;

	take_back(f, SPARES_SLOT, SPARES_STOCK_MAX + 500);
	spares_restock(&f->sp, f->back);
	assert_int_equal(spares_target(&f->sp, SPARES_SLOT), SPARES_STOCK_MAX);
	assert_int_equal(spares_stocked(&f->sp, SPARES_SLOT), SPARES_STOCK_MAX);
	assert_int_equal(f->c.frees, 500);
}

/* A writer's list beyond SPARES_MINE_MAX goes to the thread (which
 * stocks or frees it on its pass) or, without a thread, is freed down to
 * that. */
static void test_settle(void **state)
{
	struct fixture *f = *state;
	size_t n = SPARES_MINE_MAX + 10;
	void *p[SPARES_MINE_MAX + 10];
	long mallocs;

	for (size_t i = 0; i < n; i++)
		p[i] = spares_take(&f->sp, SPARES_SLOT);
	for (size_t i = 0; i < n; i++)
		spares_put(&f->sp, SPARES_SLOT, p[i]);
	spares_settle(&f->sp, false);
	assert_int_equal(f->c.frees, 10);
	/* mine has SPARES_MINE_MAX: 10 more are new */
	for (size_t i = 0; i < n; i++)
		p[i] = spares_take(&f->sp, SPARES_SLOT);
	assert_int_equal(f->c.mallocs, (long)n + 10);
	for (size_t i = 0; i < n; i++)
		spares_put(&f->sp, SPARES_SLOT, p[i]);
	spares_settle(&f->sp, true);
	/* the writer freed nothing and kept nothing */
	assert_int_equal(f->c.frees, 10);
	spares_restock(&f->sp, f->back);
	assert_int_equal(spares_stocked(&f->sp, SPARES_SLOT),
			 spares_target(&f->sp, SPARES_SLOT));
	assert_int_equal(f->c.frees, 10);
	/* the writer's list is empty: it takes a batch from the stock */
	mallocs = f->c.mallocs;
	p[0] = spares_take(&f->sp, SPARES_SLOT);
	assert_non_null(p[0]);
	assert_int_equal(f->c.mallocs, mallocs);
	assert_int_equal(spares_stocked(&f->sp, SPARES_SLOT) +
			 spares_held(&f->sp, SPARES_SLOT) + 1,
			 spares_target(&f->sp, SPARES_SLOT));
	assert_true(spares_held(&f->sp, SPARES_SLOT) < SPARES_BATCH);
	spares_put(&f->sp, SPARES_SLOT, p[0]);
}

/* Allocation failures in a pass leave a smaller stock, nothing else. */
static void test_restock_nomem(void **state)
{
	struct fixture *f = *state;
	long before;

	take_back(f, SPARES_PLAIN, 50);
	f->c.fail_after = f->c.mallocs + 30;
	spares_restock(&f->sp, f->back);
	assert_int_equal(spares_stocked(&f->sp, SPARES_PLAIN), 80);
	/* the other kinds got nothing; the writer still can, later */
	assert_int_equal(spares_stocked(&f->sp, SPARES_SLOT), 0);
	before = f->c.mallocs;
	take_back(f, SPARES_PLAIN, 80);
	assert_int_equal(f->c.mallocs, before);
	assert_null(spares_take(&f->sp, SPARES_PLAIN));
	f->c.fail_after = -1;
	spares_restock(&f->sp, f->back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lists),
		cmocka_unit_test_setup_teardown(test_take_put, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restock_fills, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_restock_frees, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_decay_trims, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stock_max, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_settle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restock_nomem, setup,
						teardown),
	};

	return cmocka_run_group_tests_name("spares", tests, NULL, NULL);
}
