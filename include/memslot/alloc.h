/* SPDX-License-Identifier: MIT */
/*
 * The allocator hook: every byte libmemslot allocates (slots, index nodes,
 * the id hash tables of uthash, caches) goes through one of these, so a VMM
 * can account guest-memory metadata and tests can count and fail
 * allocations.
 */
#ifndef MEMSLOT_ALLOC_H
#define MEMSLOT_ALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * struct memslot_allocator - malloc/free with a context
 * @size: sizeof(struct memslot_allocator), so the struct can grow
 * @malloc: return @size bytes aligned for any object, or NULL
 * @free: release @ptr, which @malloc returned for @size bytes; @ptr is
 *	never NULL
 * @ctx: passed to both
 *
 * Context: called on writer threads and from memslot_vcpu_create(); never
 * on the lookup path.  Must be thread-safe if several VMs share it.
 */
struct memslot_allocator {
	size_t size;
	void *(*malloc)(void *ctx, size_t size);
	void (*free)(void *ctx, void *ptr, size_t size);
	void *ctx;
};

#ifdef __cplusplus
}
#endif

#endif /* MEMSLOT_ALLOC_H */
