/* SPDX-License-Identifier: MIT */
/*
 * MMU-notifier protocol: what a VMM that maps guest memory itself (a
 * stage-2 map through Hypervisor.framework or WHPX, VFIO DMA maps, a
 * vhost-user table, an emulator's software TLB) needs when the host memory
 * behind slots changes, with the semantics of KVM's mmu_notifier.
 *
 * The host side (the VMM's code that unmaps, remaps, swaps out or breaks
 * copy-on-write of guest memory) brackets each change of an hva range with
 * memslot_notifier_invalidate_start() and memslot_notifier_invalidate_end().
 * The start call hands every (slot, gfn range) the hva range covers, in
 * every address space, to the registered consumers, which drop their
 * mappings of it.  Between start and end the layout cannot change (slot
 * swaps wait), so both calls see the same slots.
 *
 * The fault side (a vCPU thread resolving a gfn) takes a sequence number
 * with memslot_notifier_seq_begin() before it resolves the gfn to host
 * memory, and, holding the consumer's own mapping lock (the lock its
 * invalidate callback also takes), asks memslot_notifier_retry() before it
 * installs the mapping.  A fault that raced an invalidation of its gfn is
 * told to retry, so no mapping of memory that is going away survives.
 * See doc/notifier.md.
 */
#ifndef MEMSLOT_NOTIFIER_H
#define MEMSLOT_NOTIFIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <memslot/memslot.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * enum memslot_notifier_event - why a consumer's invalidate hook is called
 * @MEMSLOT_NOTIFY_UNMAP: the host unmaps or replaces the memory (munmap,
 *	mremap, copy-on-write, swap-out, migration): drop every mapping of
 *	the range; sent by memslot_notifier_invalidate_start()
 * @MEMSLOT_NOTIFY_AGE: clear the accessed bits of the range and flush
 *	(KVM's clear_flush_young); return whether any was set
 * @MEMSLOT_NOTIFY_CLEAR_YOUNG: clear the accessed bits without a flush;
 *	return whether any was set
 * @MEMSLOT_NOTIFY_TEST_YOUNG: return whether any accessed bit is set,
 *	changing nothing
 *
 * The three aging events come from memslot_notifier_age(); they do not
 * invalidate mappings, so they neither make faults retry nor hold slot
 * swaps back.
 */
enum memslot_notifier_event {
	MEMSLOT_NOTIFY_UNMAP = 0,
	MEMSLOT_NOTIFY_AGE,
	MEMSLOT_NOTIFY_CLEAR_YOUNG,
	MEMSLOT_NOTIFY_TEST_YOUNG,
};

/**
 * struct memslot_notifier_ops - a consumer of host memory changes
 * @size: sizeof(struct memslot_notifier_ops), so the struct can grow
 * @invalidate: [@gfn_start, @gfn_end) of @slot (a gfn range of its address
 *	space) is affected by @event.  For MEMSLOT_NOTIFY_UNMAP, drop every
 *	mapping of it under the lock the fault side holds around
 *	memslot_notifier_retry(); the return value is ignored.  For the aging
 *	events, return whether any page of the range was young.  INVALID slots
 *	are included.  May be NULL.
 * @change: inside an invalidation of @hva's page, the host now maps that
 *	page to new memory (KVM's change_pte): a consumer may install the new
 *	mapping of @gfn in @slot at once, so that the fault the invalidation
 *	makes retry finds it.  @writable is false for READONLY slots whatever
 *	the host maps.  Not called for INVALID slots (a mapping installed now
 *	would outlive their flush).  May be NULL.
 * @ctx: passed to every hook
 *
 * Context: hooks run on the thread that called the notifier function, with
 * the VM's notifier lock held and the layout fixed: @slot is valid until
 * the hook returns.  They must not call memslot_notifier_* functions other
 * than memslot_notifier_seq_begin() and memslot_notifier_retry(), nor
 * change slots (a slot swap waits for the invalidation to end).  Every
 * call that takes the VM's writer lock or waits (slot changes, stats,
 * listeners, dirty-log calls, memslot_vm_wait()) returns -EDEADLK there:
 * a writer holding that lock may be waiting for the notifier lock.
 */
struct memslot_notifier_ops {
	size_t size;
	bool (*invalidate)(struct memslot_vm *vm, void *ctx,
			   const struct memslot_slot *slot, uint64_t gfn_start,
			   uint64_t gfn_end, enum memslot_notifier_event event);
	void (*change)(struct memslot_vm *vm, void *ctx,
		       const struct memslot_slot *slot, uint64_t gfn,
		       uint64_t hva, bool writable);
	void *ctx;
};

/**
 * memslot_notifier_register() - start calling @ops' hooks
 * @vm: the VM
 * @ops: the consumer; copied (as far as @ops->size says), and identified
 *	by its address for memslot_notifier_unregister()
 *
 * Consumers are called in registration order.
 * Context: any thread except inside a notifier hook; never runs in the
 * middle of a dispatch.
 * Return: 0; -EINVAL for NULL or an @ops->size below the first version;
 * -EEXIST if @ops is registered already; -ENOMEM; -EDEADLK inside a
 * notifier hook.
 */
int memslot_notifier_register(struct memslot_vm *vm,
			      const struct memslot_notifier_ops *ops);

/**
 * memslot_notifier_unregister() - stop calling @ops' hooks
 * @vm: the VM
 * @ops: a registered consumer
 *
 * After return no hook of @ops runs any more.
 * Context: as memslot_notifier_register().
 * Return: 0; -EINVAL for NULL; -ENOENT if @ops is not registered;
 * -EDEADLK inside a notifier hook.
 */
int memslot_notifier_unregister(struct memslot_vm *vm,
				const struct memslot_notifier_ops *ops);

/**
 * memslot_notifier_invalidate_start() - the host is about to change
 *	[@start, @end) (KVM's invalidate_range_start)
 * @vm: the VM
 * @start: first hva
 * @end: hva after the last
 * @event: MEMSLOT_NOTIFY_UNMAP
 *
 * Marks an invalidation active (slot swaps now wait for its end).  If the
 * range meets any slot: raises the in-progress count, adds the gfn range
 * of every hit to the range that memslot_notifier_retry() checks (one
 * union over all address spaces, as KVM keeps), and calls every
 * consumer's invalidate hook once per hit, in every address space,
 * aliases included.  Every successful call must be followed by exactly
 * one memslot_notifier_invalidate_end() with the same range, after the
 * host has made its change.
 * Context: any thread, inside or outside a read section; not inside a
 * notifier hook.  Between start and end the caller must not change slots
 * or wait for a thread that does (the change would wait for the end), nor
 * call memslot_vm_wait() (the reclaim thread's flush waits for it too).
 * Return: 0; -EINVAL for a NULL @vm, an empty or reversed range or an
 * @event other than MEMSLOT_NOTIFY_UNMAP; -EDEADLK inside a notifier
 * hook.
 */
int memslot_notifier_invalidate_start(struct memslot_vm *vm, uint64_t start,
				      uint64_t end,
				      enum memslot_notifier_event event);

/**
 * memslot_notifier_invalidate_end() - the host has changed [@start, @end)
 *	(KVM's invalidate_range_end)
 * @vm: the VM
 * @start: as given to the matching start
 * @end: as given to the matching start
 *
 * If the range met a slot at start: advances the sequence (every fault
 * that began before now retries) and lowers the in-progress count.  Ends
 * the invalidation; when it was the last active one, waiting slot swaps
 * proceed.
 * Context: as memslot_notifier_invalidate_start().
 * Return: 0; -EINVAL for a NULL @vm, an empty or reversed range, or no
 * active invalidation; -EDEADLK inside a notifier hook.
 */
int memslot_notifier_invalidate_end(struct memslot_vm *vm, uint64_t start,
				    uint64_t end);

/**
 * memslot_notifier_change() - the host now maps @hva's page to new memory
 * @vm: the VM
 * @hva: an address in the page
 * @writable: the host maps the new page writable
 *
 * Calls every consumer's change hook for each slot (every address space,
 * aliases included, INVALID slots excluded) that maps the page, with the
 * gfn of the page, the page's hva and @writable (false for READONLY
 * slots).  Must be called between a start and its end whose range covers
 * the page, after the host installed the new page.
 * Context: as memslot_notifier_invalidate_start().
 * Return: 0; -EINVAL for a NULL @vm, an @hva of UINT64_MAX, or when no
 * invalidation is active; -EDEADLK inside a notifier hook.
 */
int memslot_notifier_change(struct memslot_vm *vm, uint64_t hva,
			    bool writable);

/**
 * memslot_notifier_age() - age or test the accessed state of [@start, @end)
 * @vm: the VM
 * @start: first hva
 * @end: hva after the last
 * @event: MEMSLOT_NOTIFY_AGE, MEMSLOT_NOTIFY_CLEAR_YOUNG or
 *	MEMSLOT_NOTIFY_TEST_YOUNG
 *
 * Calls every consumer's invalidate hook with @event for each (slot, gfn
 * range) the range covers, as KVM's clear_flush_young, clear_young and
 * test_young do.  Changes neither the sequence nor the in-progress count.
 * Context: as memslot_notifier_invalidate_start().
 * Return: 1 if any hook reported a young page, 0 if none; -EINVAL for a
 * NULL @vm, an empty or reversed range or another @event; -EDEADLK inside
 * a notifier hook.
 */
int memslot_notifier_age(struct memslot_vm *vm, uint64_t start, uint64_t end,
			 enum memslot_notifier_event event);

/**
 * memslot_notifier_seq_begin() - the invalidation sequence, before a fault
 * @vm: the VM
 *
 * Take it before resolving a gfn to host memory (KVM's mmu_invalidate_seq
 * read at the start of a page fault).  One acquire load; stores nothing.
 * Context: any thread.
 * Return: the sequence, for memslot_notifier_retry().
 */
uint64_t memslot_notifier_seq_begin(struct memslot_vm *vm);

/**
 * memslot_notifier_retry() - whether a fault must retry instead of mapping
 * @vm: the VM
 * @seq: from memslot_notifier_seq_begin() at the start of the fault
 * @gfn: the gfn the fault resolved
 *
 * KVM's mmu_invalidate_retry_gfn(): true if an invalidation in progress
 * covers @gfn (the range may include false positives, never misses), or
 * if any invalidation ended since @seq was taken.  Acquire loads only;
 * stores nothing.
 * Context: call it holding the consumer's mapping lock, the same lock the
 * invalidate hook takes, and install the mapping before dropping it: then
 * an invalidation either made this call return true or will drop the
 * mapping in its hook.
 * Return: true to retry the fault, false to install the mapping.
 */
bool memslot_notifier_retry(struct memslot_vm *vm, uint64_t seq,
			    uint64_t gfn);

#ifdef __cplusplus
}
#endif

#endif /* MEMSLOT_NOTIFIER_H */
