/* SPDX-License-Identifier: MIT */
/*
 * The B+tree behind the gfn and hva indexes; the contract is in bptree.h.
 *
 * Writers keep a path (a struct bpt_iter whose nodes they own: see
 * path_own() for copy on write) from the root to a leaf cell.  After a change they rewrite, bottom up, each ancestor's
 * cell for the child on the path: its key (the child's first key) and, in an
 * augmented tree, its end (the child's max end).  That one rule keeps separators and max ends
 * right whatever the change was.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bptree.h"

/* One cell of a node, carried while cells move between nodes. */
struct bpt_cell {
	uint64_t key;
	void *val;
	uint64_t end;		/* the entry's end, or the child's max end */
	uint64_t ext;		/* a wide node's extra word: the child's first
				 * tie (inner), the entry's aux (leaf) */
};

static const struct bpt_cell pad_cell = { BPT_KEY_NONE, NULL, 0, 0 };

/* The extra words of a wide node. */
static struct bpt_wide *wide_of(struct bpt_node *nd)
{
	return (struct bpt_wide *)nd;
}

static const struct bpt_wide *cwide_of(const struct bpt_node *nd)
{
	return (const struct bpt_wide *)nd;
}

/*
 * Writer paths reuse struct bpt_iter, whose node array is const for the
 * readers that share the type.  Every node on a writer's path was reached
 * from the writer's own tree (its root, then child pointers, which are not
 * const) and is the writer's to change, so giving the const back is sound;
 * a second path type would duplicate the descent and leaf-step code.
 */
static struct bpt_node *path_node(const struct bpt_iter *p, int level)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcast-qual"
	return (struct bpt_node *)p->node[level];
#pragma GCC diagnostic pop
}

/* The pool kinds: plain nodes, and wide ones (struct bpt_wide). */
static size_t node_size(bool plain)
{
	return plain ? sizeof(struct bpt_node) : sizeof(struct bpt_wide);
}

/* Whether the leaves of @t are wide. */
static bool wide_leaves(const struct bpt *t)
{
	return t->aux != NULL;
}

/* A new leaf cell for (@key, @val) of @t. */
static struct bpt_cell entry_cell(const struct bpt *t, uint64_t key,
				  void *val)
{
	struct bpt_cell c = { key, val, 0, 0 };

	c.end = t->end ? t->end(val) : 0;
	c.ext = t->aux ? t->aux(val) : 0;
	return c;
}

static uint64_t tie_of(const struct bpt *t, const void *v)
{
	return t->tie ? t->tie(v) : (uint64_t)(uintptr_t)v;
}

/* (k1, v1) < (k2, v2): keys first, then the tie order of the values. */
static bool pair_lt(const struct bpt *t, uint64_t k1, const void *v1,
		    uint64_t k2, const void *v2)
{
	return k1 < k2 || (k1 == k2 && tie_of(t, v1) < tie_of(t, v2));
}

/* ---- cells ---------------------------------------------------------- */

static void cell_get(const struct bpt_node *nd, unsigned int i,
		     struct bpt_cell *c)
{
	c->key = nd->keys[i];
	c->val = nd->vals[i];
	c->end = nd->ends[i];
	c->ext = nd->wide ? cwide_of(nd)->ties[i] : 0;
}

static void cell_set(struct bpt_node *nd, unsigned int i,
		     const struct bpt_cell *c)
{
	nd->keys[i] = c->key;
	nd->vals[i] = c->val;
	nd->ends[i] = c->end;
	if (nd->wide)
		wide_of(nd)->ties[i] = c->ext;
}

/* Make @nd hold exactly the @cnt cells @c, padded. */
static void node_load(struct bpt_node *nd, const struct bpt_cell *c,
		      unsigned int cnt)
{
	unsigned int j;

	for (j = 0; j < BPT_FANOUT; j++)
		cell_set(nd, j, j < cnt ? &c[j] : &pad_cell);
	nd->n = (uint8_t)cnt;
}

/* Move cells [@from, n) of @nd to start at @to (one step either way). */
static void cells_shift(struct bpt_node *nd, unsigned int from,
			unsigned int to)
{
	size_t cnt = nd->n - from;

	memmove(&nd->keys[to], &nd->keys[from], cnt * sizeof(nd->keys[0]));
	memmove(&nd->vals[to], &nd->vals[from], cnt * sizeof(nd->vals[0]));
	memmove(&nd->ends[to], &nd->ends[from], cnt * sizeof(nd->ends[0]));
	if (!nd->wide)
		return;
	memmove(&wide_of(nd)->ties[to], &wide_of(nd)->ties[from],
		cnt * sizeof(uint64_t));
}

static void cell_insert(struct bpt_node *nd, unsigned int q,
			const struct bpt_cell *c)
{
	cells_shift(nd, q, q + 1);
	cell_set(nd, q, c);
	nd->n++;
}

static void cell_remove(struct bpt_node *nd, unsigned int q)
{
	cells_shift(nd, q + 1, q);
	nd->n--;
	cell_set(nd, nd->n, &pad_cell);
}

/* Copy every cell of @src to the end of @dst (the caller checked room).
 * @src is left as it was: it may be a published node that readers still
 * walk; the caller drops it. */
static void cells_append(struct bpt_node *dst, const struct bpt_node *src)
{
	struct bpt_cell tmp;
	unsigned int j;

	for (j = 0; j < src->n; j++) {
		cell_get(src, j, &tmp);
		cell_set(dst, dst->n + j, &tmp);
	}
	dst->n += src->n;
}

/* ---- pool ----------------------------------------------------------- */

void bpt_pool_init(struct bpt_pool *pool, struct mem_alloc *alloc)
{
	memset(pool, 0, sizeof(*pool));
	pool->alloc = alloc;
}

/* @nd (plain if @plain, whatever nd->wide says) goes on its free list. */
static void pool_push_kind(struct bpt_pool *pool, struct bpt_node *nd,
			   bool plain)
{
	struct bpt_node **head = plain ? &pool->plain : &pool->wide;

	nd->vals[0] = *head;
	*head = nd;
	if (plain)
		pool->nplain++;
	else
		pool->nwide++;
}

static void pool_push(struct bpt_pool *pool, struct bpt_node *nd)
{
	pool_push_kind(pool, nd, !nd->wide);
}

static struct bpt_node *pool_pop(struct bpt_pool *pool, bool plain)
{
	struct bpt_node **head = plain ? &pool->plain : &pool->wide;
	struct bpt_node *nd = *head;

	/* An empty pool here is a caller bug: changes must not fail. */
	if (!nd)
		abort();
	*head = nd->vals[0];
	if (plain)
		pool->nplain--;
	else
		pool->nwide--;
	return nd;
}

/* A spare node of the current epoch, empty and padded: a leaf (@leaf,
 * wide if @wide) or an inner node (always wide). */
static struct bpt_node *node_take(struct bpt_pool *pool, bool leaf,
				  bool wide)
{
	struct bpt_node *nd = pool_pop(pool, leaf && !wide);

	nd->leaf = leaf;
	nd->wide = !leaf || wide;
	nd->epoch = pool->epoch;
	node_load(nd, NULL, 0);
	return nd;
}

/* Whether the writer may edit @nd in place: it is not published yet. */
static bool node_owned(const struct bpt_pool *pool, const struct bpt_node *nd)
{
	return nd->epoch == pool->epoch;
}

/* @nd leaves the tree: reuse it at once if no reader can have seen it,
 * else keep it until a grace period has passed. */
static void node_drop(struct bpt_pool *pool, struct bpt_node *nd)
{
	if (node_owned(pool, nd)) {
		pool_push(pool, nd);
		return;
	}
	nd->retired = pool->retired;
	pool->retired = nd;
	pool->nretired++;
}

/* An editable copy of published @nd, which is retired. */
static struct bpt_node *node_clone(struct bpt_pool *pool, struct bpt_node *nd)
{
	struct bpt_node *c = node_take(pool, nd->leaf, nd->wide);

	memcpy(c->keys, nd->keys, sizeof(c->keys));
	memcpy(c->vals, nd->vals, sizeof(c->vals));
	memcpy(c->ends, nd->ends, sizeof(c->ends));
	c->n = nd->n;
	if (nd->wide)
		memcpy(wide_of(c)->ties, cwide_of(nd)->ties,
		       sizeof(wide_of(c)->ties));
	node_drop(pool, nd);
	return c;
}

static int pool_grow(struct bpt_pool *pool, bool plain, size_t want)
{
	size_t *have = plain ? &pool->nplain : &pool->nwide;
	struct bpt_node *nd;

	while (*have < want) {
		nd = mem_zalloc(pool->alloc, node_size(plain));
		if (!nd)
			return -ENOMEM;
		nd->leaf = plain;
		nd->wide = !plain;
		pool_push(pool, nd);
	}
	return 0;
}

int bpt_pool_reserve(struct bpt_pool *pool, size_t plain, size_t wide)
{
	int err = pool_grow(pool, true, plain);

	return err ? err : pool_grow(pool, false, wide);
}

void bpt_pool_new_epoch(struct bpt_pool *pool)
{
	pool->epoch++;
}

void bpt_pool_reclaim(struct bpt_pool *pool)
{
	struct bpt_node *nd;

	while ((nd = pool->retired)) {
		pool->retired = nd->retired;
		pool_push(pool, nd);
	}
	pool->nretired = 0;
}

struct bpt_node *bpt_pool_detach_retired(struct bpt_pool *pool)
{
	struct bpt_node *list = pool->retired;

	pool->retired = NULL;
	pool->nretired = 0;
	return list;
}

void bpt_retired_free(struct mem_alloc *alloc, struct bpt_node *list)
{
	struct bpt_node *nd;

	while ((nd = list)) {
		list = nd->retired;
		mem_free(alloc, nd, node_size(!nd->wide));
	}
}

/* node_take() sets nd->leaf and nd->wide: not written here, one cache
 * line less to fetch for a node that comes from far away. */
void bpt_pool_add(struct bpt_pool *pool, struct bpt_node *nd, bool plain)
{
	pool_push_kind(pool, nd, plain);
}

struct bpt_node *bpt_pool_take(struct bpt_pool *pool, bool plain,
			       size_t keep)
{
	size_t have = plain ? pool->nplain : pool->nwide;

	return have > keep ? pool_pop(pool, plain) : NULL;
}

void bpt_pool_trim(struct bpt_pool *pool, size_t keep)
{
	while (pool->nplain > keep)
		mem_free(pool->alloc, pool_pop(pool, true), node_size(true));
	while (pool->nwide > keep)
		mem_free(pool->alloc, pool_pop(pool, false), node_size(false));
}

/* ---- tree setup ----------------------------------------------------- */

void bpt_init(struct bpt *t, uint64_t (*end)(const void *val))
{
	t->root = NULL;
	t->depth = 0;
	t->count = 0;
	t->nodes = 0;
	t->end = end;
	t->tie = NULL;
	t->aux = NULL;
	t->work = 0;
}

static void node_release(struct bpt_pool *pool, struct bpt_node *nd)
{
	unsigned int j;

	if (!nd->leaf)
		for (j = 0; j < nd->n; j++)
			node_release(pool, nd->vals[j]);
	pool_push(pool, nd);
}

/* Empty @t but keep its end, tie and aux functions. */
static void tree_reset(struct bpt *t)
{
	uint64_t (*tie)(const void *val) = t->tie;
	uint64_t (*aux)(const void *val) = t->aux;
	uint64_t work = t->work;

	bpt_init(t, t->end);
	t->tie = tie;
	t->aux = aux;
	t->work = work;
}

void bpt_clear(struct bpt *t, struct bpt_pool *pool)
{
	if (t->root)
		node_release(pool, t->root);
	tree_reset(t);
}

void bpt_nodes_for_cow(const struct bpt *t, size_t ops, size_t *plain,
		       size_t *wide)
{
	/* An edit clones its path and, when it merges, one sibling per
	 * level; no node is cloned twice in an epoch. */
	size_t d = t->depth ? t->depth : 1;
	size_t l = 2 * ops, i = 2 * ops * (d - 1);

	*(wide_leaves(t) ? wide : plain) += l < t->nodes ? l : t->nodes;
	*wide += i < t->nodes ? i : t->nodes;
}

size_t bpt_insert_plain(const struct bpt *t)
{
	return wide_leaves(t) ? 0 : 1;
}

size_t bpt_insert_wide(const struct bpt *t)
{
	/* Every inner level splits and a new root appears: depth wide
	 * nodes.  An empty tree needs none, but 1 keeps callers' sums safe.
	 * Wide leaves are counted here too. */
	return (t->depth ? t->depth : 1) + wide_leaves(t);
}

/* Bits needed to write @k: more than the levels @k inserts can add. */
static size_t bit_length(size_t k)
{
	size_t n = 0;

	for (; k; k >>= 1)
		n++;
	return n;
}

/*
 * Splits at one level when @adds cells arrive there.  A half split turns a
 * full node (8 cells above half) into 8 + 9 (1 above), so each one uses up
 * 7 of the "cells above half" that the nodes had (at most 8 per node) or
 * that the adds brought; an uneven split happens only at an end of the
 * level and leaves the new end node with one cell, so it needs 15 adds.
 * Removals before the inserts only shrink the node count.
 */
static size_t level_splits(size_t nodes, size_t adds)
{
	size_t bound = (8 * nodes + adds) / 7 + adds / 15 + 2;

	return adds < bound ? adds : bound;
}

void bpt_nodes_for_inserts(const struct bpt *t, size_t k, size_t *plain,
			   size_t *wide)
{
	size_t levels = t->depth + bit_length(k) + 1;
	size_t *leaf_kind = wide_leaves(t) ? wide : plain;
	size_t adds;

	if (k <= 2) {
		/* Each insert splits at most one node per level and may add a
		 * root: the exact worst case, and what single changes hit. */
		*leaf_kind += k;
		*wide += k * (t->depth + 1);
		return;
	}
	adds = level_splits(t->nodes, k);
	*leaf_kind += adds + 1;	/* + the first leaf of an empty tree */
	for (size_t l = 1; l < levels && adds; l++) {
		adds = level_splits(t->nodes, adds);
		*wide += adds + 1;	/* + a new root above this level */
	}
}

/* ---- separators and max ends ---------------------------------------- */

static uint64_t node_max_end(const struct bpt_node *nd)
{
	uint64_t m = 0;
	unsigned int j;

	for (j = 0; j < nd->n; j++)
		m = nd->ends[j] > m ? nd->ends[j] : m;
	return m;
}

/* The tie of @nd's first entry. */
static uint64_t first_tie(const struct bpt *t, const struct bpt_node *nd)
{
	return nd->leaf ? tie_of(t, nd->vals[0]) : cwide_of(nd)->ties[0];
}

/* The cell a parent keeps for child @nd. */
static void cell_of(const struct bpt *t, struct bpt_node *nd,
		    struct bpt_cell *c)
{
	c->key = nd->keys[0];
	c->val = nd;
	c->ext = first_tie(t, nd);
	c->end = t->end ? node_max_end(nd) : 0;
}

static void refresh(const struct bpt *t, struct bpt_node *par, unsigned int i)
{
	struct bpt_cell c;

	cell_of(t, par->vals[i], &c);
	cell_set(par, i, &c);
}

/*
 * Rewrite the path cells of levels @level - 1 up to the root.  The size_t
 * index is deliberate: with an int one, gcc 12 -O1 turned this loop into
 * an address based on a null pointer and then deleted the calls inlined
 * into bpt_insert() as unreachable (wrong code, caught by the tests).
 */
static void refresh_up(const struct bpt *t, const struct bpt_iter *p,
		       int level)
{
	size_t l;

	for (l = level > 0 ? (size_t)level : 0; l-- > 0;)
		refresh(t, path_node(p, (int)l), p->pos[l]);
}

/*
 * Once a cell went into level @level of @p without a split (splits below
 * it have fixed their own parent's cells), the ancestors hold one more
 * entry, whose end is @end: copy their first keys and raise their max
 * ends.  Cheaper than refresh_up(), which recomputes max ends from every
 * cell.
 */
static void grow_up(const struct bpt *t, const struct bpt_iter *p, int level,
		    uint64_t end)
{
	for (size_t l = level > 0 ? (size_t)level : 0; l-- > 0;) {
		struct bpt_node *par = path_node(p, (int)l);
		const struct bpt_node *child = par->vals[p->pos[l]];

		par->keys[p->pos[l]] = child->keys[0];
		wide_of(par)->ties[p->pos[l]] = first_tie(t, child);
		if (par->ends[p->pos[l]] < end)
			par->ends[p->pos[l]] = end;
	}
}

/* ---- paths ---------------------------------------------------------- */

/* Extend @p below @level to the first (or last) cell of each child. */
static void path_descend(struct bpt_iter *p, int level, bool last)
{
	/* depth <= BPT_MAX_DEPTH always; the clamp tells the compiler so. */
	int depth = p->depth < BPT_MAX_DEPTH ? p->depth : BPT_MAX_DEPTH;
	const struct bpt_node *nd;

	for (; level + 1 < depth; level++) {
		nd = ((const struct bpt_node *)p->node[level])->vals[p->pos[level]];
		p->node[level + 1] = nd;
		p->pos[level + 1] = last ? nd->n - 1 : 0;
	}
}

/* Move @p to the next leaf's first cell; false (and @p kept) at the end. */
static bool path_next_leaf(struct bpt_iter *p)
{
	const struct bpt_node *nd;
	int l = p->depth - 1;

	while (l-- > 0) {
		nd = p->node[l];
		if (p->pos[l] + 1 < nd->n) {
			p->pos[l]++;
			path_descend(p, l, false);
			return true;
		}
	}
	return false;
}

/*
 * The child of @nd whose subtree holds (@key, @tie) or where it belongs:
 * the last child whose first pair is <= it, or child 0.  Separators carry
 * ties, so this is exact however many entries share @key.
 */
static unsigned int child_for(const struct bpt_node *nd, uint64_t key,
			      uint64_t tie)
{
	const struct bpt_wide *in = cwide_of(nd);
	unsigned int i = bpt_node_search(nd, bpt_key_clamp(key));

	while (i > 0 && nd->keys[i] == key && in->ties[i] > tie)
		i--;
	return i;
}

/* How many entries of leaf @nd come before (@key, @val). */
static unsigned int leaf_rank(const struct bpt *t, const struct bpt_node *nd,
			      uint64_t key, const void *val)
{
	unsigned int r = 0, i;

	/* Entries with smaller keys, found by the node search; then the
	 * entries with an equal key that order before @val (at most a
	 * node's worth: the descent found the right leaf). */
	if (key) {
		i = bpt_node_search(nd, key - 1);
		r = nd->keys[i] < key ? i + 1 : 0;
	}
	while (r < nd->n && nd->keys[r] == key &&
	       pair_lt(t, nd->keys[r], nd->vals[r], key, val))
		r++;
	return r;
}



/* Point @p at (@key, @val) or, if absent, at the cell where it belongs. */
static void locate(struct bpt *t, uint64_t key, const void *val,
		   struct bpt_iter *p)
{
	const struct bpt_node *nd = t->root;
	uint64_t tie = tie_of(t, val);
	int l;

	p->depth = (int)t->depth;
	for (l = 0; l + 1 < p->depth; l++) {
		p->node[l] = nd;
		p->pos[l] = (uint8_t)child_for(nd, key, tie);
		nd = nd->vals[p->pos[l]];
	}
	p->node[l] = nd;
	p->pos[l] = (uint8_t)leaf_rank(t, nd, key, val);
	t->work += (uint64_t)p->depth + p->pos[l];
}

/*
 * Copy on write: make every node on @p editable, top down.  A published
 * node is cloned and its parent (already editable) or the tree header is
 * pointed at the clone, so readers of earlier headers never see a change.
 */
static void path_own(struct bpt *t, struct bpt_pool *pool, struct bpt_iter *p)
{
	struct bpt_node *nd;

	for (int l = 0; l < p->depth; l++) {
		nd = path_node(p, l);
		if (node_owned(pool, nd))
			continue;
		nd = node_clone(pool, nd);
		if (l == 0)
			t->root = nd;
		else
			path_node(p, l - 1)->vals[p->pos[l - 1]] = nd;
		p->node[l] = nd;
	}
}

/* ---- insert --------------------------------------------------------- */

/* Which ends of its level the node at level @l of @p sits on. */
static void path_edges(const struct bpt_iter *p, int l, bool *first,
		       bool *last)
{
	*first = *last = true;
	for (int j = 0; j < l; j++) {
		*first = *first && p->pos[j] == 0;
		*last = *last && p->pos[j] + 1 == path_node(p, j)->n;
	}
}

/*
 * Split full @nd (level @l of @p) while adding @c at @q.  Appending to the
 * last node of a level keeps it full and starts the new node with @c alone,
 * and prepending to the first node mirrors that, so ascending or descending
 * fills leave nodes full; any other split halves the node.  Uneven splits
 * only at the two ends keep the node bound of bpt_nodes_for_inserts()
 * true: a node left full by one can never be split unevenly again.
 * Return: the new node, which is the left one if *@new_left.
 */
static struct bpt_node *node_split(struct bpt_pool *pool,
				   const struct bpt_iter *p, int l,
				   const struct bpt_cell *c, bool *new_left)
{
	struct bpt_cell all[BPT_FANOUT + 1];
	struct bpt_node *nd = path_node(p, l);
	struct bpt_node *nw = node_take(pool, nd->leaf, nd->wide);
	unsigned int j, nleft, q = p->pos[l];
	bool first, last;

	path_edges(p, l, &first, &last);
	for (j = 0; j < BPT_FANOUT; j++)
		cell_get(nd, j, &all[j + (j >= q)]);
	all[q] = *c;
	nleft = (BPT_FANOUT + 1) / 2;
	if (q == BPT_FANOUT && last)
		nleft = BPT_FANOUT;
	else if (q == 0 && first)
		nleft = 1;
	*new_left = q == 0 && first;
	node_load(*new_left ? nw : nd, all, nleft);
	node_load(*new_left ? nd : nw, all + nleft, BPT_FANOUT + 1 - nleft);
	return nw;
}

static void grow_root(struct bpt *t, struct bpt_pool *pool,
		      struct bpt_node *left, struct bpt_node *right)
{
	struct bpt_node *root = node_take(pool, false, true);
	struct bpt_cell c[2];

	cell_of(t, left, &c[0]);
	cell_of(t, right, &c[1]);
	node_load(root, c, 2);
	t->root = root;
	t->depth++;
	t->nodes++;
	assert(t->depth <= BPT_MAX_DEPTH);
}

static void insert_first(struct bpt *t, struct bpt_pool *pool,
			 const struct bpt_cell *c)
{
	t->root = node_take(pool, true, wide_leaves(t));
	node_load(t->root, c, 1);
	t->depth = 1;
	t->nodes = 1;
}

void bpt_insert(struct bpt *t, struct bpt_pool *pool, uint64_t key, void *val)
{
	struct bpt_cell c = entry_cell(t, key, val);
	uint64_t entry_end = c.end;
	struct bpt_node *nd, *nw;
	struct bpt_iter p;
	bool new_left;
	int l;

	assert(key != BPT_KEY_NONE && val);
	t->count++;
	if (!t->root) {
		insert_first(t, pool, &c);
		return;
	}
	locate(t, key, val, &p);
	path_own(t, pool, &p);
	for (l = p.depth - 1; ; l--) {
		nd = path_node(&p, l);
		if (nd->n < BPT_FANOUT) {
			cell_insert(nd, p.pos[l], &c);
			grow_up(t, &p, l, entry_end);
			return;
		}
		nw = node_split(pool, &p, l, &c, &new_left);
		t->nodes++;
		if (l == 0) {
			grow_root(t, pool, new_left ? nw : nd,
				  new_left ? nd : nw);
			return;
		}
		/* The old node's cell first, then the new node's beside it. */
		refresh(t, path_node(&p, l - 1), p.pos[l - 1]);
		cell_of(t, nw, &c);
		p.pos[l - 1] += !new_left;
	}
}

/* ---- remove --------------------------------------------------------- */

/*
 * Level @l of @p lost a cell: drop the node if empty, else merge it with a
 * sibling when both fit in one node, and fix the parent's cells.
 * Return: true if the parent lost a cell too.
 */
static bool rebalance(struct bpt *t, struct bpt_pool *pool,
		      const struct bpt_iter *p, int l)
{
	struct bpt_node *nd = path_node(p, l), *par = path_node(p, l - 1);
	unsigned int i = p->pos[l - 1];
	struct bpt_node *left = i > 0 ? par->vals[i - 1] : NULL;
	struct bpt_node *right = i + 1 < par->n ? par->vals[i + 1] : NULL;

	if (nd->n == 0) {
		cell_remove(par, i);
		node_drop(pool, nd);
		t->nodes--;
		return true;
	}
	if (left && left->n + nd->n <= BPT_FANOUT) {
		if (!node_owned(pool, left))
			par->vals[i - 1] = left = node_clone(pool, left);
		cells_append(left, nd);
		i--;
	} else if (right && nd->n + right->n <= BPT_FANOUT) {
		cells_append(nd, right);
	} else {
		refresh(t, par, i);
		return false;
	}
	/* The right node of the pair, now copied into the left one, goes. */
	node_drop(pool, par->vals[i + 1]);
	t->nodes--;
	cell_remove(par, i + 1);
	refresh(t, par, i);
	return true;
}

/* Drop roots with one child (depth shrinks) and an empty root leaf. */
static void shrink_root(struct bpt *t, struct bpt_pool *pool)
{
	struct bpt_node *old;

	while (!t->root->leaf && t->root->n == 1) {
		old = t->root;
		t->root = old->vals[0];
		t->depth--;
		t->nodes--;
		node_drop(pool, old);
	}
	if (t->root->n == 0) {
		node_drop(pool, t->root);
		tree_reset(t);
	}
}

/* Point @p at (@key, @val), which must be present. */
static struct bpt_node *locate_present(struct bpt *t, uint64_t key,
				       const void *val, struct bpt_iter *p)
{
	struct bpt_node *leaf;

	assert(t->root);
	locate(t, key, val, p);
	leaf = path_node(p, p->depth - 1);
	assert(p->pos[p->depth - 1] < leaf->n);
	assert(leaf->keys[p->pos[p->depth - 1]] == key);
	assert(leaf->vals[p->pos[p->depth - 1]] == val);
	return leaf;
}

void bpt_remove(struct bpt *t, struct bpt_pool *pool, uint64_t key, void *val)
{
	struct bpt_iter p;
	struct bpt_node *leaf;
	int l;

	locate_present(t, key, val, &p);
	path_own(t, pool, &p);
	leaf = path_node(&p, p.depth - 1);
	cell_remove(leaf, p.pos[p.depth - 1]);
	t->count--;
	for (l = p.depth - 1; l > 0 && rebalance(t, pool, &p, l); l--)
		;
	refresh_up(t, &p, l - 1);
	shrink_root(t, pool);
}

/* ---- replace -------------------------------------------------------- */

/* The new value orders like the old one (same tie), so only the cell's
 * value and, up the path, separators' ties and max ends change. */
void bpt_replace(struct bpt *t, struct bpt_pool *pool, uint64_t key,
		 void *old, void *new_val)
{
	struct bpt_node *leaf;
	struct bpt_cell c;
	struct bpt_iter p;

	assert(new_val && tie_of(t, old) == tie_of(t, new_val));
	locate_present(t, key, old, &p);
	path_own(t, pool, &p);
	leaf = path_node(&p, p.depth - 1);
	c = entry_cell(t, key, new_val);
	cell_set(leaf, p.pos[p.depth - 1], &c);
	refresh_up(t, &p, p.depth - 1);
}

/* ---- bulk build ----------------------------------------------------- */

void bpt_nodes_for_build(const struct bpt *t, size_t count, size_t *plain,
			 size_t *wide)
{
	size_t n = (count + BPT_FANOUT - 1) / BPT_FANOUT;

	*(wide_leaves(t) ? wide : plain) += n;
	while (n > 1) {
		n = (n + BPT_FANOUT - 1) / BPT_FANOUT;
		*wide += n;
	}
}

/*
 * A tree built bottom up from entries in order: every level keeps one open
 * node, filled to BPT_FANOUT before the next starts; a closed node's cell
 * goes into the open node one level up.  Level 0 is the leaves.
 */
struct builder {
	struct bpt *t;
	struct bpt_pool *pool;
	struct bpt_node *open[BPT_MAX_DEPTH + 1];
	bool closed[BPT_MAX_DEPTH + 1];	/* a node of this level was closed */
};

static void build_push(struct builder *bd, unsigned int l,
		       const struct bpt_cell *c)
{
	struct bpt_node *nd = bd->open[l];
	struct bpt_cell up;

	assert(l < BPT_MAX_DEPTH);
	if (nd && nd->n == BPT_FANOUT) {
		cell_of(bd->t, nd, &up);
		build_push(bd, l + 1, &up);
		bd->closed[l] = true;
		nd = NULL;
	}
	if (!nd) {
		nd = bd->open[l] = node_take(bd->pool, l == 0,
					     wide_leaves(bd->t));
		bd->t->nodes++;
	}
	cell_set(nd, nd->n++, c);
}

/* Close the open nodes bottom up; the first level that never closed a
 * node holds the root. */
static void build_finish(struct builder *bd)
{
	struct bpt_cell up;
	unsigned int l;

	for (l = 0; bd->open[l] && bd->closed[l]; l++) {
		cell_of(bd->t, bd->open[l], &up);
		build_push(bd, l + 1, &up);
	}
	bd->t->root = bd->open[l];
	bd->t->depth = bd->open[l] ? l + 1 : 0;
}

/* Position @it at the first entry of @t (past the end if empty). */
static void iter_first(struct bpt_iter *it, const struct bpt *t)
{
	it->depth = (int)t->depth;
	if (!t->root)
		return;
	it->node[0] = t->root;
	it->pos[0] = 0;
	path_descend(it, 0, false);
}

/* Every node of a tree that left the writer's layout: reused at once if
 * unpublished, else retired.  Children are read before their parent goes
 * (a dropped node's first cell links the pool's free list). */
static void drop_all(struct bpt_pool *pool, struct bpt_node *nd)
{
	if (!nd->leaf)
		for (unsigned int j = 0; j < nd->n; j++)
			drop_all(pool, nd->vals[j]);
	node_drop(pool, nd);
}

/* Values ahead of the one added that bpt_build_merge() starts loading. */
#define BUILD_AHEAD 16

static void build_entry(struct builder *bd, void *val,
			uint64_t (*key)(const void *))
{
	struct bpt_cell c = entry_cell(bd->t, key(val), val);

	build_push(bd, 0, &c);
}

void bpt_build_merge(struct bpt *t, struct bpt_pool *pool, void *const *vals,
		     size_t k, uint64_t (*key)(const void *))
{
	struct bpt old = *t;
	struct builder bd = { .t = t, .pool = pool };
	struct bpt_iter it;
	void *o;
	size_t i = 0;

	tree_reset(t);
	t->count = old.count + k;
	iter_first(&it, &old);
	o = bpt_iter_next(&it);
	while (o || i < k) {
		if (o && (i == k || pair_lt(t, key(o), o, key(vals[i]),
					    vals[i]))) {
			build_entry(&bd, o, key);
			o = bpt_iter_next(&it);
		} else {
			/* The values come sorted by key, which for a big
			 * batch is not their order in memory: each key()
			 * would wait for a miss of its own.  Two lines: a
			 * value's leading fields may straddle them. */
			if (i + BUILD_AHEAD < k) {
				const char *v = vals[i + BUILD_AHEAD];

				__builtin_prefetch(v);
				__builtin_prefetch(v + 63);
			}
			build_entry(&bd, vals[i++], key);
		}
	}
	build_finish(&bd);
	if (old.root)
		drop_all(pool, old.root);
}

/* ---- lookups -------------------------------------------------------- */


/*
 * bpt_find_le() and bpt_find_cover() are inline in bptree.h.  An AVX2 node
 * search (four independent 4-key compares) was measured against the
 * scalar one: no faster at 32764 slots (the walk is bound by cache misses,
 * not by the in-node compares) and twice the instructions, so the scalar
 * search is the only one.
 */


void *bpt_first(const struct bpt *t)
{
	const struct bpt_node *nd = t->root;

	if (!nd)
		return NULL;
	while (!nd->leaf)
		nd = nd->vals[0];
	return nd->vals[0];
}

void bpt_iter_seek_le(struct bpt_iter *it, const struct bpt *t, uint64_t key)
{
	const struct bpt_node *nd = t->root;
	int l;

	it->depth = (int)t->depth;
	key = bpt_key_clamp(key);
	for (l = 0; l < it->depth; l++) {
		it->node[l] = nd;
		it->pos[l] = (uint8_t)bpt_node_search(nd, key);
		nd = nd->vals[it->pos[l]];
	}
}

void *bpt_iter_next(struct bpt_iter *it)
{
	const struct bpt_node *leaf;
	void *val;
	int l = it->depth - 1;

	if (it->depth == 0)
		return NULL;
	leaf = it->node[l];
	val = leaf->vals[it->pos[l]];
	if (++it->pos[l] >= leaf->n && !path_next_leaf(it))
		it->depth = 0;
	return val;
}

/* ---- overlap walk --------------------------------------------------- */

/*
 * Here it->depth is the height of the stack of nodes being scanned and
 * pos[] the next cell to look at on each; a pushed child's cell stays
 * current in its parent until the child is done.
 */
void bpt_overlap_init(struct bpt_iter *it, const struct bpt *t,
		      uint64_t start, uint64_t end)
{
	assert(t->end);
	it->depth = 0;
	if (!t->root || start >= end)
		return;
	it->node[0] = t->root;
	it->pos[0] = 0;
	it->depth = 1;
}

static void overlap_pop(struct bpt_iter *it)
{
	if (--it->depth > 0)
		it->pos[it->depth - 1]++;
}

/* Cell @i of inner node @nd, the stack top: descend into its child if its
 * subtree's max end passes @start, else step over it. */
static void overlap_visit(struct bpt_iter *it, const struct bpt_node *nd,
			  unsigned int i, uint64_t start)
{
	int l = it->depth - 1;

	if (nd->ends[i] <= start) {
		it->pos[l]++;
		return;
	}
	it->node[l + 1] = nd->vals[i];
	it->pos[l + 1] = 0;
	it->depth++;
}

/*
 * Scan leaf @nd, the stack top, from its current cell in one tight loop
 * (no stack bookkeeping per cell: with few slots the walk is all leaf
 * cells).  Return: the next hit; else NULL with *@done set when a key at
 * or past @end ended the whole walk.
 */
static void *overlap_leaf(struct bpt_iter *it, const struct bpt_node *nd,
			  uint64_t start, uint64_t end, bool *done)
{
	unsigned int i = it->pos[it->depth - 1];

	for (; i < nd->n && nd->keys[i] < end; i++) {
		if (nd->ends[i] > start) {
			it->pos[it->depth - 1] = (uint8_t)(i + 1);
			return nd->vals[i];
		}
	}
	*done = i < nd->n;
	return NULL;
}

void *bpt_overlap_next(struct bpt_iter *it, uint64_t start, uint64_t end)
{
	const struct bpt_node *nd;
	bool done = false;
	unsigned int i;
	void *hit;

	while (it->depth > 0) {
		nd = it->node[it->depth - 1];
		if (nd->leaf) {
			hit = overlap_leaf(it, nd, start, end, &done);
			if (hit)
				return hit;
			if (done)
				break;
			overlap_pop(it);
			continue;
		}
		i = it->pos[it->depth - 1];
		if (i >= nd->n) {
			overlap_pop(it);
			continue;
		}
		/* Every later entry starts at or after this key. */
		if (nd->keys[i] >= end)
			break;
		overlap_visit(it, nd, i, start);
	}
	it->depth = 0;
	return NULL;
}

/* ---- check ---------------------------------------------------------- */

struct check_state {
	const struct bpt *t;
	bool seen;		/* an entry was visited: key/val are valid */
	uint64_t key;
	const void *val;
	size_t count;
};

static int check_cells(const struct bpt_node *nd)
{
	unsigned int j;

	for (j = 0; j < BPT_FANOUT; j++) {
		bool used = j < nd->n;

		if (used && (nd->keys[j] == BPT_KEY_NONE || !nd->vals[j]))
			return -BPT_CHECK_CELL;
		if (!used && (nd->keys[j] != BPT_KEY_NONE || nd->vals[j] ||
			      nd->ends[j] ||
			      (nd->wide && cwide_of(nd)->ties[j])))
			return -BPT_CHECK_PAD;
	}
	return 0;
}

static int check_shape(const struct bpt *t, const struct bpt_node *nd,
		       unsigned int level)
{
	if (nd->n == 0 || nd->n > BPT_FANOUT)
		return -BPT_CHECK_FILL;
	if (level == 0 && !nd->leaf && nd->n < 2)
		return -BPT_CHECK_FILL;
	if (nd->leaf != (level + 1 == t->depth))
		return -BPT_CHECK_LEVEL;
	if (nd->wide != (!nd->leaf || wide_leaves(t)))
		return -BPT_CHECK_WIDE;
	return check_cells(nd);
}

static int check_leaf(struct check_state *st, const struct bpt_node *nd,
		      uint64_t *max_end)
{
	unsigned int j;
	uint64_t e;

	*max_end = 0;
	for (j = 0; j < nd->n; j++) {
		if (st->seen &&
		    !pair_lt(st->t, st->key, st->val, nd->keys[j], nd->vals[j]))
			return -BPT_CHECK_ORDER;
		st->seen = true;
		st->key = nd->keys[j];
		st->val = nd->vals[j];
		st->count++;
		e = st->t->end ? st->t->end(nd->vals[j]) : 0;
		if (nd->ends[j] != e)
			return -BPT_CHECK_MAX_END;
		if (st->t->aux &&
		    cwide_of(nd)->aux[j] != st->t->aux(nd->vals[j]))
			return -BPT_CHECK_AUX;
		*max_end = e > *max_end ? e : *max_end;
	}
	return 0;
}

static int check_node(struct check_state *st, const struct bpt_node *nd,
		      unsigned int level, uint64_t *max_end);

static int check_inner(struct check_state *st, const struct bpt_node *nd,
		       unsigned int level, uint64_t *max_end)
{
	const struct bpt_node *child;
	unsigned int j;
	uint64_t m;
	int err;

	*max_end = 0;
	for (j = 0; j < nd->n; j++) {
		child = nd->vals[j];
		err = check_node(st, child, level + 1, &m);
		if (err)
			return err;
		if (nd->keys[j] != child->keys[0])
			return -BPT_CHECK_SEPARATOR;
		if (cwide_of(nd)->ties[j] != first_tie(st->t, child))
			return -BPT_CHECK_TIE;
		if (nd->ends[j] != m)
			return -BPT_CHECK_MAX_END;
		*max_end = m > *max_end ? m : *max_end;
	}
	return 0;
}

static int check_node(struct check_state *st, const struct bpt_node *nd,
		      unsigned int level, uint64_t *max_end)
{
	int err = check_shape(st->t, nd, level);

	if (err)
		return err;
	if (nd->leaf)
		return check_leaf(st, nd, max_end);
	return check_inner(st, nd, level, max_end);
}

int bpt_check(const struct bpt *t)
{
	struct check_state st = { .t = t };
	uint64_t m;
	int err;

	if (!t->root != !t->depth || !t->root != !t->count ||
	    t->depth > BPT_MAX_DEPTH)
		return -BPT_CHECK_ROOT;
	if (!t->root)
		return 0;
	err = check_node(&st, t->root, 0, &m);
	if (err)
		return err;
	return st.count == t->count ? 0 : -BPT_CHECK_COUNT;
}
