/* SPDX-License-Identifier: MIT */
/* Spare objects for deferred changes; see spares.h. */
#include <string.h>

#include "spares.h"

void spares_init(struct spares *sp, struct mem_alloc *alloc,
		 const size_t sizes[SPARES_KINDS])
{
	memset(sp, 0, sizeof(*sp));
	pthread_mutex_init(&sp->lock, NULL);
	sp->alloc = alloc;
	for (int i = 0; i < SPARES_KINDS; i++) {
		sp->kind[i].size = sizes[i];
		atomic_init(&sp->kind[i].taken, 0);
	}
}

void spares_list_push(struct spares_list *l, void *p)
{
	*(void **)p = l->head;
	l->head = p;
	if (!l->n++)
		l->tail = p;
}

void *spares_list_pop(struct spares_list *l)
{
	void *p = l->head;

	if (p) {
		l->head = *(void **)p;
		l->n--;
	}
	return p;
}

void spares_list_splice(struct spares_list *to, struct spares_list *from)
{
	if (!from->n)
		return;
	*(void **)from->tail = to->head;
	if (!to->n)
		to->tail = from->tail;
	to->head = from->head;
	to->n += from->n;
	from->head = NULL;
	from->n = 0;
}

static void list_free(struct spares_list *l, struct mem_alloc *alloc,
		      size_t size)
{
	void *p;

	while ((p = spares_list_pop(l)))
		mem_free(alloc, p, size);
}

/* ---- batches ------------------------------------------------------ */

/* The first batch of @bs as a list, or an empty list. */
static struct spares_list batch_pop(struct spares_batches *bs)
{
	struct spares_batch *b = bs->head;
	struct spares_list l = { 0 };

	if (!b)
		return l;
	bs->head = b->next_batch;
	bs->n -= b->n;
	l.head = b;
	l.tail = b->tail;
	l.n = b->n;
	return l;
}

/* Put @from before @to's batches, leaving @from empty.  O(1).  First:
 * the writer takes the batches touched last, whose lines are the most
 * likely to be cached still. */
static void batches_splice(struct spares_batches *to,
			   struct spares_batches *from)
{
	if (!from->head)
		return;
	if (!to->head)
		to->tail = from->tail;
	from->tail->next_batch = to->head;
	to->head = from->head;
	to->n += from->n;
	memset(from, 0, sizeof(*from));
}

/* Cut @l into batches of SPARES_BATCH objects appended to @bs. */
static void batches_fill(struct spares_batches *bs, struct spares_list *l)
{
	struct spares_list one;
	struct spares_batch *b;
	void *p;

	while (l->n) {
		memset(&one, 0, sizeof(one));
		while (one.n < SPARES_BATCH && (p = spares_list_pop(l)))
			spares_list_push(&one, p);
		b = one.head;
		b->next_batch = NULL;
		b->n = one.n;
		b->tail = one.tail;
		batches_splice(bs, &(struct spares_batches){ b, b, b->n });
	}
}

static void batches_free(struct spares_batches *bs, struct mem_alloc *alloc,
			 size_t size)
{
	struct spares_list l;

	while ((l = batch_pop(bs)).n)
		list_free(&l, alloc, size);
}

void spares_destroy(struct spares *sp)
{
	for (int i = 0; i < SPARES_KINDS; i++) {
		struct spares_stock *k = &sp->kind[i];

		batches_free(&k->stock, sp->alloc, k->size);
		list_free(&k->surplus, sp->alloc, k->size);
		list_free(&k->mine, sp->alloc, k->size);
	}
	pthread_mutex_destroy(&sp->lock);
}

/* ---- the writer ---------------------------------------------------- */

/* Relaxed: the thread only reads the count to size the stock. */
static void count_taken(struct spares_stock *k, size_t n)
{
	size_t t = atomic_load_explicit(&k->taken, memory_order_relaxed);

	atomic_store_explicit(&k->taken, t + n, memory_order_relaxed);
}

/*
 * Only tried: the thread holds the lock for a few stores, but it runs as
 * a batch thread and may be preempted holding it; the writer would rather
 * allocate one object than wait for a time slice.
 */
void *spares_take(struct spares *sp, enum spares_kind kind)
{
	struct spares_stock *k = &sp->kind[kind];
	void *p = spares_list_pop(&k->mine);

	if (!p && !pthread_mutex_trylock(&sp->lock)) {
		k->mine = batch_pop(&k->stock);
		pthread_mutex_unlock(&sp->lock);
		count_taken(k, k->mine.n);
		p = spares_list_pop(&k->mine);
	}
	if (!p && (p = mem_malloc(sp->alloc, k->size)))
		count_taken(k, 1);
	/* The next take reads the next object's link: start loading it
	 * while the caller fills this one. */
	if (k->mine.head)
		__builtin_prefetch(k->mine.head, 1);
	return p;
}

void spares_start(struct spares *sp)
{
	for (int i = 0; i < SPARES_KINDS; i++)
		sp->kind[i].seen = atomic_load_explicit(&sp->kind[i].taken,
							memory_order_relaxed);
}

void spares_put(struct spares *sp, enum spares_kind kind, void *p)
{
	spares_list_push(&sp->kind[kind].mine, p);
}

void spares_settle(struct spares *sp, bool thread)
{
	for (int i = 0; i < SPARES_KINDS; i++) {
		struct spares_stock *k = &sp->kind[i];

		if (k->mine.n <= SPARES_MINE_MAX)
			continue;
		if (!thread) {
			while (k->mine.n > SPARES_MINE_MAX)
				mem_free(sp->alloc, spares_list_pop(&k->mine),
					 k->size);
		} else if (!pthread_mutex_trylock(&sp->lock)) {
			spares_list_splice(&k->surplus, &k->mine);
			pthread_mutex_unlock(&sp->lock);
		}
	}
}

/* ---- the reclaim thread -------------------------------------------- */

static size_t target_of(const struct spares_stock *k)
{
	size_t want = k->need + k->need / 2 + SPARES_STOCK_MIN;

	return want < SPARES_STOCK_MAX ? want : SPARES_STOCK_MAX;
}

size_t spares_target(const struct spares *sp, enum spares_kind kind)
{
	return target_of(&sp->kind[kind]);
}

size_t spares_stocked(struct spares *sp, enum spares_kind kind)
{
	size_t n;

	pthread_mutex_lock(&sp->lock);
	n = sp->kind[kind].stock.n;
	pthread_mutex_unlock(&sp->lock);
	return n;
}

/*
 * What the writer took since the last pass is what it will take until the
 * next one, roughly (changes come in bursts, passes follow them): the
 * estimate follows a rise at once and decays by a quarter per pass (to
 * zero, rounding up).
 */
static void update_need(struct spares_stock *k)
{
	size_t taken = atomic_load_explicit(&k->taken, memory_order_relaxed);
	size_t used = taken - k->seen;

	k->seen = taken;
	k->need = used > k->need ? used : k->need - (k->need + 3) / 4;
}

/* Fill @keep from @back, then from the allocator, until @have + its count
 * reaches @want.  Linking a new object writes to it, so its page faults
 * in here, not on the writer. */
static void fill(struct spares *sp, struct spares_stock *k,
		 struct spares_list *keep, struct spares_list *back,
		 size_t have, size_t want)
{
	void *p;

	while (have + keep->n < want && (p = spares_list_pop(back)))
		spares_list_push(keep, p);
	while (have + keep->n < want && (p = mem_malloc(sp->alloc, k->size)))
		spares_list_push(keep, p);
}

/*
 * A stock more than twice its size (the writer slowed down) is cut to its
 * size.  The writer finds the stock empty meanwhile and allocates: rare,
 * and cheaper than holding the lock for the walk.
 */
static void trim(struct spares *sp, struct spares_stock *k, size_t want)
{
	struct spares_batches all = { 0 }, keep = { 0 };
	struct spares_list l;

	pthread_mutex_lock(&sp->lock);
	if (k->stock.n > 2 * want)
		batches_splice(&all, &k->stock);
	pthread_mutex_unlock(&sp->lock);
	if (!all.head)
		return;
	while (keep.n < want && (l = batch_pop(&all)).n)
		batches_fill(&keep, &l);
	pthread_mutex_lock(&sp->lock);
	batches_splice(&k->stock, &keep);
	pthread_mutex_unlock(&sp->lock);
	batches_free(&all, sp->alloc, k->size);
}

/* The lock is held for O(1) each time; filling and freeing run outside. */
static void restock_kind(struct spares *sp, struct spares_stock *k,
			 struct spares_list *back)
{
	struct spares_batches add = { 0 };
	struct spares_list keep = { 0 };
	size_t have;

	update_need(k);
	pthread_mutex_lock(&sp->lock);
	spares_list_splice(back, &k->surplus);
	have = k->stock.n;
	pthread_mutex_unlock(&sp->lock);
	fill(sp, k, &keep, back, have, target_of(k));
	batches_fill(&add, &keep);
	pthread_mutex_lock(&sp->lock);
	batches_splice(&k->stock, &add);
	pthread_mutex_unlock(&sp->lock);
	list_free(back, sp->alloc, k->size);
	trim(sp, k, target_of(k));
}

void spares_restock(struct spares *sp, struct spares_list back[SPARES_KINDS])
{
	for (int i = 0; i < SPARES_KINDS; i++)
		restock_kind(sp, &sp->kind[i], &back[i]);
}
