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
#include "dirty.h"
#include "idmap.h"
#include "listener.h"
#include "notifier.h"
#include "reclaim.h"
#include "set.h"
#include "spares.h"

/* Spare index nodes kept between changes, so that single changes do not
 * allocate and free nodes every time (a create reserves about 40). */
#define POOL_KEEP 128

/* One address space's writer-side bookkeeping; its layout is
 * vm->active[as_id]. */
struct memslot_as {
	struct idmap ids;
	uint64_t used_ids;
	uint64_t used_user_ids;
	uint64_t total_pages;
	/* The active set's generation, kept here for memslot_generation():
	 * a thread outside a read section may not dereference the set,
	 * which a writer can free as soon as it is replaced. */
	_Atomic uint64_t generation;
};

struct memslot_vm {
	/* Read by every lookup: keep together at the start.  The active
	 * layouts sit in their own array so that selecting one is a single
	 * indexed load. */
	unsigned int nr_as;
	unsigned int page_shift;
	struct memslot_set *_Atomic *active;
	struct memslot_rcu_ops rcu;	/* the backend, copied by its size */
	struct memslot_as *as;
	/* Writer side. */
	pthread_mutex_t writer;
	struct memslot_config cfg;
	struct memslot_allocator alloc_ops;	/* copied by its size */
	struct mem_alloc alloc;
	struct bpt_pool pool;
	/* Nodes (beyond the pool), slot objects, layout headers and retire
	 * records: what the reclaim thread gives back, kept in stock. */
	struct spares spares;
	struct listeners listeners;
	struct reclaim reclaim;
	struct notifier nt;	/* MMU-notifier state (notifier.h) */
	struct dirty_vm dirty;
};

/*
 * The active layout of @as_id, which the caller has bounds-checked.
 * Sequentially consistent, as the publish: a grace-period backend that
 * orders readers with atomics alone (the counter backend: announce the
 * section, then load the layout; the writer publishes, then scans the
 * announcements) needs all four accesses in one total order, else a
 * reader could load the old layout and the writer miss its announcement.
 * On x86-64 the load is the same plain move as an acquire one.
 */
static inline struct memslot_set *vm_active(const struct memslot_vm *vm,
					    unsigned int as_id)
{
	as_id = (unsigned int)memslot_array_index_nospec(as_id, vm->nr_as);
	return atomic_load_explicit(&vm->active[as_id], memory_order_seq_cst);
}

/* The active set of @as_id as a view, for the VM-level wrappers. */
static inline struct memslot_view *view_of(const struct memslot_vm *vm,
					   unsigned int as_id)
{
	return (struct memslot_view *)vm_active(vm, as_id);
}

/*
 * Make @next the active layout of @as_id, with generation old + @delta.
 * Blocking (@pending NULL): KVM's swap: publish with the in-progress bit,
 * wait for a grace period, then set the final number.  Deferred: publish
 * the final number at once; @pending, the change's retire record, keeps
 * its old slots reachable by invalidations until they are flushed.
 * Return: the layout it replaced, for the caller to free (after a grace
 * period, which a blocking publish has already waited for).
 * Context: writer lock held.
 */
struct memslot_set *vm_publish(struct memslot_vm *vm, unsigned int as_id,
			       struct memslot_set *next, uint64_t delta,
			       struct retire *pending);

/*
 * The writer lock.  vm_writer_lock() refuses (-EDEADLK) a thread inside a
 * read section of any VM (a grace period would wait for it forever) or
 * already holding a writer lock (a hook calling a writer function).
 * vm_writer_lock_hooks() is the reclaim thread's, which is neither.
 */
int vm_writer_lock(struct memslot_vm *vm);
void vm_writer_lock_hooks(struct memslot_vm *vm);
void vm_writer_unlock(struct memslot_vm *vm);
/* Whether this thread may wait for a grace period or the reclaim thread. */
bool vm_may_wait(void);

/* Check a config; return 0 or -EINVAL. */
int config_check(const struct memslot_config *cfg);
/* Copy a caller's extensible struct into @dst, reading no more than its
 * size field says and zeroing the rest; check it.  NULL @src gives the
 * default (allocator, rcu).  Return: 0 or -EINVAL. */
int config_copy(struct memslot_config *dst, const struct memslot_config *src);
int config_copy_alloc(struct memslot_allocator *dst,
		      const struct memslot_allocator *src);
int config_copy_rcu(struct memslot_rcu_ops *dst,
		    const struct memslot_rcu_ops *src);

/* Slot changes: region.c. */
int vm_set_regions(struct memslot_vm *vm, const struct memslot_region *r,
		   size_t n, bool internal, bool deferred,
		   struct memslot_txn_result *res);

#endif
