/* SPDX-License-Identifier: MIT */
/* VM lifetime, read-side sections, publishing, the writer lock. */
#include <errno.h>
#include <string.h>

#include "vm.h"
#include "tls.h"

static int as_init(struct memslot_vm *vm, unsigned int as_id)
{
	struct memslot_set *set = set_new_empty(&vm->alloc, as_id, vm->page_shift);

	if (!set)
		return -ENOMEM;
	atomic_init(&vm->active[as_id], set);
	atomic_init(&vm->as[as_id].generation, as_id);
	idmap_init(&vm->as[as_id].ids, &vm->alloc, vm->cfg.user_slots);
	return 0;
}

static void as_destroy(struct memslot_vm *vm, unsigned int as_id)
{
	struct memslot_set *set = atomic_load(&vm->active[as_id]);
	struct bpt_iter it;
	struct memslot_slot *slot;

	idmap_destroy(&vm->as[as_id].ids);
	if (!set)
		return;
	bpt_iter_seek_le(&it, &set->gfn, 0);
	while ((slot = bpt_iter_next(&it))) {
		dirty_free(&vm->alloc, slot);
		mem_free(&vm->alloc, slot, sizeof(*slot));
	}
	set_clear(set, &vm->pool);
	set_free(&vm->alloc, set);
}

/* Object sizes of each kind of spare (spares.h). */
static const size_t spare_sizes[SPARES_KINDS] = {
	[SPARES_PLAIN] = sizeof(struct bpt_node),
	[SPARES_WIDE] = sizeof(struct bpt_wide),
	[SPARES_SLOT] = sizeof(struct memslot_slot),
	[SPARES_SET] = sizeof(struct memslot_set),
	[SPARES_RETIRE] = sizeof(struct retire) +
			  RETIRE_SMALL * sizeof(struct retire_slot),
};

/* Everything but the address spaces; the caller checked @cfg. */
static struct memslot_vm *vm_alloc(const struct memslot_config *cfg,
				   const struct memslot_allocator *ops,
				   const struct memslot_rcu_ops *rcu)
{
	struct mem_alloc alloc;
	struct memslot_vm *vm;

	mem_alloc_init(&alloc, ops);
	vm = mem_zalloc(&alloc, sizeof(*vm));
	if (!vm)
		return NULL;
	vm->cfg = *cfg;
	vm->alloc_ops = *ops;
	vm->rcu = *rcu;
	mem_alloc_init(&vm->alloc, &vm->alloc_ops);
	atomic_store(&vm->alloc.bytes, atomic_load(&alloc.bytes));
	vm->nr_as = cfg->nr_as;
	vm->page_shift = cfg->page_shift;
	bpt_pool_init(&vm->pool, &vm->alloc);
	spares_init(&vm->spares, &vm->alloc, spare_sizes);
	pthread_mutex_init(&vm->writer, NULL);
	reclaim_init(&vm->reclaim);
	notifier_init(&vm->nt);
	return vm;
}

static int vm_fill(struct memslot_vm *vm, const struct memslot_config *cfg)
{
	int r = listeners_init(&vm->listeners, &vm->alloc, cfg->callbacks);

	vm->as = mem_zalloc(&vm->alloc, sizeof(*vm->as) * vm->nr_as);
	vm->active = mem_zalloc(&vm->alloc, sizeof(*vm->active) * vm->nr_as);
	if (r || !vm->as || !vm->active)
		return -ENOMEM;
	for (unsigned int i = 0; i < vm->nr_as && !r; i++)
		r = as_init(vm, i);
	return r;
}

static int hooks_check(const struct memslot_config *cfg,
		       struct memslot_allocator *ops,
		       struct memslot_rcu_ops *rcu)
{
	if (cfg->callbacks && !callbacks_size_ok(cfg->callbacks))
		return -EINVAL;
	if (config_copy_alloc(ops, cfg->alloc))
		return -EINVAL;
	return config_copy_rcu(rcu, cfg->rcu);
}

int memslot_vm_create(const struct memslot_config *cfg,
		      struct memslot_vm **out)
{
	struct memslot_config c;
	struct memslot_allocator ops;
	struct memslot_rcu_ops rcu;
	struct memslot_vm *vm;
	int r;

	if (!out || config_copy(&c, cfg) || hooks_check(&c, &ops, &rcu))
		return -EINVAL;
	vm = vm_alloc(&c, &ops, &rcu);
	if (!vm)
		return -ENOMEM;
	r = vm_fill(vm, &c);
	if (r) {
		memslot_vm_destroy(vm);
		return r;
	}
	*out = vm;
	return 0;
}

void memslot_vm_destroy(struct memslot_vm *vm)
{
	struct memslot_allocator ops;
	struct mem_alloc last;

	if (!vm)
		return;
	/* Pending deferred changes complete first: their hooks still see
	 * a whole VM. */
	reclaim_stop(vm);
	for (unsigned int i = 0; vm->as && vm->active && i < vm->nr_as; i++)
		as_destroy(vm, i);
	mem_free(&vm->alloc, vm->as, sizeof(*vm->as) * vm->nr_as);
	mem_free(&vm->alloc, vm->active, sizeof(*vm->active) * vm->nr_as);
	listeners_destroy(&vm->listeners, &vm->alloc);
	notifier_destroy(&vm->nt, &vm->alloc);
	bpt_pool_reclaim(&vm->pool);
	bpt_pool_trim(&vm->pool, 0);
	spares_destroy(&vm->spares);
	pthread_mutex_destroy(&vm->writer);
	/* The VM holds the allocator that frees it: free through a copy. */
	ops = vm->alloc_ops;
	mem_alloc_init(&last, &ops);
	mem_free(&last, vm, sizeof(*vm));
}

/* ---- read side ------------------------------------------------------------ */

/*
 * Read sections and writer locks this thread holds, over every VM: the
 * grace-period domains of liburcu and of the counter backend are
 * process-wide, so a writer waiting inside any read section would wait
 * for itself forever, and a hook calling a writer function would take a
 * lock its own thread holds (a notifier hook holds the notifier lock, which
 * a publishing writer waits for).  Counted in every build: the cost is one
 * thread-local add per section, not per lookup.
 */
static MEMSLOT_TLS_FAST unsigned int read_depth;
static MEMSLOT_TLS_FAST unsigned int writer_depth;

bool vm_may_wait(void)
{
	return read_depth == 0 && writer_depth == 0 && !notifier_in_hook();
}

void memslot_thread_register(struct memslot_vm *vm)
{
	if (vm && vm->rcu.register_thread)
		vm->rcu.register_thread(vm->rcu.ctx);
}

void memslot_thread_unregister(struct memslot_vm *vm)
{
	if (vm && vm->rcu.unregister_thread)
		vm->rcu.unregister_thread(vm->rcu.ctx);
}

void memslot_read_lock(struct memslot_vm *vm)
{
	read_depth++;
	vm->rcu.read_lock(vm->rcu.ctx);
}

void memslot_read_unlock(struct memslot_vm *vm)
{
	vm->rcu.read_unlock(vm->rcu.ctx);
	/* An unlock with no section open is ignored (the backend reports
	 * it in debug builds). */
	read_depth -= read_depth != 0;
}

uint64_t memslot_generation(struct memslot_vm *vm, unsigned int as_id)
{
	if (!vm || as_id >= vm->nr_as)
		return 0;
	as_id = (unsigned int)memslot_array_index_nospec(as_id, vm->nr_as);
	return atomic_load_explicit(&vm->as[as_id].generation,
				    memory_order_acquire);
}

/* ---- writer side ---------------------------------------------------------- */

int vm_writer_lock(struct memslot_vm *vm)
{
	if (!vm_may_wait())
		return -EDEADLK;
	pthread_mutex_lock(&vm->writer);
	writer_depth++;
	return 0;
}

void vm_writer_lock_hooks(struct memslot_vm *vm)
{
	pthread_mutex_lock(&vm->writer);
	writer_depth++;
}

void vm_writer_unlock(struct memslot_vm *vm)
{
	writer_depth--;
	pthread_mutex_unlock(&vm->writer);
}

/* The store that publishes a layout.  It waits while host-memory
 * invalidations are active, so that an invalidation's start and end see
 * the same slots (KVM's mn_active_invalidate_count). */
static void vm_store_active(struct memslot_vm *vm, unsigned int as_id,
			    struct memslot_set *next, struct retire *pending)
{
	notifier_swap_begin(&vm->nt);
	/* In the same step as the old slots leave the layout, they join
	 * the slots invalidations reach until they are flushed. */
	if (pending)
		notifier_pend(&vm->nt, pending);
	/* Sequentially consistent: see vm_active(). */
	atomic_store_explicit(&vm->active[as_id], next, memory_order_seq_cst);
	notifier_swap_end(&vm->nt);
}

/* After the set it names is published, so that a thread that reads a
 * generation finds that layout (or a newer one) active. */
static void vm_mirror_generation(struct memslot_vm *vm, unsigned int as_id,
				 uint64_t gen)
{
	atomic_store_explicit(&vm->as[as_id].generation, gen,
			      memory_order_release);
}

struct memslot_set *vm_publish(struct memslot_vm *vm, unsigned int as_id,
			       struct memslot_set *next, uint64_t delta,
			       struct retire *pending)
{
	bool wait = !pending;
	struct memslot_set *prev =
		atomic_load_explicit(&vm->active[as_id], memory_order_relaxed);
	uint64_t gen = atomic_load_explicit(&prev->generation,
					    memory_order_relaxed);

	if (!wait) {
		atomic_store_explicit(&next->generation, gen + delta,
				      memory_order_relaxed);
		vm_store_active(vm, as_id, next, pending);
		vm_mirror_generation(vm, as_id, gen + delta);
		return prev;
	}
	/* While the swap is in flight the generation carries bit 63, so a
	 * cache filled now can never match the final number. */
	atomic_store_explicit(&next->generation, gen | SET_GEN_IN_PROGRESS,
			      memory_order_relaxed);
	vm_store_active(vm, as_id, next, NULL);
	vm_mirror_generation(vm, as_id, gen | SET_GEN_IN_PROGRESS);
	vm->rcu.synchronize(vm->rcu.ctx);
	/* Address space i only uses generations congruent to i mod nr_as,
	 * so generations are unique across address spaces. */
	atomic_store_explicit(&next->generation, gen + delta,
			      memory_order_release);
	vm_mirror_generation(vm, as_id, gen + delta);
	return prev;
}

int memslot_vm_stats(struct memslot_vm *vm, unsigned int as_id,
		     struct memslot_stats *stats)
{
	struct memslot_as *as;
	int r;

	if (!vm || !stats || as_id >= vm->nr_as)
		return -EINVAL;
	r = vm_writer_lock(vm);
	if (r)
		return r;
	as = &vm->as[memslot_array_index_nospec(as_id, vm->nr_as)];
	stats->used_ids = as->used_ids;
	stats->free_user_ids = vm->cfg.user_slots - as->used_user_ids;
	stats->total_pages = as->total_pages;
	stats->bytes = atomic_load_explicit(&vm->alloc.bytes,
					    memory_order_relaxed);
	vm_writer_unlock(vm);
	return 0;
}

int memslot_lowest_free_id(struct memslot_vm *vm, unsigned int as_id,
			   uint32_t *id)
{
	uint64_t v;
	int r;

	if (!vm || !id || as_id >= vm->nr_as)
		return -EINVAL;
	r = vm_writer_lock(vm);
	if (r)
		return r;
	as_id = (unsigned int)memslot_array_index_nospec(as_id, vm->nr_as);
	r = idmap_lowest_free(&vm->as[as_id].ids, &v);
	vm_writer_unlock(vm);
	if (!r)
		*id = (uint32_t)v;
	return r;
}

/* ---- deferred completion and listeners ------------------------------------ */

int memslot_vm_wait(struct memslot_vm *vm, uint64_t ticket)
{
	if (!vm)
		return -EINVAL;
	if (!vm_may_wait())
		return -EDEADLK;
	return reclaim_wait(&vm->reclaim, ticket);
}

uint64_t memslot_vm_completed(struct memslot_vm *vm)
{
	return vm ? reclaim_completed(&vm->reclaim) : 0;
}

int memslot_listener_register(struct memslot_vm *vm,
			      const struct memslot_listener *l)
{
	int r;

	if (!vm || !l || !listener_size_ok(l))
		return -EINVAL;
	r = vm_writer_lock(vm);
	if (r)
		return r;
	/* Under the writer lock no deferred change is being queued. */
	r = listeners_add(&vm->listeners, &vm->alloc, l,
			  reclaim_issued(&vm->reclaim));
	vm_writer_unlock(vm);
	return r;
}

int memslot_listener_unregister(struct memslot_vm *vm,
				const struct memslot_listener *l)
{
	int r;

	if (!vm || !l)
		return -EINVAL;
	r = vm_writer_lock(vm);
	if (r)
		return r;
	r = listeners_del(&vm->listeners, l);
	vm_writer_unlock(vm);
	return r;
}
