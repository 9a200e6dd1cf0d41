/* SPDX-License-Identifier: MIT */
/* Private: the VM's allocator with a byte count, used by every module. */
#ifndef MEMSLOT_LIB_ALLOC_H
#define MEMSLOT_LIB_ALLOC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <memslot/alloc.h>

/**
 * struct mem_alloc - the allocator a VM was created with, and its usage
 * @ops: the hook (never NULL: the library's malloc/free wrapper by default)
 * @lock: serialises calls into a VMM's @ops: writers, the reclaim thread
 *	and vCPU cache creation allocate and free from different threads,
 *	and a VMM's allocator need not be thread-safe (never on a lookup
 *	path); the default, malloc, is thread-safe and goes unlocked
 * @locked: whether @lock is used
 * @bytes: bytes currently held; atomic so stats can read it unlocked
 */
struct mem_alloc {
	const struct memslot_allocator *ops;
	pthread_mutex_t lock;
	bool locked;
	_Atomic size_t bytes;
};

/* The default hook: malloc/free. */
extern const struct memslot_allocator mem_default_allocator;

/* @ops NULL or with the default's functions: malloc/free, unlocked. */
void mem_alloc_init(struct mem_alloc *a, const struct memslot_allocator *ops);
/* @size bytes, or NULL. */
void *mem_malloc(struct mem_alloc *a, size_t size);
/* @size zeroed bytes, or NULL. */
void *mem_zalloc(struct mem_alloc *a, size_t size);
/* Release @p (may be NULL), which was allocated with @size. */
void mem_free(struct mem_alloc *a, void *p, size_t size);

#endif
