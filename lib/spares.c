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
		size_t fit = (sizes[i] - sizeof(struct spares_batch)) /
			     sizeof(void *) + 1;

		sp->kind[i].size = sizes[i];
		sp->kind[i].batch = fit < SPARES_BATCH ? fit : SPARES_BATCH;
		atomic_init(&sp->kind[i].taken, 0);
		atomic_init(&sp->kind[i].avail, 0);
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

/* Context: the lock held, @k->stock just changed. */
static void stock_changed(struct spares_stock *k)
{
	atomic_store_explicit(&k->avail, k->stock.n, memory_order_relaxed);
}

/* The first batch of @bs, or NULL. */
static struct spares_batch *batch_pop(struct spares_batches *bs)
{
	struct spares_batch *b = bs->head;

	if (b) {
		bs->head = b->next;
		bs->n -= b->n;
	}
	return b;
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
	from->tail->next = to->head;
	to->head = from->head;
	to->n += from->n;
	memset(from, 0, sizeof(*from));
}

/* Put @b, of @n objects, after @bs's batches. */
static void batches_append(struct spares_batches *bs, struct spares_batch *b,
			   size_t n)
{
	b->n = n;
	b->next = NULL;
	if (bs->head)
		bs->tail->next = b;
	else
		bs->head = b;
	bs->tail = b;
	bs->n += n;
}

/* Cut @l into batches of @k->batch objects appended to @bs. */
static void batches_fill(const struct spares_stock *k,
			 struct spares_batches *bs, struct spares_list *l)
{
	struct spares_batch *b;
	size_t n;

	while ((b = spares_list_pop(l))) {
		for (n = 1; n < k->batch && l->n; n++)
			b->obj[n - 1] = spares_list_pop(l);
		batches_append(bs, b, n);
	}
}

/* Free @b and the first @n - 1 objects it lists. */
static void batch_free(struct spares_batch *b, size_t n,
		       struct mem_alloc *alloc, size_t size)
{
	for (size_t i = 0; i + 1 < n; i++)
		mem_free(alloc, b->obj[i], size);
	mem_free(alloc, b, size);
}

static void batches_free(struct spares_batches *bs, struct mem_alloc *alloc,
			 size_t size)
{
	struct spares_batch *b;

	while ((b = batch_pop(bs)))
		batch_free(b, b->n, alloc, size);
}

void spares_destroy(struct spares *sp)
{
	for (int i = 0; i < SPARES_KINDS; i++) {
		struct spares_stock *k = &sp->kind[i];

		batches_free(&k->stock, sp->alloc, k->size);
		list_free(&k->surplus, sp->alloc, k->size);
		list_free(&k->mine, sp->alloc, k->size);
		if (k->cur)
			batch_free(k->cur, k->left + 1, sp->alloc, k->size);
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
 * Start loading every line of @p for writing.  The writer fills what it
 * takes from the stock at once, and the reclaim thread (on another CPU)
 * touched it last: without this, each line would be one miss after the
 * other, in the middle of the tree edits.
 */
static void warm(const struct spares_stock *k, void *p)
{
	for (size_t off = 0; off < k->size; off += 64)
		__builtin_prefetch((char *)p + off, 1);
}

/* The next object of the writer's batch, or NULL. */
static void *batch_take(struct spares_stock *k)
{
	struct spares_batch *b = k->cur;
	void *p;

	if (!b)
		return NULL;
	if (k->left) {
		p = b->obj[--k->left];
	} else {
		p = b;
		k->cur = NULL;
	}
	warm(k, p);
	return p;
}

void *spares_take(struct spares *sp, enum spares_kind kind)
{
	struct spares_stock *k = &sp->kind[kind];
	void *p = spares_list_pop(&k->mine);

	if (!p)
		p = batch_take(k);
	/* An empty stock costs no lock: the line it is on may be the
	 * thread's just then.  The lock is only tried: the thread holds it
	 * for a few stores, but it runs as a batch thread and may be
	 * preempted holding it; the writer would rather allocate one object
	 * than wait for a time slice. */
	if (!p && atomic_load_explicit(&k->avail, memory_order_relaxed) &&
	    !pthread_mutex_trylock(&sp->lock)) {
		k->cur = batch_pop(&k->stock);
		stock_changed(k);
		pthread_mutex_unlock(&sp->lock);
		if (k->cur) {
			k->left = k->cur->n - 1;
			count_taken(k, k->cur->n);
		}
		p = batch_take(k);
	}
	if (!p && (p = mem_malloc(sp->alloc, k->size)))
		count_taken(k, 1);
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

size_t spares_held(const struct spares *sp, enum spares_kind kind)
{
	const struct spares_stock *k = &sp->kind[kind];

	return k->mine.n + (k->cur ? k->left + 1 : 0);
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
 * reaches @want.  A new object is written whole, so that all its pages
 * fault in here, not on the writer (a first touch costs tens of
 * microseconds on a nested VM). */
static void fill(struct spares *sp, struct spares_stock *k,
		 struct spares_list *keep, struct spares_list *back,
		 size_t have, size_t want)
{
	void *p;

	while (have + keep->n < want && (p = spares_list_pop(back)))
		spares_list_push(keep, p);
	while (have + keep->n < want && (p = mem_malloc(sp->alloc, k->size))) {
		memset(p, 0, k->size);
		spares_list_push(keep, p);
	}
}

/*
 * A stock more than twice its size (the writer slowed down) is cut to its
 * size.  The writer finds the stock empty meanwhile and allocates: rare,
 * and cheaper than holding the lock for the walk.
 */
static void trim(struct spares *sp, struct spares_stock *k, size_t want)
{
	struct spares_batches all = { 0 }, keep = { 0 };
	struct spares_batch *b;

	pthread_mutex_lock(&sp->lock);
	if (k->stock.n > 2 * want)
		batches_splice(&all, &k->stock);
	stock_changed(k);
	pthread_mutex_unlock(&sp->lock);
	if (!all.head)
		return;
	while (keep.n < want && (b = batch_pop(&all)))
		batches_append(&keep, b, b->n);
	pthread_mutex_lock(&sp->lock);
	batches_splice(&k->stock, &keep);
	stock_changed(k);
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
	batches_fill(k, &add, &keep);
	pthread_mutex_lock(&sp->lock);
	batches_splice(&k->stock, &add);
	stock_changed(k);
	pthread_mutex_unlock(&sp->lock);
	list_free(back, sp->alloc, k->size);
	trim(sp, k, target_of(k));
}

void spares_restock(struct spares *sp, struct spares_list back[SPARES_KINDS])
{
	for (int i = 0; i < SPARES_KINDS; i++)
		restock_kind(sp, &sp->kind[i], &back[i]);
}
