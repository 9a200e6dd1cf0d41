/* SPDX-License-Identifier: MIT */
/*
 * Private: the only place that includes uthash.h.  uthash calls exit() on
 * out-of-memory unless HASH_NONFATAL_OOM is set, and allocates with
 * malloc() unless told otherwise; both are redirected here to the id
 * table's allocator (see idtable.c, which sets idt_uthash_current around
 * every uthash call that may allocate or free).
 */
#ifndef MEMSLOT_LIB_UTHASH_ALLOC_H
#define MEMSLOT_LIB_UTHASH_ALLOC_H

#include <stddef.h>

struct idtable;

void *idt_uthash_malloc(size_t size);
void idt_uthash_free(void *ptr, size_t size);

#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) idt_uthash_malloc(sz)
#define uthash_free(ptr, sz) idt_uthash_free((ptr), (sz))
#include <uthash.h>

#endif
