/* SPDX-License-Identifier: MIT */
/* VM lifetime, read-side sections, the swap, and writer-side queries. */
#include <errno.h>
#include <string.h>

#include "vm.h"

static int as_init(struct memslot_vm *vm, unsigned int as_id)
{
	struct memslot_as *as = &vm->as[as_id];
	int r;

	r = set_init(&as->sets[0], 0, as_id, &vm->alloc);
	if (!r)
		r = set_init(&as->sets[1], 1, as_id, &vm->alloc);
	atomic_init(&vm->active[as_id], &as->sets[0]);
	idmap_init(&as->ids, &vm->alloc, vm->cfg.user_slots);
	return r;
}

static void as_destroy(struct memslot_vm *vm, struct memslot_as *as)
{
	struct memslot_set *set = &as->sets[0];
	struct bpt_iter it;
	struct memslot_slot *slot;

	/* Both sets hold the same slots once a change has completed. */
	bpt_iter_seek_le(&it, &set->gfn, 0);
	while ((slot = bpt_iter_next(&it)))
		mem_free(&vm->alloc, slot, sizeof(*slot));
	set_destroy(&as->sets[0], &vm->pool);
	set_destroy(&as->sets[1], &vm->pool);
	idmap_destroy(&as->ids);
}

/* Point @vm at its copies of the caller's structs. */
static void vm_adopt(struct memslot_vm *vm, const struct vm_params *p)
{
	vm->cfg = p->cfg;
	vm->alloc_copy = p->alloc;
	vm->rcu_copy = p->rcu;
	vm->cb_copy = p->cb;
	vm->cfg.alloc = &vm->alloc_copy;
	vm->cfg.rcu = &vm->rcu_copy;
	vm->cfg.callbacks = p->has_cb ? &vm->cb_copy : NULL;
	vm->rcu = &vm->rcu_copy;
	vm->cb = vm->cfg.callbacks;
	vm->nr_as = p->cfg.nr_as;
	vm->page_shift = p->cfg.page_shift;
}

int memslot_vm_create(const struct memslot_config *cfg,
		      struct memslot_vm **out)
{
	struct vm_params p;
	struct mem_alloc alloc;
	struct memslot_vm *vm;
	int r = 0;

	if (!out || config_copy(cfg, &p))
		return -EINVAL;
	mem_alloc_init(&alloc, &p.alloc);
	vm = mem_zalloc(&alloc, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm_adopt(vm, &p);
	mem_alloc_init(&vm->alloc, &vm->alloc_copy);
	atomic_store(&vm->alloc.bytes, atomic_load(&alloc.bytes));
	bpt_pool_init(&vm->pool, &vm->alloc);
	pthread_mutex_init(&vm->writer, NULL);
	vm->as = mem_zalloc(&vm->alloc, sizeof(*vm->as) * vm->nr_as);
	vm->active = mem_zalloc(&vm->alloc, sizeof(*vm->active) * vm->nr_as);
	if (!vm->as || !vm->active) {
		memslot_vm_destroy(vm);
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < vm->nr_as && !r; i++)
		r = as_init(vm, i);
	if (r) {
		memslot_vm_destroy(vm);
		return r;
	}
	*out = vm;
	return 0;
}

void memslot_vm_destroy(struct memslot_vm *vm)
{
	if (!vm)
		return;
	for (unsigned int i = 0; vm->as && i < vm->nr_as; i++)
		as_destroy(vm, &vm->as[i]);
	mem_free(&vm->alloc, vm->as, sizeof(*vm->as) * vm->nr_as);
	mem_free(&vm->alloc, vm->active, sizeof(*vm->active) * vm->nr_as);
	bpt_pool_trim(&vm->pool, 0);
	pthread_mutex_destroy(&vm->writer);
	/* mem_free() reads the hook before calling it, so the VM may hold
	 * the allocator that frees it. */
	mem_free(&vm->alloc, vm, sizeof(*vm));
}

void memslot_thread_register(struct memslot_vm *vm)
{
	if (vm && vm->rcu->register_thread)
		vm->rcu->register_thread(vm->rcu->ctx);
}

void memslot_thread_unregister(struct memslot_vm *vm)
{
	if (vm && vm->rcu->unregister_thread)
		vm->rcu->unregister_thread(vm->rcu->ctx);
}

#ifndef NDEBUG
/*
 * Read sections this thread is in, over every VM: the grace-period domains
 * of liburcu and of the counter backend are process-wide, so a writer
 * waiting inside any read section would wait for itself forever.
 */
static _Thread_local unsigned int read_depth;

bool vm_in_read_section(void)
{
	return read_depth != 0;
}
#define READ_DEPTH_ADD(n) (read_depth += (n))
/* An unlock with no section open is ignored (the backend reports it). */
#define READ_DEPTH_SUB() (read_depth -= read_depth != 0)
#else
bool vm_in_read_section(void)
{
	return false;
}
#define READ_DEPTH_ADD(n) ((void)0)
#define READ_DEPTH_SUB() ((void)0)
#endif

void memslot_read_lock(struct memslot_vm *vm)
{
	READ_DEPTH_ADD(1);
	vm->rcu->read_lock(vm->rcu->ctx);
}

void memslot_read_unlock(struct memslot_vm *vm)
{
	vm->rcu->read_unlock(vm->rcu->ctx);
	READ_DEPTH_SUB();
}

uint64_t memslot_generation(struct memslot_vm *vm, unsigned int as_id)
{
	if (!vm || as_id >= vm->nr_as)
		return 0;
	return atomic_load_explicit(&vm_active(vm, as_id)->generation,
				    memory_order_relaxed);
}

void vm_swap(struct memslot_vm *vm, unsigned int as_id)
{
	struct memslot_set *next = vm_inactive(vm, as_id);
	struct memslot_set *prev =
		atomic_load_explicit(&vm->active[as_id], memory_order_relaxed);
	uint64_t gen = atomic_load_explicit(&prev->generation,
					    memory_order_relaxed);

	/* While the swap is in flight the generation carries bit 63, so a
	 * cache filled now can never match the final number. */
	atomic_store_explicit(&next->generation, gen | SET_GEN_IN_PROGRESS,
			      memory_order_relaxed);
	atomic_store_explicit(&vm->active[as_id], next, memory_order_release);
	vm->rcu->synchronize(vm->rcu->ctx);
	/* Address space i only uses generations congruent to i mod nr_as,
	 * so generations are unique across address spaces. */
	atomic_store_explicit(&next->generation, gen + vm->nr_as,
			      memory_order_release);
	/* The old active set reports the same number until it is reused, so
	 * a reader that still holds it cannot tell the difference. */
}

int memslot_vm_stats(struct memslot_vm *vm, unsigned int as_id,
		     struct memslot_stats *stats)
{
	struct memslot_as *as;

	if (!vm || !stats || as_id >= vm->nr_as)
		return -EINVAL;
	if (vm_in_read_section())
		return -EBUSY;
	pthread_mutex_lock(&vm->writer);
	as = &vm->as[as_id];
	stats->used_ids = as->used_ids;
	stats->free_user_ids = vm->cfg.user_slots - as->used_user_ids;
	stats->total_pages = as->total_pages;
	stats->bytes = atomic_load_explicit(&vm->alloc.bytes,
					    memory_order_relaxed);
	pthread_mutex_unlock(&vm->writer);
	return 0;
}

int memslot_lowest_free_id(struct memslot_vm *vm, unsigned int as_id,
			   uint32_t *id)
{
	uint64_t v;
	int r;

	if (!vm || !id || as_id >= vm->nr_as)
		return -EINVAL;
	if (vm_in_read_section())
		return -EBUSY;
	pthread_mutex_lock(&vm->writer);
	r = idmap_lowest_free(&vm->as[as_id].ids, &v);
	pthread_mutex_unlock(&vm->writer);
	if (!r)
		*id = (uint32_t)v;
	return r;
}
