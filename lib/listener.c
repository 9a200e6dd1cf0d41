/* SPDX-License-Identifier: MIT */
/* Change listeners: the config's callbacks first, then registered ones. */
#include <errno.h>
#include <string.h>

#include "listener.h"

/* The first struct memslot_listener is today's, @ctx included. */
#define LISTENER_MIN_SIZE \
	(offsetof(struct memslot_listener, ctx) + sizeof(void *))
/* A struct memslot_callbacks must reach its last hook; a missing @ctx
 * reads as NULL. */
#define CALLBACKS_MIN_SIZE \
	(offsetof(struct memslot_callbacks, commit) + sizeof(void *))

/* ---- adapters: the config's callbacks as listener 0 ------------------- */

static int cb_prepare(struct memslot_vm *vm, void *ctx,
		      const struct memslot_slot *old,
		      const struct memslot_slot *new_slot,
		      enum memslot_change change)
{
	const struct memslot_callbacks *cb = ctx;

	(void)vm;
	return cb->prepare ? cb->prepare(cb->ctx, old, new_slot, change) : 0;
}

static void cb_flush(struct memslot_vm *vm, void *ctx,
		     const struct memslot_slot *old)
{
	const struct memslot_callbacks *cb = ctx;

	(void)vm;
	if (cb->flush)
		cb->flush(cb->ctx, old);
}

static void cb_commit(struct memslot_vm *vm, void *ctx,
		      const struct memslot_slot *old,
		      const struct memslot_slot *new_slot,
		      enum memslot_change change)
{
	const struct memslot_callbacks *cb = ctx;

	(void)vm;
	if (cb->commit)
		cb->commit(cb->ctx, old, new_slot, change);
}

/* ---- the list ---------------------------------------------------------- */

static int grow(struct listeners *ls, struct mem_alloc *alloc)
{
	size_t cap = ls->cap ? 2 * ls->cap : 4;
	struct listener *v = mem_malloc(alloc, cap * sizeof(*v));

	if (!v)
		return -ENOMEM;
	if (ls->n)
		memcpy(v, ls->v, ls->n * sizeof(*v));
	mem_free(alloc, ls->v, ls->cap * sizeof(*v));
	ls->v = v;
	ls->cap = cap;
	return 0;
}

static int push(struct listeners *ls, struct mem_alloc *alloc,
		const void *key, const struct memslot_listener *ops,
		uint64_t since)
{
	if (ls->n == ls->cap && grow(ls, alloc))
		return -ENOMEM;
	ls->v[ls->n].key = key;
	ls->v[ls->n].ops = *ops;
	ls->v[ls->n].since = since;
	ls->n++;
	if (ops->flush || ops->complete)
		atomic_fetch_add(&ls->late, 1);
	return 0;
}

bool listeners_have_late(struct listeners *ls)
{
	return atomic_load_explicit(&ls->late, memory_order_acquire) != 0;
}

int listeners_init(struct listeners *ls, struct mem_alloc *alloc,
		   const struct memslot_callbacks *cb)
{
	struct memslot_listener ops = {
		.size = sizeof(ops), .prepare = cb_prepare, .flush = cb_flush,
		.commit = cb_commit, .ctx = &ls->cb,
	};

	memset(ls, 0, sizeof(*ls));
	if (!cb)
		return 0;
	/* Read no more of the caller's struct than it says it has. */
	memcpy(&ls->cb, cb, cb->size < sizeof(ls->cb) ? cb->size
						      : sizeof(ls->cb));
	ls->cb.size = sizeof(ls->cb);
	return push(ls, alloc, cb, &ops, 0);
}

void listeners_destroy(struct listeners *ls, struct mem_alloc *alloc)
{
	mem_free(alloc, ls->v, ls->cap * sizeof(*ls->v));
	ls->v = NULL;
	ls->n = ls->cap = 0;
}

static struct listener *find(struct listeners *ls, const void *key)
{
	for (size_t i = 0; i < ls->n; i++) {
		if (ls->v[i].key == key)
			return &ls->v[i];
	}
	return NULL;
}

int listeners_add(struct listeners *ls, struct mem_alloc *alloc,
		  const struct memslot_listener *l, uint64_t since)
{
	struct memslot_listener ops;

	if (find(ls, l))
		return -EEXIST;
	memset(&ops, 0, sizeof(ops));
	memcpy(&ops, l, l->size < sizeof(ops) ? l->size : sizeof(ops));
	ops.size = sizeof(ops);
	return push(ls, alloc, l, &ops, since);
}

int listeners_del(struct listeners *ls, const struct memslot_listener *l)
{
	struct listener *e = find(ls, l);

	if (!e || e->ops.ctx == &ls->cb)
		return -ENOENT;
	if (e->ops.flush || e->ops.complete)
		atomic_fetch_sub(&ls->late, 1);
	memmove(e, e + 1, (size_t)(ls->v + ls->n - (e + 1)) * sizeof(*e));
	ls->n--;
	return 0;
}

bool listener_size_ok(const struct memslot_listener *l)
{
	return l->size >= LISTENER_MIN_SIZE;
}

bool callbacks_size_ok(const struct memslot_callbacks *cb)
{
	return cb->size >= CALLBACKS_MIN_SIZE;
}

/* ---- dispatch ------------------------------------------------------------ */

static void abort_first(struct listeners *ls, size_t upto,
			struct memslot_vm *vm, const struct memslot_slot *old,
			const struct memslot_slot *new_slot,
			enum memslot_change change)
{
	while (upto-- > 0) {
		const struct memslot_listener *o = &ls->v[upto].ops;

		if (o->abort)
			o->abort(vm, o->ctx, old, new_slot, change);
	}
}

int listeners_prepare(struct listeners *ls, struct memslot_vm *vm,
		      const struct memslot_slot *old,
		      const struct memslot_slot *new_slot,
		      enum memslot_change change)
{
	for (size_t i = 0; i < ls->n; i++) {
		const struct memslot_listener *o = &ls->v[i].ops;
		int r = o->prepare ? o->prepare(vm, o->ctx, old, new_slot,
						change) : 0;

		if (r) {
			abort_first(ls, i, vm, old, new_slot, change);
			return r > 0 ? -r : r;
		}
	}
	return 0;
}

void listeners_abort(struct listeners *ls, struct memslot_vm *vm,
		     const struct memslot_slot *old,
		     const struct memslot_slot *new_slot,
		     enum memslot_change change)
{
	abort_first(ls, ls->n, vm, old, new_slot, change);
}

void listeners_flush(struct listeners *ls, struct memslot_vm *vm,
		     const struct memslot_slot *old, uint64_t ticket)
{
	for (size_t i = 0; i < ls->n; i++) {
		const struct memslot_listener *o = &ls->v[i].ops;

		if (o->flush && ls->v[i].since < ticket)
			o->flush(vm, o->ctx, old);
	}
}

void listeners_commit(struct listeners *ls, struct memslot_vm *vm,
		      const struct memslot_slot *old,
		      const struct memslot_slot *new_slot,
		      enum memslot_change change)
{
	for (size_t i = 0; i < ls->n; i++) {
		const struct memslot_listener *o = &ls->v[i].ops;

		if (o->commit)
			o->commit(vm, o->ctx, old, new_slot, change);
	}
}

void listeners_complete(struct listeners *ls, struct memslot_vm *vm,
			uint64_t ticket)
{
	for (size_t i = 0; i < ls->n; i++) {
		const struct memslot_listener *o = &ls->v[i].ops;

		if (o->complete && ls->v[i].since < ticket)
			o->complete(vm, o->ctx, ticket);
	}
}
