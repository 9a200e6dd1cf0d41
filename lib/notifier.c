/* SPDX-License-Identifier: MIT */
/*
 * The MMU-notifier protocol: invalidation start/end with an in-progress
 * count, a sequence and a gfn range for faults to check (KVM's
 * mmu_invalidate_*), change and aging events, and the consumer list.
 *
 * Dispatch walks the active layouts without a read section: it holds the
 * notifier lock, and a layout is published only under that lock (and,
 * for the active count to be zero, only between invalidations), so the
 * layout walked cannot be replaced, let alone freed, during the walk.
 * That keeps the invalidating thread free of reader registration.
 */
#include <errno.h>
#include <string.h>

#include "reclaim.h"
#include "slot.h"
#include "vm.h"
#include "tls.h"

/* The first published struct memslot_notifier_ops ends with @ctx. */
#define OPS_MIN_SIZE \
	(offsetof(struct memslot_notifier_ops, ctx) + sizeof(void *))

#define RANGE_EMPTY_START UINT64_MAX
#define RANGE_EMPTY_END 0

/* Hooks running on this thread: a hook calling back into the notifier
 * would take the lock its own dispatch holds. */
static MEMSLOT_TLS_FAST unsigned int hook_depth;

void notifier_init(struct notifier *nt)
{
	atomic_init(&nt->seq, 0);
	atomic_init(&nt->in_progress, 0);
	atomic_init(&nt->range_start, RANGE_EMPTY_START);
	atomic_init(&nt->range_end, RANGE_EMPTY_END);
	pthread_mutex_init(&nt->lock, NULL);
	pthread_cond_init(&nt->idle, NULL);
	nt->active = 0;
	nt->v = NULL;
	nt->n = nt->cap = 0;
}

void notifier_destroy(struct notifier *nt, struct mem_alloc *alloc)
{
	mem_free(alloc, nt->v, nt->cap * sizeof(*nt->v));
	nt->v = NULL;
	nt->n = nt->cap = 0;
	pthread_cond_destroy(&nt->idle);
	pthread_mutex_destroy(&nt->lock);
}

void notifier_swap_begin(struct notifier *nt)
{
	pthread_mutex_lock(&nt->lock);
	while (nt->active)
		pthread_cond_wait(&nt->idle, &nt->lock);
}

void notifier_swap_end(struct notifier *nt)
{
	pthread_mutex_unlock(&nt->lock);
}

/* Whether any old slot of @r must still be reachable: only deleted and
 * moved slots have mappings to flush (a create has none). */
static bool has_flush(const struct retire *r)
{
	for (size_t i = 0; i < r->nslots; i++) {
		if (r->slots[i].flush)
			return true;
	}
	return false;
}

void notifier_pend(struct notifier *nt, struct retire *r)
{
	r->pending_link = NULL;
	r->pended = has_flush(r);
	if (!r->pended)
		return;
	r->pending_next = nt->pending;
	if (nt->pending)
		nt->pending->pending_link = &r->pending_next;
	nt->pending = r;
	r->pending_link = &nt->pending;
}

/* O(1) per record: the reclaim thread forgets thousands at a time, with
 * the lock every publish needs held. */
static void unpend(struct retire *r)
{
	if (!r->pending_link)
		return;
	*r->pending_link = r->pending_next;
	if (r->pending_next)
		r->pending_next->pending_link = r->pending_link;
	r->pending_link = NULL;
}

void notifier_forget(struct notifier *nt, struct retire *list)
{
	bool any = false;

	for (struct retire *r = list; r && !any; r = r->next)
		any = r->pended;
	if (!any)
		return;
	notifier_swap_begin(nt);
	for (struct retire *r = list; r; r = r->next)
		unpend(r);
	notifier_swap_end(nt);
}

/* ---- consumers ----------------------------------------------------------- */

static struct notifier_consumer *find(struct notifier *nt, const void *key)
{
	for (size_t i = 0; i < nt->n; i++) {
		if (nt->v[i].key == key)
			return &nt->v[i];
	}
	return NULL;
}

static int grow(struct notifier *nt, struct mem_alloc *alloc)
{
	size_t cap = nt->cap ? 2 * nt->cap : 4;
	struct notifier_consumer *v = mem_malloc(alloc, cap * sizeof(*v));

	if (!v)
		return -ENOMEM;
	if (nt->n)
		memcpy(v, nt->v, nt->n * sizeof(*v));
	mem_free(alloc, nt->v, nt->cap * sizeof(*v));
	nt->v = v;
	nt->cap = cap;
	return 0;
}

static int consumer_add(struct memslot_vm *vm,
			const struct memslot_notifier_ops *ops)
{
	struct notifier *nt = &vm->nt;
	struct notifier_consumer *c;

	if (find(nt, ops))
		return -EEXIST;
	if (nt->n == nt->cap && grow(nt, &vm->alloc))
		return -ENOMEM;
	c = &nt->v[nt->n++];
	c->key = ops;
	memset(&c->ops, 0, sizeof(c->ops));
	/* Read no more of the caller's struct than it says it has. */
	memcpy(&c->ops, ops, ops->size < sizeof(c->ops) ? ops->size
						       : sizeof(c->ops));
	c->ops.size = sizeof(c->ops);
	return 0;
}

bool notifier_in_hook(void)
{
	return hook_depth != 0;
}

int memslot_notifier_register(struct memslot_vm *vm,
			      const struct memslot_notifier_ops *ops)
{
	int r;

	if (!vm || !ops || ops->size < OPS_MIN_SIZE)
		return -EINVAL;
	if (hook_depth)
		return -EDEADLK;
	pthread_mutex_lock(&vm->nt.lock);
	r = consumer_add(vm, ops);
	pthread_mutex_unlock(&vm->nt.lock);
	return r;
}

int memslot_notifier_unregister(struct memslot_vm *vm,
				const struct memslot_notifier_ops *ops)
{
	struct notifier *nt;
	struct notifier_consumer *c;

	if (!vm || !ops)
		return -EINVAL;
	if (hook_depth)
		return -EDEADLK;
	nt = &vm->nt;
	pthread_mutex_lock(&nt->lock);
	c = find(nt, ops);
	if (c) {
		memmove(c, c + 1, (size_t)(nt->v + nt->n - (c + 1)) * sizeof(*c));
		nt->n--;
	}
	pthread_mutex_unlock(&nt->lock);
	return c ? 0 : -ENOENT;
}

/* ---- dispatch -------------------------------------------------------------- */

/* Every consumer's invalidate hook for one hit; whether any said young. */
static bool call_invalidate(struct memslot_vm *vm,
			    const struct memslot_hva_hit *hit,
			    enum memslot_notifier_event event)
{
	struct notifier *nt = &vm->nt;
	bool young = false;

	hook_depth++;
	for (size_t i = 0; i < nt->n; i++) {
		const struct memslot_notifier_ops *o = &nt->v[i].ops;

		if (o->invalidate)
			young |= o->invalidate(vm, o->ctx, hit->slot,
					       hit->gfn_start, hit->gfn_end,
					       event);
	}
	hook_depth--;
	return young;
}

static void call_change(struct memslot_vm *vm, const struct memslot_slot *slot,
			uint64_t gfn, uint64_t hva, bool writable)
{
	struct notifier *nt = &vm->nt;

	hook_depth++;
	for (size_t i = 0; i < nt->n; i++) {
		const struct memslot_notifier_ops *o = &nt->v[i].ops;

		if (o->change)
			o->change(vm, o->ctx, slot, gfn, hva, writable);
	}
	hook_depth--;
}

/*
 * Widen the range faults check by [@start, @end).  The first hit of an
 * invalidation when none is in progress starts a fresh union (KVM resets
 * its range in kvm_mmu_invalidate_begin).  A fault that checks under the
 * consumer's lock sees these stores through that lock, since every hook
 * of the invalidation takes it after them.  Release stores all the same:
 * a fault may read the range of an invalidation that began after the one
 * it raced ended, and must then also see that one's sequence bump, which
 * the lock ordered before these stores (on x86-64 they are plain moves).
 */
static void range_add(struct notifier *nt, uint64_t start, uint64_t end,
		      bool fresh)
{
	uint64_t s = atomic_load_explicit(&nt->range_start,
					  memory_order_relaxed);
	uint64_t e = atomic_load_explicit(&nt->range_end, memory_order_relaxed);

	if (fresh) {
		s = RANGE_EMPTY_START;
		e = RANGE_EMPTY_END;
	}
	atomic_store_explicit(&nt->range_start, start < s ? start : s,
			      memory_order_release);
	atomic_store_explicit(&nt->range_end, end > e ? end : e,
			      memory_order_release);
}

/*
 * The hit of [@start, @end) on @slot, as the hva iterator computes it;
 * false if they do not meet.  For the old slots of deferred changes,
 * which no layout holds any more.
 */
static bool slot_hit(const struct memslot_slot *slot, uint64_t start,
		     uint64_t end, struct memslot_hva_hit *hit)
{
	uint64_t page = 1ull << slot->page_shift;
	uint64_t s_end = slot_hva_end(slot);

	if (slot->hva >= end || s_end <= start)
		return false;
	hit->slot = slot;
	hit->hva_start = start > slot->hva ? start : slot->hva;
	hit->hva_end = end < s_end ? end : s_end;
	hit->gfn_start = slot->base_gfn +
			 ((hit->hva_start - slot->hva) >> slot->page_shift);
	hit->gfn_end = slot->base_gfn +
		       ((hit->hva_end + page - 1 - slot->hva) >> slot->page_shift);
	return true;
}

/*
 * Every hit of [@start, @end): the slots of the active layouts, then the
 * old slots of deferred changes that are not flushed yet (a consumer may
 * still map through them).  Calls @fn for each; stops when it says so.
 */
static void each_hit(struct memslot_vm *vm, uint64_t start, uint64_t end,
		     bool (*fn)(struct memslot_vm *, void *,
				const struct memslot_hva_hit *),
		     void *arg)
{
	struct memslot_hva_iter it;
	struct memslot_hva_hit hit;

	memslot_hva_iter_init(&it, vm, start, end);
	while (memslot_hva_iter_next(&it, &hit)) {
		if (!fn(vm, arg, &hit))
			return;
	}
	for (struct retire *r = vm->nt.pending; r; r = r->pending_next) {
		for (size_t i = 0; i < r->nslots; i++) {
			if (r->slots[i].flush &&
			    slot_hit(r->slots[i].slot, start, end, &hit) &&
			    !fn(vm, arg, &hit))
				return;
		}
	}
}

/* One hit of an invalidation: count the invalidation in (at its first
 * hit) and widen the range. */
static bool record_hit(struct memslot_vm *vm, void *arg,
		       const struct memslot_hva_hit *hit)
{
	struct notifier *nt = &vm->nt;
	bool *begun = arg;
	uint64_t n = atomic_load_explicit(&nt->in_progress,
					  memory_order_relaxed);

	range_add(nt, hit->gfn_start, hit->gfn_end, !*begun && n == 0);
	if (!*begun)
		atomic_store_explicit(&nt->in_progress, n + 1,
				      memory_order_release);
	*begun = true;
	return true;
}

static bool unmap_hit(struct memslot_vm *vm, void *arg,
		      const struct memslot_hva_hit *hit)
{
	(void)arg;
	call_invalidate(vm, hit, MEMSLOT_NOTIFY_UNMAP);
	return true;
}

/*
 * KVM's kvm_mmu_invalidate_begin(): only invalidations that meet a slot
 * count, so unrelated host munmaps never make faults retry.  Every hit's
 * gfns join the range before the first hook runs.  A page can have two
 * gfns here, through its slot in the layout and through the old slot of
 * a deferred change; a fault that mapped it through one of them and then
 * sees the hook for the other (the consumer's lock is free between hooks)
 * must find its own gfn in the range already.  KVM gets the same from
 * holding mmu_lock across all hits.
 */
static void invalidate_hits(struct memslot_vm *vm, uint64_t start,
			    uint64_t end)
{
	bool begun = false;

	each_hit(vm, start, end, record_hit, &begun);
	if (begun)
		each_hit(vm, start, end, unmap_hit, NULL);
}

static bool note_hit(struct memslot_vm *vm, void *arg,
		     const struct memslot_hva_hit *hit)
{
	(void)vm;
	(void)hit;
	*(bool *)arg = true;
	return false;
}

static bool range_meets_slot(struct memslot_vm *vm, uint64_t start,
			     uint64_t end)
{
	bool met = false;

	each_hit(vm, start, end, note_hit, &met);
	return met;
}

int memslot_notifier_invalidate_start(struct memslot_vm *vm, uint64_t start,
				      uint64_t end,
				      enum memslot_notifier_event event)
{
	if (!vm || start >= end || event != MEMSLOT_NOTIFY_UNMAP)
		return -EINVAL;
	if (hook_depth)
		return -EDEADLK;
	pthread_mutex_lock(&vm->nt.lock);
	/* Counted before the walk, under the lock slot swaps take: from
	 * here until the end, the layout cannot change. */
	vm->nt.active++;
	invalidate_hits(vm, start, end);
	pthread_mutex_unlock(&vm->nt.lock);
	return 0;
}

/* KVM's kvm_mmu_invalidate_end(): the sequence moves before the count
 * drops, and the release store pairs with the fault's acquire load of
 * the count, so a fault that sees the count drop also sees the new
 * sequence. */
static int invalidate_finish(struct notifier *nt)
{
	uint64_t n = atomic_load_explicit(&nt->in_progress,
					  memory_order_relaxed);
	uint64_t seq = atomic_load_explicit(&nt->seq, memory_order_relaxed);

	if (!n)
		return -EINVAL;
	atomic_store_explicit(&nt->seq, seq + 1, memory_order_release);
	atomic_store_explicit(&nt->in_progress, n - 1, memory_order_release);
	return 0;
}

int memslot_notifier_invalidate_end(struct memslot_vm *vm, uint64_t start,
				    uint64_t end)
{
	struct notifier *nt;
	int r = 0;

	if (!vm || start >= end)
		return -EINVAL;
	if (hook_depth)
		return -EDEADLK;
	nt = &vm->nt;
	pthread_mutex_lock(&nt->lock);
	if (!nt->active) {
		pthread_mutex_unlock(&nt->lock);
		return -EINVAL;
	}
	/* The layout is the one the start walked: it decides alike. */
	if (range_meets_slot(vm, start, end))
		r = invalidate_finish(nt);
	if (!r && --nt->active == 0)
		pthread_cond_broadcast(&nt->idle);
	pthread_mutex_unlock(&nt->lock);
	return r;
}

/* The change event for every slot mapping @hva's page. */
static void change_hits(struct memslot_vm *vm, uint64_t hva, bool writable)
{
	struct memslot_hva_iter it;
	struct memslot_hva_hit hit;

	memslot_hva_iter_init(&it, vm, hva, hva + 1);
	while (memslot_hva_iter_next(&it, &hit)) {
		const struct memslot_slot *s = hit.slot;
		uint64_t page = s->hva +
				((hit.gfn_start - s->base_gfn) << s->page_shift);

		if (s->flags & MEMSLOT_INVALID)
			continue;
		call_change(vm, s, hit.gfn_start, page,
			    writable && !(s->flags & MEMSLOT_MEM_READONLY));
	}
}

int memslot_notifier_change(struct memslot_vm *vm, uint64_t hva,
			    bool writable)
{
	struct notifier *nt;
	int r = 0;

	if (!vm || hva == UINT64_MAX)
		return -EINVAL;
	if (hook_depth)
		return -EDEADLK;
	nt = &vm->nt;
	pthread_mutex_lock(&nt->lock);
	if (!nt->active)
		r = -EINVAL;
	/* As KVM: when the enclosing start met no slot there is nothing to
	 * change. */
	else if (atomic_load_explicit(&nt->in_progress, memory_order_relaxed))
		change_hits(vm, hva, writable);
	pthread_mutex_unlock(&nt->lock);
	return r;
}

static bool is_age_event(enum memslot_notifier_event event)
{
	return event == MEMSLOT_NOTIFY_AGE ||
	       event == MEMSLOT_NOTIFY_CLEAR_YOUNG ||
	       event == MEMSLOT_NOTIFY_TEST_YOUNG;
}

int memslot_notifier_age(struct memslot_vm *vm, uint64_t start, uint64_t end,
			 enum memslot_notifier_event event)
{
	struct memslot_hva_iter it;
	struct memslot_hva_hit hit;
	bool young = false;

	if (!vm || start >= end || !is_age_event(event))
		return -EINVAL;
	if (hook_depth)
		return -EDEADLK;
	pthread_mutex_lock(&vm->nt.lock);
	memslot_hva_iter_init(&it, vm, start, end);
	while (memslot_hva_iter_next(&it, &hit))
		young |= call_invalidate(vm, &hit, event);
	pthread_mutex_unlock(&vm->nt.lock);
	return young;
}

/* ---- fault side ------------------------------------------------------------ */

uint64_t memslot_notifier_seq_begin(struct memslot_vm *vm)
{
	/* Acquire: what the fault reads next (the slot, the host page) is
	 * read after the sequence, as KVM's smp_rmb() orders it. */
	return atomic_load_explicit(&vm->nt.seq, memory_order_acquire);
}

bool memslot_notifier_retry(struct memslot_vm *vm, uint64_t seq,
			    uint64_t gfn)
{
	struct notifier *nt = &vm->nt;

	/* Acquire on the count orders the sequence load after it (KVM's
	 * smp_rmb() in mmu_invalidate_retry), and acquire on the range
	 * (KVM reads it under mmu_lock): if it comes from an invalidation
	 * newer than the one that ends the race, the sequence read below
	 * sees that one's bump, and the fault retries. */
	if (__builtin_expect(atomic_load_explicit(&nt->in_progress,
						  memory_order_acquire) != 0,
			     0)) {
		uint64_t s = atomic_load_explicit(&nt->range_start,
						  memory_order_acquire);
		uint64_t e = atomic_load_explicit(&nt->range_end,
						  memory_order_acquire);

		if (gfn >= s && gfn < e)
			return true;
	}
	return atomic_load_explicit(&nt->seq, memory_order_relaxed) != seq;
}
