/* SPDX-License-Identifier: MIT */
/* Private: the VM object and its address spaces. */
#ifndef MEMSLOT_LIB_VM_H
#define MEMSLOT_LIB_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <memslot/memslot.h>

#include "alloc.h"
#include "bptree.h"
#include "idmap.h"
#include "set.h"

/* Spare index nodes kept between changes, so that single changes do not
 * allocate and free nodes every time (a create reserves about 40). */
#define POOL_KEEP 128

/*
 * One address space: its two sets (vm->active[] says which one readers
 * use; the other is the writer's).  Counters and @ids are writer-only.
 */
struct memslot_as {
	struct memslot_set sets[2];
	struct idmap ids;
	uint64_t used_ids;
	uint64_t used_user_ids;
	uint64_t total_pages;
};

struct memslot_vm {
	/* Read by every lookup: keep together at the start.  The active
	 * sets sit in their own array so that selecting one is a single
	 * indexed load. */
	unsigned int nr_as;
	unsigned int page_shift;
	struct memslot_set *_Atomic *active;
	struct memslot_as *as;
	const struct memslot_rcu_ops *rcu;	/* &rcu_copy */
	/* Writer side. */
	pthread_mutex_t writer;
	struct memslot_config cfg;
	const struct memslot_callbacks *cb;	/* &cb_copy, or NULL */
	struct mem_alloc alloc;
	struct bpt_pool pool;
	/* The caller's structs as copied at create time: the library never
	 * reads the caller's own again. */
	struct memslot_allocator alloc_copy;
	struct memslot_rcu_ops rcu_copy;
	struct memslot_callbacks cb_copy;
};

/* The active set of @as_id, which the caller has bounds-checked. */
static inline struct memslot_set *vm_active(const struct memslot_vm *vm,
					    unsigned int as_id)
{
	as_id = (unsigned int)memslot_array_index_nospec(as_id, vm->nr_as);
	return atomic_load_explicit(&vm->active[as_id], memory_order_acquire);
}

/* The writer's set of @as_id.  Context: writer lock held. */
static inline struct memslot_set *vm_inactive(struct memslot_vm *vm,
					      unsigned int as_id)
{
	struct memslot_as *as = &vm->as[as_id];
	struct memslot_set *active =
		atomic_load_explicit(&vm->active[as_id], memory_order_relaxed);

	return active == &as->sets[0] ? &as->sets[1] : &as->sets[0];
}

/*
 * Publish the inactive set of @as_id and wait for readers of the old one,
 * numbering generations as KVM does.  Context: writer lock held.
 */
void vm_swap(struct memslot_vm *vm, unsigned int as_id);

/* Whether this thread is inside a read section (debug builds; always
 * false when NDEBUG is defined). */
bool vm_in_read_section(void);

/* What memslot_vm_create() copied from the caller's sized structs. */
struct vm_params {
	struct memslot_config cfg;
	struct memslot_allocator alloc;
	struct memslot_rcu_ops rcu;
	struct memslot_callbacks cb;
	bool has_cb;
};

/*
 * Check @cfg and copy it, and the structs it points to, into @p, reading
 * no further than each struct's size field allows; the pointers in
 * @p->cfg then name the copies in @p.  Return: 0 or -EINVAL.
 */
int config_copy(const struct memslot_config *cfg, struct vm_params *p);

/* Slot changes: region.c. */
int vm_set_regions(struct memslot_vm *vm, const struct memslot_region *r,
		   size_t n, bool internal, struct memslot_txn_result *res);

#endif
