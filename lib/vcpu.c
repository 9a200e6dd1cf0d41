/* SPDX-License-Identifier: MIT */
/*
 * Per-vCPU lookup cache: the last slot this vCPU found, tagged with the
 * generation of the set it came from.  One shared set-wide cache thrashes
 * when vCPUs work in different slots; this one is private to its thread,
 * so a hit stores nothing to shared memory.
 */
#include <errno.h>

#include <memslot/access.h>

#include "vcpu.h"
#include "vm.h"

int memslot_vcpu_create(struct memslot_vm *vm, struct memslot_vcpu **out)
{
	struct memslot_vcpu *v;

	if (!vm || !out)
		return -EINVAL;
	v = mem_zalloc(&vm->alloc, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->vm = vm;
	v->active = vm->active;
	v->nr_as = vm->nr_as;
	v->page_shift = vm->page_shift;
	/* No real generation has bit 63 without a swap in flight, and a
	 * cache is dropped on any mismatch, so this never matches. */
	v->gen = UINT64_MAX;
	*out = v;
	return 0;
}

void memslot_vcpu_destroy(struct memslot_vcpu *vcpu)
{
	struct memslot_vm *vm;

	if (!vcpu)
		return;
	vm = vcpu->vm;
	mem_free(&vm->alloc, vcpu, sizeof(*vcpu));
}

/* Cache the cell @h of the gfn index. */
static void vcpu_fill(struct memslot_vcpu *vcpu, const struct bpt_hit *h)
{
	vcpu->base = h->key;
	vcpu->npages = h->end - h->key;
	vcpu->mark_npages = h->aux & SET_AUX_MARKS ? vcpu->npages : 0;
	vcpu->aux = h->aux;
	vcpu->slot = h->val;
}

/*
 * Out of line, so the hit paths below need no stack frame: drop an entry
 * of another generation, then search without the set-wide cache (vCPUs
 * working in different slots must not thrash one shared line), and keep
 * the entry when the search finds nothing (as KVM keeps last_used_slot).
 */
__attribute__((noinline))
static const struct memslot_slot *vcpu_miss(struct memslot_vcpu *vcpu,
					    const struct memslot_set *set,
					    uint64_t gen, uint64_t gfn)
{
	struct bpt_hit h;

	if (gen != vcpu->gen) {
		vcpu->npages = 0;
		vcpu->mark_npages = 0;
		vcpu->slot = NULL;
		vcpu->gen = gen;
	}
	if (!set_search_hit(set, gfn, &h))
		return NULL;
	vcpu_fill(vcpu, &h);
	return h.val;
}

/* The hit inline in both entry points; the miss out of line. */
static inline const struct memslot_slot *
vcpu_set_gfn_to_slot(struct memslot_vcpu *vcpu, const struct memslot_set *set,
		     uint64_t gfn)
{
	uint64_t gen = atomic_load_explicit(&set->generation,
					    memory_order_relaxed);

	if (vcpu_holds(vcpu, gen, gfn))
		return vcpu->slot;
	return vcpu_miss(vcpu, set, gen, gfn);
}

const struct memslot_slot *
memslot_vcpu_view_gfn_to_slot(struct memslot_vcpu *vcpu,
			      const struct memslot_view *view, uint64_t gfn)
{
	return vcpu_set_gfn_to_slot(vcpu, (const struct memslot_set *)view,
				    gfn);
}

/* The active layout of @as_id (< vcpu->nr_as, unchecked), clamped. */
static const struct memslot_set *vcpu_active(const struct memslot_vcpu *vcpu,
					     unsigned int as_id)
{
	as_id = (unsigned int)memslot_array_index_nospec(as_id, vcpu->nr_as);
	/* Sequentially consistent, as vm_active() says why. */
	return atomic_load_explicit(&vcpu->active[as_id],
				    memory_order_seq_cst);
}

/*
 * Generations differ across address spaces too, so a generation check
 * also drops a slot cached for another address space.
 */
const struct memslot_slot *memslot_vcpu_gfn_to_slot(struct memslot_vcpu *vcpu,
						    unsigned int as_id,
						    uint64_t gfn)
{
	if (as_id >= vcpu->nr_as)
		return NULL;
	return vcpu_set_gfn_to_slot(vcpu, vcpu_active(vcpu, as_id), gfn);
}

/* A translation's miss: after the lookup the entry holds the slot found. */
__attribute__((noinline))
static int vcpu_hva_miss(struct memslot_vcpu *vcpu,
			 const struct memslot_set *set, uint64_t gen,
			 uint64_t gfn, bool write, uint64_t *hva)
{
	if (!vcpu_miss(vcpu, set, gen, gfn))
		return -ENOENT;
	return vcpu_entry_to_hva(vcpu, gfn, write, hva);
}

static int vcpu_set_gfn_to_hva(struct memslot_vcpu *vcpu,
			       const struct memslot_set *set, uint64_t gfn,
			       bool write, uint64_t *hva)
{
	uint64_t gen = atomic_load_explicit(&set->generation,
					    memory_order_relaxed);

	if (!vcpu_holds(vcpu, gen, gfn))
		return vcpu_hva_miss(vcpu, set, gen, gfn, write, hva);
	return vcpu_entry_to_hva(vcpu, gfn, write, hva);
}

int memslot_vcpu_gfn_to_hva(struct memslot_vcpu *vcpu, unsigned int as_id,
			    uint64_t gfn, bool write, uint64_t *hva)
{
	if (as_id >= vcpu->nr_as)
		return -ENOENT;
	return vcpu_set_gfn_to_hva(vcpu, vcpu_active(vcpu, as_id), gfn, write,
				   hva);
}

int memslot_vcpu_view_gfn_to_hva(struct memslot_vcpu *vcpu,
				 const struct memslot_view *view,
				 uint64_t gfn, bool write, uint64_t *hva)
{
	return vcpu_set_gfn_to_hva(vcpu, (const struct memslot_set *)view,
				   gfn, write, hva);
}

struct memslot_vm *memslot_vcpu_vm(const struct memslot_vcpu *vcpu)
{
	return vcpu->vm;
}

/*
 * The mark path's miss, out of line so a hit needs no stack frame: the
 * cache entry is of another generation, does not hold @gfn, or holds it
 * in a slot that does not mark (no logging, INVALID).  The last case
 * needs no search.
 */
__attribute__((noinline))
static void vcpu_mark_miss(struct memslot_vcpu *vcpu, unsigned int as_id,
			   uint64_t gfn)
{
	const struct memslot_slot *slot = memslot_vcpu_gfn_to_slot(vcpu, as_id,
								    gfn);

	if (slot)
		dirty_mark_gfn(slot, gfn);
}

/*
 * The seed's path (kvm_vcpu_mark_page_dirty): the cache hit of
 * memslot_vcpu_gfn_to_slot() written out, with the entry's mark_npages in
 * place of npages, so that one bounds check says "cached slot holds @gfn,
 * logs and is not INVALID" and also serves the bitmap offset; then one
 * atomic OR on the bitmap word.  No lock, no other store.
 */
void memslot_vcpu_mark_page_dirty(struct memslot_vcpu *vcpu,
				  unsigned int as_id, uint64_t gfn)
{
	const struct memslot_set *set;
	uint64_t gen, off, n;

	if (as_id >= vcpu->nr_as)
		return;
	set = vcpu_active(vcpu, as_id);
	gen = atomic_load_explicit(&set->generation, memory_order_relaxed);
	off = gfn - vcpu->base;
	n = vcpu->mark_npages;
	if (gen != vcpu->gen || off >= n)
		goto miss;
	/* Guest-controlled offset: clamp before it indexes the bitmap. */
	dirty_mark_offset(vcpu->slot, memslot_array_index_nospec(off, n));
	return;
miss:
	vcpu_mark_miss(vcpu, as_id, gfn);
}
