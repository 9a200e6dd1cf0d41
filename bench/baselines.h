/* SPDX-License-Identifier: MIT */
/*
 * Baselines for the benchmarks: the slot indexes a VMM would otherwise use.
 *
 *   array    KVM before 5.15: a sorted array of slot structs with an
 *            id-to-index table and a last-used index; every change copies
 *            the whole array (twice for DELETE and MOVE, whose INVALID copy
 *            is published first); hva ranges scan every slot.
 *   rbtree   KVM since 5.15 for gfn lookups: a red-black tree keyed by base
 *            gfn (glibc tsearch), slots found by id through a table; hva
 *            ranges walk the tree in order, as KVM did before its hva tree.
 *   bsearch  rust-vmm vm-memory (Firecracker, cloud-hypervisor): a sorted
 *            vector of pointers to slots, searched with glibc bsearch;
 *            a change builds a new vector; hva ranges scan it.
 *
 * All three share this interface so the harness drives them alike.  They
 * are single-threaded: no grace periods, only the data-structure work.
 * Error convention as libmemslot: 0 or a negative errno.
 */
#ifndef MEMSLOT_BENCH_BASELINES_H
#define MEMSLOT_BENCH_BASELINES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BASE_PAGE_SHIFT 12

/* One slot, with the fields libmemslot keeps for a lookup. */
struct base_slot {
	uint64_t base_gfn;
	uint64_t npages;
	uint64_t hva;
	void *user_data;
	uint32_t flags;
	uint32_t id;
};

/*
 * base_hit_pages() - pages of @s whose bytes meet [@start, @end)
 *
 * The same gfn range a libmemslot hva hit reports (a partly covered page
 * counts), so every implementation's unmap dispatch sums the same number.
 */
static inline uint64_t base_hit_pages(const struct base_slot *s,
				      uint64_t start, uint64_t end)
{
	uint64_t hva_end = s->hva + (s->npages << BASE_PAGE_SHIFT);
	uint64_t lo = start > s->hva ? start : s->hva;
	uint64_t hi = end < hva_end ? end : hva_end;

	if (lo >= hi)
		return 0;
	return ((hi - s->hva + (1u << BASE_PAGE_SHIFT) - 1) >> BASE_PAGE_SHIFT) -
	       ((lo - s->hva) >> BASE_PAGE_SHIFT);
}

/*
 * Every baseline provides, with <name> one of array, rbtree, bsearch:
 *   create(max_ids)          an empty index for ids below max_ids
 *   destroy(b)               free it and its slots (NULL is fine)
 *   load(b, slots, n)        fill an empty index from @n slots sorted by
 *                            base gfn, without per-change copies (for
 *                            benchmark setup)
 *   insert(b, s)             create a slot; -EEXIST on overlap or used id
 *   remove(b, id)            delete; -ENOENT if absent
 *   move(b, id, base_gfn)    move; -ENOENT, -EEXIST
 *   set_flags(b, id, flags)  flags-only change; -ENOENT
 *   lookup(b, gfn)           the slot containing @gfn, or NULL
 *   by_id(b, id)             the slot with that id, or NULL
 *   hva_pages(b, start, end) sum of base_hit_pages() over every slot
 *   bytes(b)                 bytes the index holds, slots included
 * Return of the int functions: 0 or a negative errno (-ENOMEM too).
 */
#define BASE_DECLARE(name)						\
	struct base_##name;						\
	struct base_##name *base_##name##_create(uint32_t max_ids);	\
	void base_##name##_destroy(struct base_##name *b);		\
	int base_##name##_load(struct base_##name *b,			\
			       const struct base_slot *slots, size_t n); \
	int base_##name##_insert(struct base_##name *b,			\
				 const struct base_slot *s);		\
	int base_##name##_remove(struct base_##name *b, uint32_t id);	\
	int base_##name##_move(struct base_##name *b, uint32_t id,	\
			       uint64_t base_gfn);			\
	int base_##name##_set_flags(struct base_##name *b, uint32_t id, \
				    uint32_t flags);			\
	const struct base_slot *base_##name##_lookup(struct base_##name *b, \
						     uint64_t gfn);	\
	const struct base_slot *base_##name##_by_id(			\
		const struct base_##name *b, uint32_t id);		\
	uint64_t base_##name##_hva_pages(const struct base_##name *b,	\
					 uint64_t start, uint64_t end);	\
	size_t base_##name##_bytes(const struct base_##name *b);

BASE_DECLARE(array)
BASE_DECLARE(rbtree)
BASE_DECLARE(bsearch)

#ifdef __cplusplus
}
#endif

#endif
