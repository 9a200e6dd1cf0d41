/* SPDX-License-Identifier: MIT */
/*
 * Tests of lib/bptree.c.  The main ones apply seeded random changes to a
 * tree and to a sorted array of the same entries, and compare every kind of
 * lookup between the two after each step.
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

#include "bptree.h"
#include "common.h"

/* A tree value: the entry's key, its tie (orders equal keys; kept by a
 * replacement, as a slot id is), for augmented trees its end and, for
 * trees with wide leaves, its aux word (random, changed by a replacement,
 * as a slot's flags are). */
struct item {
	uint64_t key;
	uint64_t tie;
	uint64_t end;
	uint64_t aux;
	bool in_tree;
	bool pinned;		/* a snapshot still holds it: not reusable */
};

static uint64_t item_end(const void *val)
{
	return ((const struct item *)val)->end;
}

static uint64_t item_tie(const void *val)
{
	return ((const struct item *)val)->tie;
}

static uint64_t item_aux(const void *val)
{
	return ((const struct item *)val)->aux;
}

/* Tree kinds: plain, augmented (ends), augmented with wide leaves (aux). */
enum kind { PLAIN, AUGMENTED, WIDE };

/* ---- the harness: a tree, its pool and the reference ---------------- */

struct harness {
	struct mem_alloc alloc;
	struct bpt_pool pool;
	struct bpt t;
	struct item *items;
	size_t nitems;
	struct item **ref;	/* sorted by (key, tie) */
	uint64_t next_tie;
	size_t nref;
	uint64_t rng;
	uint64_t nkeys;		/* keys are 1 + k * key_step, k < nkeys */
	uint64_t key_step;
	uint64_t max_len;	/* interval lengths of augmented entries */
	bool cow;		/* edits may clone published nodes */
};

static void h_init(struct harness *h, enum kind kind, size_t nitems,
		   uint64_t seed)
{
	memset(h, 0, sizeof(*h));
	mem_alloc_init(&h->alloc, NULL);
	bpt_pool_init(&h->pool, &h->alloc);
	bpt_init(&h->t, kind != PLAIN ? item_end : NULL);
	h->t.tie = item_tie;
	h->t.aux = kind == WIDE ? item_aux : NULL;
	h->items = calloc(nitems, sizeof(*h->items));
	h->ref = calloc(nitems, sizeof(*h->ref));
	assert_non_null(h->items);
	assert_non_null(h->ref);
	h->nitems = nitems;
	h->rng = tc_rng_seed(seed);
	h->nkeys = 1u << 20;
	h->key_step = 1;
	h->max_len = 1;
}

/* Tear down; every byte the tree and pool took must come back. */
static void h_fini(struct harness *h)
{
	bpt_clear(&h->t, &h->pool);
	assert_int_equal(bpt_check(&h->t), 0);
	assert_null(bpt_first(&h->t));
	bpt_pool_trim(&h->pool, 0);
	assert_int_equal(h->alloc.bytes, 0);
	free(h->items);
	free(h->ref);
}

static bool ref_lt(const struct item *a, const struct item *b)
{
	return a->key < b->key || (a->key == b->key && a->tie < b->tie);
}

/* Index of the first reference entry not below @it. */
static size_t ref_rank(const struct harness *h, const struct item *it)
{
	size_t lo = 0, hi = h->nref, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (ref_lt(h->ref[mid], it))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Number of reference entries with key <= @key. */
static size_t ref_count_le(const struct harness *h, uint64_t key)
{
	size_t lo = 0, hi = h->nref, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (h->ref[mid]->key <= key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void ref_insert(struct harness *h, struct item *it)
{
	size_t r = ref_rank(h, it);

	memmove(&h->ref[r + 1], &h->ref[r], (h->nref - r) * sizeof(*h->ref));
	h->ref[r] = it;
	h->nref++;
	it->in_tree = true;
}

static void ref_remove(struct harness *h, size_t r)
{
	h->ref[r]->in_tree = false;
	h->nref--;
	memmove(&h->ref[r], &h->ref[r + 1], (h->nref - r) * sizeof(*h->ref));
}

/* ---- changes, applied to both ---------------------------------------- */

static struct item *free_item(struct harness *h)
{
	struct item *it;

	do
		it = &h->items[tc_rng(&h->rng) % h->nitems];
	while (it->in_tree || it->pinned);
	return it;
}

static uint64_t random_key(struct harness *h)
{
	return 1 + tc_rng(&h->rng) % h->nkeys * h->key_step;
}

static uint64_t random_end(struct harness *h, uint64_t key)
{
	/* Mostly short intervals, a few long ones that cover many others. */
	uint64_t len = 1 + tc_rng(&h->rng) % h->max_len;

	if (tc_rng(&h->rng) % 16 == 0)
		len *= 64;
	return len < UINT64_MAX - key ? key + len : UINT64_MAX;
}

/* Make the pool hold exactly what one copy-on-write edit may clone, plus
 * @plain and @wide nodes. */
static void h_reserve(struct harness *h, size_t plain, size_t wide)
{
	if (h->cow)
		bpt_nodes_for_cow(&h->t, 1, &plain, &wide);
	bpt_pool_trim(&h->pool, 0);
	assert_int_equal(bpt_pool_reserve(&h->pool, plain, wide), 0);
}

/* Insert @it with a pool that holds exactly what bpt_insert() may take. */
static void h_insert_item(struct harness *h, struct item *it)
{
	it->end = random_end(h, it->key);
	it->aux = tc_rng(&h->rng);
	h_reserve(h, bpt_insert_plain(&h->t), bpt_insert_wide(&h->t));
	bpt_insert(&h->t, &h->pool, it->key, it);
	ref_insert(h, it);
}

static void h_insert(struct harness *h, uint64_t key)
{
	struct item *it = free_item(h);

	it->key = key;
	it->tie = ++h->next_tie;
	h_insert_item(h, it);
}

static void h_remove(struct harness *h, size_t r)
{
	struct item *it = h->ref[r];
	size_t nodes;

	if (h->cow)
		h_reserve(h, 0, 0);
	nodes = h->pool.nplain + h->pool.nwide;
	bpt_remove(&h->t, &h->pool, it->key, it);
	ref_remove(h, r);
	/* Removing never takes nodes from the pool (unless it clones). */
	assert_true(h->cow || h->pool.nplain + h->pool.nwide >= nodes);
}

static void h_replace(struct harness *h, size_t r)
{
	struct item *old = h->ref[r], *nw = free_item(h);

	nw->key = old->key;
	nw->tie = old->tie;
	nw->end = random_end(h, nw->key);
	nw->aux = tc_rng(&h->rng);
	if (h->cow)
		h_reserve(h, 0, 0);
	bpt_replace(&h->t, &h->pool, old->key, old, nw);
	ref_remove(h, r);
	ref_insert(h, nw);
}

/* ---- comparisons with the reference ---------------------------------- */

static void expect_find_le(const struct harness *h, uint64_t key)
{
	size_t c = ref_count_le(h, key);

	assert_ptr_equal(bpt_find_le(&h->t, key), c ? h->ref[c - 1] : NULL);
}

/* With wide leaves: bpt_find_cover_hit() finds what bpt_find_cover()
 * finds, and reports the entry's key, end and aux word. */
static void expect_cover_hit(const struct harness *h, uint64_t key)
{
	const struct item *it = bpt_find_cover(&h->t, key);
	struct bpt_hit hit = { 0 };

	if (!h->t.aux)
		return;
	assert_int_equal(bpt_find_cover_hit(&h->t, key, &hit), it != NULL);
	if (!it)
		return;
	assert_ptr_equal(hit.val, it);
	assert_int_equal(hit.key, it->key);
	assert_int_equal(hit.end, it->end);
	assert_int_equal(hit.aux, it->aux);
}

static void check_lookups(struct harness *h)
{
	static const uint64_t fixed[] = { 0, 1, 2, UINT64_MAX - 1, UINT64_MAX };
	const struct item *it;
	unsigned int j;

	for (j = 0; j < sizeof(fixed) / sizeof(fixed[0]); j++) {
		expect_find_le(h, fixed[j]);
		expect_cover_hit(h, fixed[j]);
	}
	for (j = 0; j < 6; j++)
		expect_find_le(h, tc_rng(&h->rng) %
				      (h->nkeys * h->key_step + 2));
	for (j = 0; j < 4 && h->nref; j++) {
		it = h->ref[tc_rng(&h->rng) % h->nref];
		expect_find_le(h, it->key - 1);
		expect_find_le(h, it->key);
		expect_find_le(h, it->key + 1);
		expect_cover_hit(h, it->key);
		expect_cover_hit(h, it->end - 1);
		expect_cover_hit(h, it->end);
	}
	assert_ptr_equal(bpt_first(&h->t), h->nref ? h->ref[0] : NULL);
	assert_int_equal(h->t.count, h->nref);
}

/* Walk from bpt_iter_seek_le(@key) for at most @steps entries. */
static void check_seek_walk(const struct harness *h, uint64_t key,
			    size_t steps)
{
	struct bpt_iter it;
	size_t c = ref_count_le(h, key), r = c ? c - 1 : 0, k;

	bpt_iter_seek_le(&it, &h->t, key);
	for (k = 0; k < steps && r + k < h->nref; k++)
		assert_ptr_equal(bpt_iter_next(&it), h->ref[r + k]);
	if (r + k >= h->nref) {
		assert_null(bpt_iter_next(&it));
		assert_null(bpt_iter_next(&it));
	}
}

/* An empty or reversed query meets nothing. */
static bool overlaps(const struct item *it, uint64_t start, uint64_t end)
{
	return start < end && it->key < end && it->end > start;
}

static void check_overlap(const struct harness *h, uint64_t start,
			  uint64_t end)
{
	struct bpt_iter it;
	size_t r;

	bpt_overlap_init(&it, &h->t, start, end);
	for (r = 0; r < h->nref; r++)
		if (overlaps(h->ref[r], start, end))
			assert_ptr_equal(bpt_overlap_next(&it, start,
							  end), h->ref[r]);
	assert_null(bpt_overlap_next(&it, start, end));
	assert_null(bpt_overlap_next(&it, start, end));
}

static void check_overlaps(struct harness *h)
{
	uint64_t span = h->nkeys * h->key_step + 2, s, j;

	check_overlap(h, 0, UINT64_MAX);
	check_overlap(h, 5, 5);
	check_overlap(h, 9, 3);
	for (j = 0; j < 4; j++) {
		s = tc_rng(&h->rng) % span;
		check_overlap(h, s, s + 1 + tc_rng(&h->rng) % (span / 8 + 1));
		check_overlap(h, s, s + 1);
	}
}

/* Everything: structure, a whole walk, partial walks, overlaps. */
static void check_full(struct harness *h)
{
	unsigned int j;

	assert_int_equal(bpt_check(&h->t), 0);
	check_lookups(h);
	check_seek_walk(h, 0, SIZE_MAX);
	check_seek_walk(h, UINT64_MAX, SIZE_MAX);
	for (j = 0; j < 3; j++)
		check_seek_walk(h, random_key(h), 40);
	if (h->nref)
		check_seek_walk(h, h->ref[tc_rng(&h->rng) % h->nref]->key, 40);
	if (h->t.end)
		check_overlaps(h);
}

/* ---- random differential runs ---------------------------------------- */

/* One random change, biased toward reaching @target entries. */
static void random_step(struct harness *h, size_t target)
{
	unsigned int dice = tc_rng(&h->rng) % 100;
	bool grow = h->nref < target ? dice < 70 : dice < 30;

	if (h->nref == 0 || (grow && h->nref < h->nitems / 2))
		h_insert(h, random_key(h));
	else if (dice % 5 == 0)
		h_replace(h, tc_rng(&h->rng) % h->nref);
	else
		h_remove(h, tc_rng(&h->rng) % h->nref);
}

static size_t random_target(struct harness *h)
{
	static const size_t targets[] = { 0, 20, 300, 1500, 4000 };

	return targets[tc_rng(&h->rng) %
		       (sizeof(targets) / sizeof(targets[0]))];
}

static void random_run(struct harness *h, unsigned int steps)
{
	size_t target = random_target(h);
	unsigned int s;

	for (s = 0; s < steps; s++) {
		if (s % 2000 == 0)
			target = random_target(h);
		random_step(h, target);
		if (h->nref < 64 || s % 16 == 0)
			check_full(h);
		else
			check_lookups(h);
	}
	check_full(h);
}

static void test_random_plain(void **state)
{
	struct harness h;
	uint64_t seed;

	(void)state;
	for (seed = 1; seed <= 2; seed++) {
		h_init(&h, PLAIN, 10000, seed);
		random_run(&h, 20000);
		h_fini(&h);
	}
}

/* Plain tree with heavy key repetition, as aliased hvas would give. */
static void test_random_plain_dups(void **state)
{
	struct harness h;

	(void)state;
	h_init(&h, PLAIN, 10000, 3);
	h.nkeys = 40;
	random_run(&h, 20000);
	h_fini(&h);
}

static void test_random_augmented(void **state)
{
	struct harness h;
	uint64_t seed;

	(void)state;
	for (seed = 11; seed <= 12; seed++) {
		h_init(&h, AUGMENTED, 10000, seed);
		/* Few distinct starts: runs of one key span several leaves. */
		h.nkeys = 150;
		h.key_step = 4096;
		h.max_len = 3 * 4096;
		random_run(&h, 20000);
		h_fini(&h);
	}
}

/* Wide leaves (an aux word per entry) through the same random runs. */
static void test_random_wide(void **state)
{
	struct harness h;

	(void)state;
	h_init(&h, WIDE, 10000, 13);
	h.nkeys = 150;
	h.key_step = 4096;
	h.max_len = 3 * 4096;
	random_run(&h, 20000);
	h_fini(&h);
	h_init(&h, WIDE, 10000, 14);
	h.max_len = 1u << 12;
	random_run(&h, 20000);
	h_fini(&h);
}

static void test_random_augmented_sparse(void **state)
{
	struct harness h;

	(void)state;
	h_init(&h, AUGMENTED, 10000, 21);
	h.max_len = 1u << 12;
	random_run(&h, 20000);
	h_fini(&h);
}

/* ---- bulk patterns ------------------------------------------------- */

static void bulk_check(struct harness *h, size_t k)
{
	if (k % 64 == 0)
		check_full(h);
	else
		check_lookups(h);
}

static void bulk_run(struct harness *h, size_t n, uint64_t step)
{
	size_t k;

	for (k = 0; k < n; k++) {		/* ascending */
		h_insert(h, 1 + k * step);
		bulk_check(h, k);
	}
	for (k = 0; k < n; k++) {		/* descending, in between */
		h_insert(h, 1 + (n - k) * step - step / 2);
		bulk_check(h, k);
	}
	check_full(h);
	for (k = 0; k < n / 2; k++) {		/* remove from the front */
		h_remove(h, 0);
		bulk_check(h, k);
	}
	for (k = 0; k < n / 2; k++) {		/* from the back */
		h_remove(h, h->nref - 1);
		bulk_check(h, k);
	}
	for (k = 0; h->nref; k++) {		/* from the middle */
		h_remove(h, h->nref / 2);
		bulk_check(h, k);
	}
	check_full(h);
	assert_int_equal(h->t.depth, 0);
}

static void test_bulk_patterns(void **state)
{
	struct harness h;

	(void)state;
	h_init(&h, PLAIN, 20000, 31);
	bulk_run(&h, 5000, 8);
	h_fini(&h);
	h_init(&h, AUGMENTED, 20000, 32);
	h.max_len = 100;
	bulk_run(&h, 5000, 8);
	h_fini(&h);
}

/* One key shared by hundreds of entries, inserted in random order, then
 * replaced and removed one by one. */
static void test_one_key_many_values(void **state)
{
	struct harness h;
	size_t k;

	(void)state;
	h_init(&h, AUGMENTED, 2000, 41);
	h.max_len = 1000;
	for (k = 0; k < 700; k++) {
		h_insert(&h, k % 7 ? 5000 : 1 + k);
		check_lookups(&h);
	}
	check_full(&h);
	for (k = 0; k < 700; k++) {
		h_replace(&h, tc_rng(&h.rng) % h.nref);
		if (k % 8 == 0)
			check_full(&h);
	}
	while (h.nref) {
		h_remove(&h, tc_rng(&h.rng) % h.nref);
		if (h.nref % 8 == 0)
			check_full(&h);
	}
	h_fini(&h);
}

/* ---- copy on write ---------------------------------------------------- */

/* A published tree: its header and its entries in order. */
struct snapshot {
	struct bpt t;
	struct item **ref;
	size_t nref;
};

static void snap_take(struct harness *h, struct snapshot *sn)
{
	sn->t = h->t;
	sn->nref = h->nref;
	sn->ref = malloc((h->nref + 1) * sizeof(*sn->ref));
	assert_non_null(sn->ref);
	memcpy(sn->ref, h->ref, h->nref * sizeof(*sn->ref));
	for (size_t i = 0; i < sn->nref; i++)
		sn->ref[i]->pinned = true;
}

static void snap_drop(struct snapshot *sn)
{
	for (size_t i = 0; i < sn->nref; i++)
		sn->ref[i]->pinned = false;
	free(sn->ref);
}

/* The snapshot's tree still holds exactly its entries, valid. */
static void snap_check(const struct snapshot *sn)
{
	struct bpt_iter it;
	size_t k = 0;
	void *v;

	assert_int_equal(bpt_check(&sn->t), 0);
	bpt_iter_seek_le(&it, &sn->t, 0);
	while ((v = bpt_iter_next(&it)))
		assert_ptr_equal(v, sn->ref[k++]);
	assert_int_equal(k, sn->nref);
}

/*
 * Edits in a new epoch leave the published tree whole (readers of the old
 * header see it unchanged), the new tree right, and every node either in
 * the new tree or on the retired list: nothing leaks once the old tree is
 * dropped and its nodes reclaimed.
 */
static void cow_rounds(enum kind kind, uint64_t nkeys)
{
	struct snapshot sn;
	struct harness h;

	h_init(&h, kind, 8000, 61);
	h.nkeys = nkeys;
	h.max_len = 64;
	for (size_t k = 0; k < 2000; k++)
		h_insert(&h, random_key(&h));
	h.cow = true;
	for (int round = 0; round < 12; round++) {
		snap_take(&h, &sn);
		bpt_pool_new_epoch(&h.pool);
		for (int s = 0; s < 150; s++)
			random_step(&h, round % 2 ? 3000 : 100);
		check_full(&h);
		snap_check(&sn);
		assert_true(round == 0 || h.pool.nretired > 0);
		/* The grace period: the old tree's own nodes come back. */
		bpt_pool_reclaim(&h.pool);
		snap_drop(&sn);
		check_full(&h);
	}
	h_fini(&h);
}

static void test_cow_plain(void **state)
{
	(void)state;
	cow_rounds(PLAIN, 1u << 20);
	cow_rounds(PLAIN, 40);		/* many equal keys */
}

static void test_cow_augmented(void **state)
{
	(void)state;
	cow_rounds(AUGMENTED, 1u << 20);
	cow_rounds(AUGMENTED, 40);
	cow_rounds(WIDE, 1u << 20);
	cow_rounds(WIDE, 40);
}

/* A detached retired list is freed through the allocator. */
static void test_cow_detach(void **state)
{
	struct harness h;
	struct bpt_node *list;

	(void)state;
	h_init(&h, PLAIN, 400, 62);
	for (size_t k = 0; k < 200; k++)
		h_insert(&h, random_key(&h));
	h.cow = true;
	bpt_pool_new_epoch(&h.pool);
	h_remove(&h, 0);
	assert_true(h.pool.nretired > 0);
	list = bpt_pool_detach_retired(&h.pool);
	assert_int_equal(h.pool.nretired, 0);
	assert_non_null(list);
	bpt_retired_free(&h.alloc, list);
	h_fini(&h);
}

/* ---- memory -------------------------------------------------------- */

static size_t count_leaves(const struct bpt *t)
{
	struct bpt_iter it;
	const void *last = NULL;
	size_t plain = 0;

	bpt_iter_seek_le(&it, t, 0);
	while (it.depth) {
		if (it.node[it.depth - 1] != last)
			plain++;
		last = it.node[it.depth - 1];
		bpt_iter_next(&it);
	}
	return plain;
}

static void fill_and_measure(enum kind kind, bool ascending)
{
	const size_t n = 32764;
	struct harness h;
	size_t k;

	h_init(&h, kind, n, 51);
	for (k = 0; k < n; k++) {
		h.items[k].key = 16 + (ascending ? k : n - 1 - k) * 16;
		h.items[k].tie = k + 1;
		h_insert_item(&h, &h.items[k]);
	}
	check_full(&h);
	bpt_pool_trim(&h.pool, 0);
	assert_in_range(count_leaves(&h.t), (n + 15) / 16, 2100);
	assert_in_range(h.t.depth, 1, 4);
	/* Full leaves: 25 bytes per entry (key, value, end), under 28
	 * with inners counted; 8 more with an aux word. */
	assert_true(h.alloc.bytes < (kind == WIDE ? 36 : 28) * n);
	h_fini(&h);
}

static void test_fill_ascending(void **state)
{
	(void)state;
	fill_and_measure(PLAIN, true);
	fill_and_measure(AUGMENTED, true);
	fill_and_measure(WIDE, true);
}

static void test_fill_descending(void **state)
{
	(void)state;
	fill_and_measure(PLAIN, false);
	fill_and_measure(AUGMENTED, false);
	fill_and_measure(WIDE, false);
}

/* Four full leaves; shrink leaf 1 and 2 to 8 entries each, in either
 * order: they become one leaf. */
static void merge_pair(struct harness *h, bool first_left)
{
	size_t k;

	for (k = 0; k < 64; k++)
		h_insert(h, 1 + k);
	assert_int_equal(count_leaves(&h->t), 4);
	for (k = 0; k < 8; k++)
		h_remove(h, first_left ? 16 : 32);
	assert_int_equal(count_leaves(&h->t), 4);
	for (k = 0; k < 8; k++)
		h_remove(h, first_left ? 24 : 16);
	check_full(h);
	assert_int_equal(count_leaves(&h->t), 3);
	while (h->nref)
		h_remove(h, 0);
}

/* ---- bulk build -------------------------------------------------------- */

static uint64_t item_key(const void *val)
{
	return ((const struct item *)val)->key;
}

static int item_cmp(const void *a, const void *b)
{
	const struct item *x = *(void *const *)a, *y = *(void *const *)b;

	return ref_lt(x, y) ? -1 : ref_lt(y, x);
}

/*
 * Merge @k new entries into a published tree of @n: the old tree stays
 * whole, the new one is right with full leaves, takes exactly
 * bpt_nodes_for_build() nodes, and later edits keep their node bounds.
 */
static void bulk_round(enum kind kind, size_t n, size_t k, uint64_t nkeys)
{
	size_t plain = 0, wide = 0;
	struct snapshot sn;
	struct harness h;
	void **vals = calloc(k + 1, sizeof(*vals));

	assert_non_null(vals);
	h_init(&h, kind, 2 * (n + k) + 64, 71 + n + k);
	h.nkeys = nkeys;
	h.max_len = 64;
	for (size_t i = 0; i < n; i++)
		h_insert(&h, random_key(&h));
	snap_take(&h, &sn);
	bpt_pool_new_epoch(&h.pool);
	for (size_t i = 0; i < k; i++) {
		struct item *it = free_item(&h);

		it->key = random_key(&h);
		it->tie = ++h.next_tie;
		it->end = random_end(&h, it->key);
		it->aux = tc_rng(&h.rng);
		it->pinned = true;	/* not picked twice */
		vals[i] = it;
	}
	qsort(vals, k, sizeof(*vals), item_cmp);
	bpt_nodes_for_build(&h.t, n + k, &plain, &wide);
	bpt_pool_trim(&h.pool, 0);
	assert_int_equal(bpt_pool_reserve(&h.pool, plain, wide), 0);
	bpt_build_merge(&h.t, &h.pool, vals, k, item_key);
	assert_int_equal(h.pool.nplain + h.pool.nwide, 0);
	for (size_t i = 0; i < k; i++) {
		((struct item *)vals[i])->pinned = false;
		ref_insert(&h, vals[i]);
	}
	check_full(&h);
	assert_int_equal(count_leaves(&h.t), (n + k + 15) / 16);
	snap_check(&sn);
	bpt_pool_reclaim(&h.pool);
	snap_drop(&sn);
	h.cow = true;
	for (int s = 0; s < 200; s++)
		random_step(&h, n + k);
	check_full(&h);
	free(vals);
	h_fini(&h);
}

static void test_bulk_merge(void **state)
{
	static const size_t cases[][2] = {
		{ 0, 0 }, { 0, 1 }, { 0, 16 }, { 0, 17 }, { 0, 4097 },
		{ 3, 40 }, { 100, 300 }, { 1000, 64 }, { 4000, 5000 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bulk_round(PLAIN, cases[i][0], cases[i][1], 1u << 20);
		bulk_round(AUGMENTED, cases[i][0], cases[i][1], 1u << 20);
		bulk_round(AUGMENTED, cases[i][0], cases[i][1], 40); /* equal keys */
		bulk_round(WIDE, cases[i][0], cases[i][1], 1u << 20);
	}
}


/* Removing from two neighbouring leaves until they fit in one merges them,
 * and random removals from a big tree leave no long tail of sparse nodes. */
static void test_remove_merges(void **state)
{
	struct harness h;
	size_t k;

	(void)state;
	h_init(&h, PLAIN, 20000, 91);
	merge_pair(&h, true);	/* the second to shrink merges leftward */
	merge_pair(&h, false);	/* and rightward */
	for (k = 0; k < 8000; k++)
		h_insert(&h, 1 + k);
	while (h.nref > 400)
		h_remove(&h, tc_rng(&h.rng) % h.nref);
	check_full(&h);
	/* Neighbours mostly hold more than a node's worth together. */
	assert_true(count_leaves(&h.t) <= 400 / 8 + 400 / 64 + 4);
	while (h.nref > 10)
		h_remove(&h, tc_rng(&h.rng) % h.nref);
	check_full(&h);
	assert_true(h.t.depth <= 2);
	h_fini(&h);
}

static void test_pool_enomem(void **state)
{
	struct tc_alloc f;
	struct mem_alloc alloc;
	struct bpt_pool pool;

	(void)state;
	tc_alloc_init(&f);
	tc_alloc_fail_from(&f, 0);
	mem_alloc_init(&alloc, &f.ops);
	bpt_pool_init(&pool, &alloc);
	tc_alloc_fail_from(&f, 2);	/* fails among the plain nodes */
	assert_int_equal(bpt_pool_reserve(&pool, 4, 4), -ENOMEM);
	assert_int_equal(pool.nplain, 2);
	assert_int_equal(pool.nwide, 0);
	tc_alloc_fail_from(&f, 5);	/* fails among the wide nodes */
	assert_int_equal(bpt_pool_reserve(&pool, 4, 4), -ENOMEM);
	assert_int_equal(pool.nplain, 4);
	assert_int_equal(pool.nwide, 3);
	assert_int_equal(alloc.bytes, 4 * sizeof(struct bpt_node) +
				      3 * sizeof(struct bpt_wide));
	assert_int_equal(bpt_pool_reserve(&pool, 4, 3), 0);	/* no malloc */
	bpt_pool_trim(&pool, 1);
	assert_int_equal(pool.nplain, 1);
	assert_int_equal(pool.nwide, 1);
	bpt_pool_trim(&pool, 0);
	assert_int_equal(alloc.bytes, 0);
	assert_int_equal(f.blocks, 0);
	assert_null(pool.plain);
	assert_null(pool.wide);
}

/* A tree's nodes go back to the pool on clear, and the pool frees them. */
static void test_clear_returns_nodes(void **state)
{
	struct harness h;
	size_t k, held;

	(void)state;
	h_init(&h, AUGMENTED, 3000, 61);
	for (k = 0; k < 1000; k++)
		h_insert(&h, random_key(&h));
	bpt_pool_trim(&h.pool, 0);
	held = h.alloc.bytes;
	assert_true(held > 0);
	bpt_clear(&h.t, &h.pool);
	assert_int_equal(h.alloc.bytes, held);
	assert_int_equal(h.pool.nplain * sizeof(struct bpt_node) +
			 h.pool.nwide * sizeof(struct bpt_wide), held);
	assert_int_equal(h.t.count, 0);
	assert_int_equal(h.t.depth, 0);
	for (k = 0; k < h.nitems; k++)
		h.items[k].in_tree = false;
	h.nref = 0;
	check_full(&h);
	h_fini(&h);
}

/* ---- edge cases and the checker ------------------------------------ */

static void test_empty_tree(void **state)
{
	struct harness h;
	struct bpt_iter it;

	(void)state;
	h_init(&h, AUGMENTED, 4, 71);
	assert_null(bpt_find_le(&h.t, 0));
	assert_null(bpt_find_le(&h.t, UINT64_MAX));
	assert_null(bpt_first(&h.t));
	bpt_iter_seek_le(&it, &h.t, 7);
	assert_null(bpt_iter_next(&it));
	bpt_overlap_init(&it, &h.t, 0, UINT64_MAX);
	assert_null(bpt_overlap_next(&it, 0, UINT64_MAX));
	assert_int_equal(bpt_check(&h.t), 0);
	assert_true(bpt_insert_wide(&h.t) >= 1);
	/* Key 0 and the largest legal key. */
	h_insert(&h, 0);
	h_insert(&h, UINT64_MAX - 1);
	check_full(&h);
	assert_ptr_equal(bpt_find_le(&h.t, UINT64_MAX), h.ref[1]);
	assert_ptr_equal(bpt_find_le(&h.t, UINT64_MAX - 2), h.ref[0]);
	h_fini(&h);
}

/* Build a tree of depth 3 and hand back its last leaf, which is not full
 * (ascending inserts fill the others). */
static struct bpt_node *last_leaf(struct harness *h)
{
	struct bpt_node *nd;
	size_t k;

	for (k = 0; k < 410; k++)
		h_insert(h, 10 + 10 * k);
	assert_int_equal(bpt_check(&h->t), 0);
	assert_int_equal(h->t.depth, 3);
	for (nd = h->t.root; !nd->leaf; nd = nd->vals[nd->n - 1])
		;
	assert_int_equal(nd->n, 410 % BPT_FANOUT);
	return nd;
}

static void expect_broken(struct harness *h, uint64_t *cell, uint64_t bad,
			  enum bpt_check_error code)
{
	uint64_t good = *cell;

	*cell = bad;
	assert_int_equal(bpt_check(&h->t), -(int)code);
	*cell = good;
	assert_int_equal(bpt_check(&h->t), 0);
}

static void test_check_detects(void **state)
{
	struct harness h;
	struct bpt_node *leaf;
	struct bpt_wide *root;
	void *v;

	(void)state;
	h_init(&h, AUGMENTED, 1000, 81);
	leaf = last_leaf(&h);
	root = (struct bpt_wide *)h.t.root;
	expect_broken(&h, &leaf->keys[1], leaf->keys[2] + 1, BPT_CHECK_ORDER);
	expect_broken(&h, &leaf->keys[leaf->n], 3, BPT_CHECK_PAD);
	expect_broken(&h, &leaf->keys[0], BPT_KEY_NONE, BPT_CHECK_CELL);
	expect_broken(&h, &root->node.keys[1], root->node.keys[1] + 1,
		      BPT_CHECK_SEPARATOR);
	expect_broken(&h, &root->node.ends[0], root->node.ends[0] + 1,
		      BPT_CHECK_MAX_END);
	expect_broken(&h, &root->node.ends[root->node.n], 1, BPT_CHECK_PAD);
	expect_broken(&h, &leaf->ends[0], leaf->ends[0] + 1, BPT_CHECK_MAX_END);
	leaf->wide = true;
	assert_int_equal(bpt_check(&h.t), -BPT_CHECK_WIDE);
	leaf->wide = false;
	h.t.count++;
	assert_int_equal(bpt_check(&h.t), -BPT_CHECK_COUNT);
	h.t.count--;
	h.t.depth++;
	assert_int_equal(bpt_check(&h.t), -BPT_CHECK_LEVEL);
	h.t.depth--;
	v = leaf->vals[leaf->n];
	leaf->vals[leaf->n] = leaf;
	assert_int_equal(bpt_check(&h.t), -BPT_CHECK_PAD);
	leaf->vals[leaf->n] = v;
	leaf->n = 0;
	assert_int_equal(bpt_check(&h.t), -BPT_CHECK_FILL);
	h_fini(&h);	/* bpt_clear() does not read leaf cells */

	h_init(&h, WIDE, 1000, 82);
	leaf = last_leaf(&h);
	expect_broken(&h, &((struct bpt_wide *)leaf)->aux[0],
		      ((struct bpt_wide *)leaf)->aux[0] + 1, BPT_CHECK_AUX);
	expect_broken(&h, &((struct bpt_wide *)leaf)->aux[leaf->n], 1,
		      BPT_CHECK_PAD);
	leaf->wide = false;
	assert_int_equal(bpt_check(&h.t), -BPT_CHECK_WIDE);
	leaf->wide = true;
	h_fini(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_tree),
		cmocka_unit_test(test_random_plain),
		cmocka_unit_test(test_random_plain_dups),
		cmocka_unit_test(test_random_augmented),
		cmocka_unit_test(test_random_wide),
		cmocka_unit_test(test_random_augmented_sparse),
		cmocka_unit_test(test_bulk_patterns),
		cmocka_unit_test(test_one_key_many_values),
		cmocka_unit_test(test_fill_ascending),
		cmocka_unit_test(test_fill_descending),
		cmocka_unit_test(test_remove_merges),
		cmocka_unit_test(test_bulk_merge),
		cmocka_unit_test(test_pool_enomem),
		cmocka_unit_test(test_clear_returns_nodes),
		cmocka_unit_test(test_check_detects),
		cmocka_unit_test(test_cow_plain),
		cmocka_unit_test(test_cow_augmented),
		cmocka_unit_test(test_cow_detach),
	};

	return cmocka_run_group_tests_name("bptree", tests, NULL, NULL);
}
