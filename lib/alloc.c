/* SPDX-License-Identifier: MIT */
/* The allocator hook, serialised and counted. */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

static void *default_malloc(void *ctx, size_t size)
{
	(void)ctx;
	return malloc(size);
}

static void default_free(void *ctx, void *ptr, size_t size)
{
	(void)ctx;
	(void)size;
	free(ptr);
}

const struct memslot_allocator mem_default_allocator = {
	.size = sizeof(struct memslot_allocator),
	.malloc = default_malloc,
	.free = default_free,
	.ctx = NULL,
};

void mem_alloc_init(struct mem_alloc *a, const struct memslot_allocator *ops)
{
	a->ops = ops ? ops : &mem_default_allocator;
	a->locked = a->ops->malloc != default_malloc ||
		    a->ops->free != default_free;
	pthread_mutex_init(&a->lock, NULL);
	atomic_init(&a->bytes, 0);
}

void *mem_malloc(struct mem_alloc *a, size_t size)
{
	void *p;

	if (a->locked)
		pthread_mutex_lock(&a->lock);
	p = a->ops->malloc(a->ops->ctx, size);
	if (a->locked)
		pthread_mutex_unlock(&a->lock);
	if (p)
		atomic_fetch_add_explicit(&a->bytes, size, memory_order_relaxed);
	return p;
}

void *mem_zalloc(struct mem_alloc *a, size_t size)
{
	void *p = mem_malloc(a, size);

	if (p)
		memset(p, 0, size);
	return p;
}

void mem_free(struct mem_alloc *a, void *p, size_t size)
{
	if (!p)
		return;
	atomic_fetch_sub_explicit(&a->bytes, size, memory_order_relaxed);
	if (a->locked)
		pthread_mutex_lock(&a->lock);
	a->ops->free(a->ops->ctx, p, size);
	if (a->locked)
		pthread_mutex_unlock(&a->lock);
}
