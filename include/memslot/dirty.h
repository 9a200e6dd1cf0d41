/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page logging, as KVM's KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG.
 *
 * A slot with MEMSLOT_MEM_LOG_DIRTY_PAGES owns a bitmap: bit i (bit i % 64
 * of 64-bit word i / 64) says page i of the slot was written since it was
 * last harvested.  On a little-endian host the layout is KVM's, so a
 * bitmap from KVM_GET_DIRTY_LOG merges word by word.  The bitmap follows
 * KVM's lifecycle: allocated when logging is turned on (or a logging slot
 * is created), kept without reset across a move or flags change that
 * keeps logging, freed when logging is turned off or the slot deleted.
 *
 * Marking takes no lock: one atomic OR on the bitmap word, from any number
 * of threads, inside a read section (the slot must be reachable).  Harvest
 * and clear take the VM's writer lock, as KVM takes slots_lock.  A
 * harvest either snapshots and clears each word atomically or, for a whole
 * large slot, switches marking to the other half of the bitmap and waits
 * one grace period before copying the old half; either way a mark is
 * never lost: it shows up in exactly one harvest.  See
 * doc/dirty-logging.md.
 */
#ifndef MEMSLOT_DIRTY_H
#define MEMSLOT_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct memslot_vm;
struct memslot_slot;
struct memslot_view;
struct memslot_vcpu;

/* Flags of memslot_vm_enable_manual_protect(), as KVM's: */
/* harvests copy without clearing; memslot_clear_dirty_log() clears */
#define MEMSLOT_DIRTY_LOG_MANUAL_PROTECT_ENABLE (1ull << 0)
/* a new bitmap starts with every page dirty */
#define MEMSLOT_DIRTY_LOG_INITIALLY_SET (1ull << 1)

/**
 * memslot_dirty_bitmap_bytes() - bytes of a slot's dirty bitmap
 * @npages: pages of the slot
 *
 * Whole 64-bit words, as KVM's kvm_dirty_bitmap_bytes().  The buffers of
 * memslot_get_dirty_log() and memslot_dirty_merge() have this size.
 * Return: the size in bytes.
 */
static inline uint64_t memslot_dirty_bitmap_bytes(uint64_t npages)
{
	return (npages / 64 + (npages % 64 != 0)) * 8;
}

/**
 * memslot_vm_enable_manual_protect() - KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
 * @vm: the VM
 * @flags: 0 (off), or MEMSLOT_DIRTY_LOG_MANUAL_PROTECT_ENABLE, optionally
 *	with MEMSLOT_DIRTY_LOG_INITIALLY_SET
 *
 * With manual protect, memslot_get_dirty_log() copies the bitmap without
 * clearing it and memslot_clear_dirty_log() clears (and re-protects) what
 * the VMM has dealt with.  With INITIALLY_SET, a bitmap allocated from now
 * on starts with every page's bit set.  As KVM, it may be changed at any
 * time, with or without slots; bitmaps that exist keep their bits.
 * Context: outside read sections and hooks; takes the writer lock.
 * Return: 0; -EINVAL for NULL or @flags with other bits (INITIALLY_SET
 * without ENABLE included, as KVM); -EDEADLK inside a read section or a
 * hook.
 */
int memslot_vm_enable_manual_protect(struct memslot_vm *vm, uint64_t flags);

/**
 * memslot_vm_set_dirty_protect() - the hook that re-protects harvested pages
 * @vm: the VM
 * @protect: called for each 64-page word whose bits a harvest or a clear
 *	really cleared, with the slot, the page offset of the word's bit 0
 *	(a multiple of 64) and the cleared bits; where KVM write-protects
 *	those pages again (kvm_arch_mmu_enable_log_dirty_pt_masked).  NULL
 *	removes the hook.
 * @ctx: passed to @protect
 *
 * Context: outside read sections and hooks; takes the writer lock.  The
 * hook runs with the writer lock held, on the harvesting thread; it may
 * look slots up but must not call writer functions.
 * Return: 0; -EINVAL for NULL @vm; -EDEADLK inside a read section or a
 * hook.
 */
int memslot_vm_set_dirty_protect(struct memslot_vm *vm,
				 void (*protect)(void *ctx,
						 const struct memslot_slot *slot,
						 uint64_t offset, uint64_t mask),
				 void *ctx);

/* ---- marking: inside a read section, from any thread --------------- */

/**
 * memslot_slot_mark_page_dirty() - mark @gfn dirty in @slot
 * @slot: a slot from a lookup (may be NULL)
 * @gfn: guest frame number
 *
 * KVM's mark_page_dirty_in_slot(): nothing happens without a bitmap, for
 * an INVALID slot, or for a @gfn outside the slot; the page offset is
 * clamped speculation-safely.  One atomic OR, no lock.
 * Context: inside a read section (@slot must be reachable).
 */
void memslot_slot_mark_page_dirty(const struct memslot_slot *slot,
				  uint64_t gfn);

/**
 * memslot_slot_mark_range_dirty() - mark [@gfn, @gfn + @npages) in @slot
 * @slot: a slot from a lookup (may be NULL)
 * @gfn: first guest frame number
 * @npages: number of pages; the part outside the slot is ignored
 *
 * One atomic OR per 64-page word.
 * Context: inside a read section.
 */
void memslot_slot_mark_range_dirty(const struct memslot_slot *slot,
				   uint64_t gfn, uint64_t npages);

/**
 * memslot_mark_page_dirty() - KVM's mark_page_dirty(): lookup, then mark
 * @vm: the VM
 * @as_id: address space (an out-of-range one marks nothing)
 * @gfn: guest frame number
 *
 * Uses the set-wide last-used cache, as memslot_gfn_to_slot().
 * Context: inside a read section.
 */
void memslot_mark_page_dirty(struct memslot_vm *vm, unsigned int as_id,
			     uint64_t gfn);

/**
 * memslot_view_mark_page_dirty() - lookup in a view, then mark
 * @view: a view
 * @gfn: guest frame number
 *
 * Context: inside the read section the view came from.
 */
void memslot_view_mark_page_dirty(struct memslot_view *view, uint64_t gfn);

/**
 * memslot_vcpu_mark_page_dirty() - KVM's kvm_vcpu_mark_page_dirty()
 * @vcpu: the vCPU cache; owned by the calling thread
 * @as_id: address space
 * @gfn: guest frame number
 *
 * A cache hit costs no lock and no store besides the one atomic OR on
 * the bitmap word (28 instructions on x86-64).  A cached slot that does
 * not log goes through an out-of-line call, without a search.
 * Context: inside a read section, on the thread that owns @vcpu.
 */
void memslot_vcpu_mark_page_dirty(struct memslot_vcpu *vcpu,
				  unsigned int as_id, uint64_t gfn);

/* ---- harvest: writer side ------------------------------------------ */

/**
 * memslot_get_dirty_log() - KVM_GET_DIRTY_LOG
 * @vm: the VM
 * @slot: (as_id << id_bits) | id, a user slot
 * @bitmap: receives memslot_dirty_bitmap_bytes(npages) bytes
 *
 * Without manual protect the bitmap is snapshot and cleared (a concurrent
 * mark lands in this harvest or the next, never in none) and the protect
 * hook gets every nonzero word: a slot of at least 2^18 pages switches
 * marks to its other bitmap half, waits one grace period and copies the
 * old half at memcpy speed; a smaller one takes one atomic exchange per
 * dirty word.  With manual protect the bitmap is copied, not cleared, and
 * the hook is not called.
 * Context: outside read sections and hooks; takes the writer lock; may
 * wait for a grace period (for readers' sections to end).
 * Return: 0; -EINVAL for NULL @vm, an address space out of range or an id
 * at or above user_slots; -ENOENT if the slot is missing or has no bitmap;
 * -EFAULT for NULL @bitmap (checked last, nothing cleared); -EDEADLK
 * inside a read section or a hook.
 */
int memslot_get_dirty_log(struct memslot_vm *vm, uint32_t slot,
			  uint64_t *bitmap);

/**
 * memslot_clear_dirty_log() - KVM_CLEAR_DIRTY_LOG
 * @vm: the VM
 * @slot: (as_id << id_bits) | id, a user slot
 * @first_page: first page to clear; a multiple of 64
 * @num_pages: pages covered by @bitmap; a multiple of 64 unless the range
 *	reaches the slot's end
 * @bitmap: bit i clears page @first_page + i; bits beyond the slot are
 *	ignored
 *
 * Each word is cleared with one atomic and-not; the protect hook gets the
 * bits that were set and are now clear.  Works in either mode, as KVM.
 * Context: as memslot_get_dirty_log().
 * Return: 0; -EINVAL as memslot_get_dirty_log(), then for @first_page not
 * a multiple of 64, and (after -ENOENT) for @first_page > npages,
 * @num_pages > npages - @first_page, or @num_pages not a multiple of 64
 * short of the end; -ENOENT; -EFAULT for NULL @bitmap with @num_pages > 0;
 * -EDEADLK.
 */
int memslot_clear_dirty_log(struct memslot_vm *vm, uint32_t slot,
			    uint64_t first_page, uint64_t num_pages,
			    const uint64_t *bitmap);

/**
 * memslot_dirty_harvest() - snapshot and clear a range, in either mode
 * @vm: the VM
 * @slot: (as_id << id_bits) | id, a user slot
 * @first_page: first page; a multiple of 64
 * @num_pages: pages; a multiple of 64 unless the range reaches the end
 * @bitmap: receives memslot_dirty_bitmap_bytes(@num_pages) bytes
 *
 * What KVM_GET_DIRTY_LOG does without manual protect, on a part of the
 * slot, so a VMM can harvest a large slot in chunks: one atomic exchange
 * per dirty word, clean words cost a load.  The whole slot is harvested
 * as memslot_get_dirty_log() does it.  The protect hook gets every
 * nonzero word.
 * Context: as memslot_get_dirty_log().
 * Return: the number of dirty pages harvested (>= 0); otherwise the
 * errors of memslot_clear_dirty_log().
 */
int64_t memslot_dirty_harvest(struct memslot_vm *vm, uint32_t slot,
			      uint64_t first_page, uint64_t num_pages,
			      uint64_t *bitmap);

/**
 * memslot_dirty_count() - dirty pages of a slot, without clearing
 * @vm: the VM
 * @slot: (as_id << id_bits) | id, a user slot
 * @count: receives the number of set bits
 *
 * Context: as memslot_get_dirty_log().
 * Return: 0; the errors of memslot_get_dirty_log() (-EFAULT for NULL
 * @count).
 */
int memslot_dirty_count(struct memslot_vm *vm, uint32_t slot,
			uint64_t *count);

/**
 * memslot_dirty_merge() - OR an external bitmap into a slot's bitmap
 * @vm: the VM
 * @slot: (as_id << id_bits) | id, a user slot
 * @bitmap: memslot_dirty_bitmap_bytes(npages) bytes in the same layout,
 *	e.g. what KVM_GET_DIRTY_LOG returned for the same slot; bits beyond
 *	the slot are ignored
 *
 * One atomic OR per nonzero word, so marks made meanwhile are kept.
 * Context: as memslot_get_dirty_log().
 * Return: as memslot_get_dirty_log().
 */
int memslot_dirty_merge(struct memslot_vm *vm, uint32_t slot,
			const uint64_t *bitmap);

/**
 * struct memslot_dirty_stats - dirty logging in one address space
 * @logging_slots: slots that have a bitmap
 * @bitmap_bytes: bytes allocated for those bitmaps, two halves each as
 *	KVM allocates (also part of memslot_stats.bytes)
 */
struct memslot_dirty_stats {
	uint64_t logging_slots;
	uint64_t bitmap_bytes;
};

/**
 * memslot_vm_dirty_stats() - count logging slots and their bitmap bytes
 * @vm: the VM
 * @as_id: address space
 * @stats: receives the counts
 *
 * Context: as memslot_vm_stats().
 * Return: 0; -EINVAL for NULL or a bad @as_id; -EDEADLK.
 */
int memslot_vm_dirty_stats(struct memslot_vm *vm, unsigned int as_id,
			   struct memslot_dirty_stats *stats);

/* ---- iterating a harvested bitmap ----------------------------------- */

/**
 * struct memslot_dirty_iter - walk over the set bits of a bitmap
 *
 * All fields are private.  Clean words cost one load each.
 */
struct memslot_dirty_iter {
	const uint64_t *priv_words;
	uint64_t priv_nwords;
	uint64_t priv_index;
	uint64_t priv_word;
	uint64_t priv_npages;
};

/**
 * memslot_dirty_iter_init() - start a walk over @bitmap
 * @it: iterator on the caller's stack
 * @bitmap: a bitmap of @npages bits (e.g. from memslot_get_dirty_log())
 * @npages: bits to consider; set bits at or beyond it are not yielded
 */
void memslot_dirty_iter_init(struct memslot_dirty_iter *it,
			     const uint64_t *bitmap, uint64_t npages);

/**
 * memslot_dirty_iter_next() - the next set bit, in ascending order
 * @it: the iterator
 * @page: receives the page offset
 *
 * Return: true with @page filled, false at the end.
 */
bool memslot_dirty_iter_next(struct memslot_dirty_iter *it, uint64_t *page);

#ifdef __cplusplus
}
#endif

#endif /* MEMSLOT_DIRTY_H */
