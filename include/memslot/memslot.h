/* SPDX-License-Identifier: MIT */
/*
 * libmemslot: guest memory slots with KVM_SET_USER_MEMORY_REGION semantics.
 *
 * A VM holds, for each address space, two slot sets (active and inactive)
 * that share slot objects.  Writers edit only the inactive set and publish
 * it with one pointer store; readers look slots up in the active set inside
 * a read-side section and never block.  See doc/design.md and
 * doc/concurrency.md.
 *
 * Conventions: functions that change state return 0 or a negative errno;
 * lookups return a pointer or NULL.  Addresses are uint64_t: gfn (guest
 * frame number), npages, hva (host virtual address).  Ranges are half-open.
 *
 * Bad input:
 *  - setup and writer calls (memslot_vm_create, the set-region calls,
 *    memslot_vm_stats, memslot_lowest_free_id, memslot_vcpu_create) check
 *    their pointers and return -EINVAL for NULL; a refused request changes
 *    nothing;
 *  - destroy calls accept NULL;
 *  - the read side (read lock/unlock, lookups, translation, accessors,
 *    iterator steps) takes pointers as given, with no NULL check: a check
 *    would be paid by every guest access.  Untrusted numbers are checked:
 *    an out-of-range address space gives NULL, 0 or an empty walk, an empty
 *    or reversed range an empty walk, and indexes are clamped
 *    speculation-safely;
 *  - misuse: a writer call inside a read section, a change hook or a
 *    notifier hook would wait for itself forever; it returns -EDEADLK
 *    instead, in every build.
 */
#ifndef MEMSLOT_MEMSLOT_H
#define MEMSLOT_MEMSLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <memslot/alloc.h>
#include <memslot/nospec.h>
#include <memslot/rcu.h>

#ifdef __cplusplus
extern "C" {
#endif

/* User flags, as KVM's KVM_MEM_* bits. */
#define MEMSLOT_MEM_LOG_DIRTY_PAGES (1u << 0) /* KVM_MEM_LOG_DIRTY_PAGES */
#define MEMSLOT_MEM_READONLY (1u << 1) /* KVM_MEM_READONLY */
#define MEMSLOT_MEM_GUEST_MEMFD (1u << 2) /* KVM_MEM_GUEST_MEMFD */
/* Internal flag: the slot is being deleted or moved; lookups still find it,
 * translation to an hva fails (a vCPU would take an MMIO exit). */
#define MEMSLOT_INVALID (1u << 16)

/* Maximum depth of the internal trees; sizes the stack iterators. */
#define MEMSLOT_ITER_DEPTH 16

struct memslot_vm;
struct memslot_slot;
struct memslot_vcpu;

/**
 * enum memslot_change - what a set-region operation does to the slot layout
 * @MEMSLOT_CHANGE_NONE: nothing (a no-op request, or a rejected one)
 * @MEMSLOT_CHANGE_CREATE: a new slot
 * @MEMSLOT_CHANGE_DELETE: a slot removed
 * @MEMSLOT_CHANGE_MOVE: a slot at a new guest address, same memory
 * @MEMSLOT_CHANGE_FLAGS_ONLY: a slot with new flags, same place
 */
enum memslot_change {
	MEMSLOT_CHANGE_NONE = 0,
	MEMSLOT_CHANGE_CREATE,
	MEMSLOT_CHANGE_DELETE,
	MEMSLOT_CHANGE_MOVE,
	MEMSLOT_CHANGE_FLAGS_ONLY,
};

/**
 * enum memslot_rule - which validation rule decided a set-region verdict
 *
 * Each rule's number is its value, shown in the comment beside it; the
 * header, the docs and the tests all use these numbers.  Rules 1-17 are
 * numbered in the order they are checked, which is the order KVM checks
 * them in (doc/design.md has the table); 18-20 are the library's own
 * outcomes.  MEMSLOT_RULE_OK means every check passed.
 */
enum memslot_rule {
	MEMSLOT_RULE_OK = 0,
	MEMSLOT_RULE_FLAGS_UNKNOWN,	/*  1 flags outside the call's set */
	MEMSLOT_RULE_ID_USER,		/*  2 id >= user slot count */
	MEMSLOT_RULE_FLAGS_COMBO,	/*  3 flag combination not allowed */
	MEMSLOT_RULE_SIZE_ALIGN,	/*  4 memory_size not page aligned */
	MEMSLOT_RULE_GPA_ALIGN,		/*  5 guest_phys_addr not aligned */
	MEMSLOT_RULE_HVA,		/*  6 hva unaligned, tagged or too high */
	MEMSLOT_RULE_GMEM_OFFSET,	/*  7 guest_memfd_offset unaligned or
					 *    offset + size wraps */
	MEMSLOT_RULE_AS_ID,		/*  8 address space or id out of range */
	MEMSLOT_RULE_GPA_WRAP,		/*  9 gpa + size wraps */
	MEMSLOT_RULE_TOO_LARGE,		/* 10 more pages than a slot may have */
	MEMSLOT_RULE_DELETE_MISSING,	/* 11 delete of a slot that is absent */
	MEMSLOT_RULE_PAGES_OVERFLOW,	/* 12 create: total page count wraps */
	MEMSLOT_RULE_GMEM_IMMUTABLE,	/* 13 modify with GUEST_MEMFD set */
	MEMSLOT_RULE_MODIFY,		/* 14 modify changes hva, npages,
					 *    READONLY or GUEST_MEMFD */
	MEMSLOT_RULE_NOOP,		/* 15 nothing to change (returns 0) */
	MEMSLOT_RULE_OVERLAP,		/* 16 gfn range overlaps another slot */
	MEMSLOT_RULE_MAX_GFN,		/* 17 last gfn beyond the MMU's max */
	MEMSLOT_RULE_NOMEM,		/* 18 allocation failure */
	MEMSLOT_RULE_PREPARE,		/* 19 consumer prepare callback failed */
	MEMSLOT_RULE_BUSY,		/* 20 writer called in a read section */
	MEMSLOT_RULE_COUNT
};

/**
 * struct memslot_region - one KVM_SET_USER_MEMORY_REGION request
 * @slot: (as_id << id_bits) | id; id_bits is 16 in the KVM profiles
 * @flags: MEMSLOT_MEM_* bits
 * @guest_phys_addr: guest physical base address, page aligned
 * @memory_size: size in bytes; 0 deletes the slot
 * @userspace_addr: host virtual base address, page aligned
 * @user_data: opaque pointer stored in a created slot (a VMM's RAM block,
 *	fd or NUMA node); a moved or flags-changed slot keeps its old value,
 *	because its backing memory cannot change.  Ignored on delete.
 * @guest_memfd_offset: with MEMSLOT_MEM_GUEST_MEMFD, the slot's offset in
 *	the guest_memfd file (KVM_SET_USER_MEMORY_REGION2); ignored without
 * @guest_memfd: with MEMSLOT_MEM_GUEST_MEMFD, the guest_memfd file
 *	descriptor; ignored without
 *
 * The library never uses the guest_memfd descriptor: it stores it and the
 * offset in a slot created with MEMSLOT_MEM_GUEST_MEMFD (zero for other
 * slots), returns them from memslot_slot_region(), and checks only what
 * KVM checks without looking at the file: the offset must be page aligned
 * and offset + memory_size must not wrap (rule 7).  That the descriptor is
 * a guest_memfd of the right VM and that the range fits in the file is
 * for KVM, or the VMM, to decide.  A GUEST_MEMFD slot cannot be modified,
 * only deleted (rules 13 and 14).
 */
struct memslot_region {
	uint32_t slot;
	uint32_t flags;
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	void *user_data;
	uint64_t guest_memfd_offset;
	uint32_t guest_memfd;
};

/**
 * struct memslot_callbacks - hooks a VMM uses to follow slot changes
 * @size: sizeof(struct memslot_callbacks), so the struct can grow
 * @prepare: called after validation and, for DELETE/MOVE, after the INVALID
 *	copy is active; 0 lets the change go on, any other value aborts it
 *	(for DELETE/MOVE the original slot is restored, as KVM does) and is
 *	returned as a negative errno (a positive value is negated); may be
 *	NULL
 * @flush: called for DELETE/MOVE once no reader can reach @old any more
 *	except as the INVALID copy: drop every mapping derived from @old here;
 *	may be NULL
 * @commit: called after the change is active in both sets and before @old
 *	is freed; may be NULL
 * @ctx: passed to every hook
 *
 * Context: hooks run on the writer thread with the VM's writer lock held;
 * they may do lookups but must not change slots.
 */
struct memslot_callbacks {
	size_t size;
	int (*prepare)(void *ctx, const struct memslot_slot *old,
		       const struct memslot_slot *new_slot,
		       enum memslot_change change);
	void (*flush)(void *ctx, const struct memslot_slot *old);
	void (*commit)(void *ctx, const struct memslot_slot *old,
		       const struct memslot_slot *new_slot,
		       enum memslot_change change);
	void *ctx;
};

/**
 * struct memslot_config - the KVM profile a VM follows, plus its hooks
 * @size: sizeof(struct memslot_config), so the struct can grow
 * @page_shift: log2 of the page size (12 on x86-64)
 * @id_bits: bits of the slot argument that hold the id (16 in KVM)
 * @nr_as: number of address spaces (1, or 2 with SMM)
 * @user_slots: ids below this may be set through memslot_set_region()
 * @total_slots: ids below this exist at all (internal slots included)
 * @max_pages: pages a user slot may have at most
 * @hva_limit: [hva, hva + size) must end at or below this
 * @hva_tag_mask: hva bits that mark a tagged pointer (rejected)
 * @max_gfn: highest gfn a created or moved slot may cover
 * @readonly: MEMSLOT_MEM_READONLY is supported
 * @guest_memfd: MEMSLOT_MEM_GUEST_MEMFD is accepted (KVM's v2 ioctl)
 * @alloc: allocator for every allocation; NULL means malloc/free
 * @rcu: grace-period backend; NULL means liburcu (memb flavor)
 * @callbacks: change hooks; NULL means none
 */
struct memslot_config {
	size_t size;
	unsigned int page_shift;
	unsigned int id_bits;
	unsigned int nr_as;
	uint32_t user_slots;
	uint32_t total_slots;
	uint64_t max_pages;
	uint64_t hva_limit;
	uint64_t hva_tag_mask;
	uint64_t max_gfn;
	bool readonly;
	bool guest_memfd;
	const struct memslot_allocator *alloc;
	const struct memslot_rcu_ops *rcu;
	const struct memslot_callbacks *callbacks;
};

/**
 * memslot_config_init_x86_64() - fill @cfg with the x86-64 KVM profile
 * @cfg: config to fill
 *
 * 4 KiB pages, 1 address space, 32764 user ids of 32767, 2^31 - 1 pages per
 * slot, hva below 0x7ffffffff000, max gfn 2^40 - 1, READONLY supported.
 *
 * The max gfn is not a KVM rule but the host's: KVM refuses a slot that
 * ends above what its MMU can map, which depends on the CPU's physical
 * address width (and, nested, on what the outer hypervisor reports).
 * 2^40 - 1 is a common floor; a VMM that mirrors slots into KVM should set
 * @cfg->max_gfn from the host it runs on.
 */
void memslot_config_init_x86_64(struct memslot_config *cfg);

/**
 * memslot_config_init_unbounded() - fill @cfg with the unbounded profile
 * @cfg: config to fill
 *
 * For emulators that want a million slots: 32-bit ids in one address space,
 * no per-slot page cap, the full 64-bit hva and gfn ranges.
 */
void memslot_config_init_unbounded(struct memslot_config *cfg);

/**
 * memslot_vm_create() - create a VM's slot sets
 * @cfg: profile and hooks
 * @out: receives the VM
 *
 * @cfg and the structs it points to (@cfg->alloc, @cfg->rcu,
 * @cfg->callbacks) are copied at create time and never read again: the
 * caller may free or change them afterwards (the contexts their @ctx
 * fields name must still outlive the VM).  Each struct's @size field says
 * how much of it the caller has: the library reads no byte beyond it,
 * fields the caller's version lacks read as zero, and a larger @size from
 * a newer caller is accepted and its extra fields ignored.
 *
 * Return: 0; -EINVAL for a config that is out of range (page_shift outside
 * 9..30, nr_as 0 or above 256, id_bits 0 or above 32, user_slots above
 * total_slots, ids that do not fit in id_bits), for a struct whose @size
 * is below its first version (the config up to @max_gfn, the others up to
 * their last function pointer), for a NULL @malloc, @free, @read_lock,
 * @read_unlock or @synchronize hook; -ENOMEM.
 */
int memslot_vm_create(const struct memslot_config *cfg,
		      struct memslot_vm **out);

/**
 * memslot_vm_destroy() - free a VM and all its slots
 * @vm: the VM, or NULL
 *
 * Context: no reader may be inside a read section of @vm.
 */
void memslot_vm_destroy(struct memslot_vm *vm);

/**
 * memslot_set_region() - create, delete, move or change flags of a slot
 * @vm: the VM
 * @region: the request, with KVM_SET_USER_MEMORY_REGION semantics
 * @rule: if not NULL, receives the rule that decided the verdict
 *
 * Validates @region in KVM's order (see enum memslot_rule), then applies
 * the change through the inactive set and swaps; DELETE and MOVE first
 * publish an INVALID copy of the slot and call the flush hook.  Blocks for
 * one grace period per swap.  On failure nothing changes, except that a
 * prepare failure after the INVALID swap advances the generation (as KVM).
 *
 * Context: any thread outside a read section of @vm; writers serialise on
 * the VM's writer lock.
 * Return: 0; -EINVAL (rules 1-14 and 17); -EEXIST (rule 16); -ENOMEM;
 * -EDEADLK when called from inside a read section or a hook (rule 20); the
 * prepare hook's error.
 */
int memslot_set_region(struct memslot_vm *vm,
		       const struct memslot_region *region,
		       enum memslot_rule *rule);

/**
 * memslot_set_internal_region() - as memslot_set_region(), for internal ids
 * @vm: the VM
 * @region: the request; ids from user_slots to total_slots - 1 are allowed
 *	and exempt from max_pages, as KVM's private slots are
 * @rule: if not NULL, receives the deciding rule
 *
 * Context: as memslot_set_region().
 * Return: as memslot_set_region().
 */
int memslot_set_internal_region(struct memslot_vm *vm,
				const struct memslot_region *region,
				enum memslot_rule *rule);

/**
 * struct memslot_change_info - one net change a transaction made
 * @change: what happened to the slot
 * @old_region: the slot before (DELETE, MOVE, FLAGS_ONLY)
 * @new_region: the slot after (CREATE, MOVE, FLAGS_ONLY)
 */
struct memslot_change_info {
	enum memslot_change change;
	struct memslot_region old_region;
	struct memslot_region new_region;
};

/**
 * struct memslot_txn_result - what memslot_set_regions() did
 * @failed: on failure, the index of the request that failed, or the request
 *	count when the failure belongs to the whole batch (out of memory)
 * @rule: the rule that decided (MEMSLOT_RULE_OK on success)
 * @changes: caller's array for the net changes, or NULL for none
 * @max_changes: entries in @changes; ignored (taken as 0) when @changes
 *	is NULL
 * @nchanges: receives the number of net changes (may exceed @max_changes;
 *	only the first @max_changes are stored)
 * @ticket: receives, from memslot_set_regions_deferred(), the ticket to
 *	pass to memslot_vm_wait(); 0 when nothing is left to complete
 */
struct memslot_txn_result {
	size_t failed;
	enum memslot_rule rule;
	struct memslot_change_info *changes;
	size_t max_changes;
	size_t nchanges;
	uint64_t ticket;
};

/**
 * memslot_set_regions() - apply several requests atomically
 * @vm: the VM
 * @regions: the requests, applied in order; each is validated against
 *	rules 1-16 as memslot_set_region() would, against the layout the
 *	earlier ones leave; rule 17 (max gfn, the arch's prepare step) and
 *	the prepare hooks then judge each net change, as for one request
 * @n: number of requests (0 does nothing)
 * @res: if not NULL, receives the outcome and the change list
 *
 * Readers see the whole old layout or the whole new one, never a state in
 * between (split a slot, merge two, resize, move a group).  All requests
 * must name one address space.  Requests on the same id collapse into one
 * net change.  When any request deletes or moves a slot, the batch takes
 * two swaps, as a single DELETE does: first every such slot is published
 * as an INVALID copy (and flushed), then the final layout; otherwise one
 * swap.  All-or-nothing: if a request fails, nothing changes (a prepare
 * failure after the INVALID swap still advances the generation).
 * The change list is ordered DELETE, FLAGS_ONLY, MOVE, CREATE: the order a
 * VMM replaying it through KVM ioctls needs (it must break cycles of moves
 * itself).
 *
 * Context: as memslot_set_region().
 * Return: as memslot_set_region(); -EINVAL if a request names another
 * address space than the first (rule MEMSLOT_RULE_AS_ID).
 */
int memslot_set_regions(struct memslot_vm *vm,
			const struct memslot_region *regions, size_t n,
			struct memslot_txn_result *res);

/**
 * memslot_set_regions_deferred() - apply requests without waiting for readers
 * @vm: the VM
 * @regions: the requests, as for memslot_set_regions()
 * @n: number of requests
 * @res: if not NULL, receives the outcome, the change list and the ticket
 *
 * Validation is the same as memslot_set_regions() (same verdict, same
 * rule, same all-or-nothing).  The new layout is published at once, in one
 * step: there is no INVALID phase and no wait for a grace period, so the
 * call never stalls on readers.  Generations advance as in blocking mode
 * (+nr_as per CREATE/FLAGS_ONLY batch, +2*nr_as when anything is deleted
 * or moved), in one step.  The prepare and commit hooks run before
 * return; what must wait for readers to leave the old layout runs later on
 * the VM's reclaim thread, once no reader can reach the old layout, in
 * order: the flush hook of every deleted or moved slot, then the complete
 * hook of every listener with @res->ticket, then the library frees the
 * old objects (so a complete hook may still be handed, and may compare,
 * the old slot pointers its flush saw).  Both go only to the listeners
 * registered when the change was made, as its prepare and commit did.
 * After memslot_vm_wait(@res->ticket)
 * returns (or the complete hook ran), no reader can reach the old slots:
 * their backing memory may be unmapped.  A prepare failure changes
 * nothing (there is no INVALID phase to undo).
 *
 * Context: any thread outside a read section and outside change hooks.
 * Return: as memslot_set_regions(); -EDEADLK from inside a read section or
 * a hook; -EAGAIN if the reclaim thread cannot be started.
 */
int memslot_set_regions_deferred(struct memslot_vm *vm,
				 const struct memslot_region *regions,
				 size_t n, struct memslot_txn_result *res);

/**
 * memslot_vm_wait() - wait until a deferred change has completed
 * @vm: the VM
 * @ticket: a ticket from memslot_set_regions_deferred(); 0 returns at once
 *
 * Deferred changes complete in the order they were made, so this also
 * waits for every earlier one.
 * Context: outside read sections and change hooks (it waits for a grace
 * period).
 * Return: 0; -EINVAL for a ticket never handed out; -EDEADLK from inside
 * a read section or a hook.
 */
int memslot_vm_wait(struct memslot_vm *vm, uint64_t ticket);

/**
 * memslot_vm_completed() - the newest deferred change that has completed
 * @vm: the VM
 *
 * Context: any thread.
 * Return: the highest ticket whose change has completed (0 if none).
 */
uint64_t memslot_vm_completed(struct memslot_vm *vm);

/**
 * struct memslot_listener - a consumer of slot changes (QEMU's
 *	MemoryListener): register several, add and remove them at run time
 * @size: sizeof(struct memslot_listener), so the struct can grow
 * @prepare: as struct memslot_callbacks' prepare; a nonzero return aborts
 *	the whole request list (positive values are negated)
 * @abort: the change @prepare accepted will not happen, because a later
 *	prepare (of this or another listener, or of another request of the
 *	transaction) failed; called in reverse order of the prepares
 * @flush: as struct memslot_callbacks' flush; in deferred mode it runs
 *	on the reclaim thread once no reader can reach @old
 * @commit: as struct memslot_callbacks' commit
 * @complete: a deferred change has completed (memslot_vm_wait())
 * @ctx: passed to every hook
 *
 * Every hook may be NULL.  Hooks of one listener run in the order above,
 * and a listener gets the hooks of exactly the changes made while it is
 * registered (a deferred change queued before it came does not flush or
 * complete to it); listeners run in registration order (after the
 * config's callbacks).  The reclaim thread is a registered reader, so
 * hooks there may open read sections.
 * Context: hooks run with the VM's writer lock held, on the writer's
 * thread or on the reclaim thread; they may look slots up but must not
 * change slots or wait (writer calls return -EDEADLK there).
 */
struct memslot_listener {
	size_t size;
	int (*prepare)(struct memslot_vm *vm, void *ctx,
		       const struct memslot_slot *old,
		       const struct memslot_slot *new_slot,
		       enum memslot_change change);
	void (*abort)(struct memslot_vm *vm, void *ctx,
		      const struct memslot_slot *old,
		      const struct memslot_slot *new_slot,
		      enum memslot_change change);
	void (*flush)(struct memslot_vm *vm, void *ctx,
		      const struct memslot_slot *old);
	void (*commit)(struct memslot_vm *vm, void *ctx,
		       const struct memslot_slot *old,
		       const struct memslot_slot *new_slot,
		       enum memslot_change change);
	void (*complete)(struct memslot_vm *vm, void *ctx, uint64_t ticket);
	void *ctx;
};

/**
 * memslot_listener_register() - start calling @l's hooks
 * @vm: the VM
 * @l: the listener; copied (as far as @l->size says), and identified by
 *	its address for memslot_listener_unregister()
 *
 * Context: any thread outside read sections and hooks; takes the writer
 * lock, so it never runs in the middle of a change.
 * Return: 0; -EINVAL for NULL or a @l->size below the first version;
 * -EEXIST if @l is registered already; -ENOMEM; -EDEADLK inside a read
 * section or a hook.
 */
int memslot_listener_register(struct memslot_vm *vm,
			      const struct memslot_listener *l);

/**
 * memslot_listener_unregister() - stop calling @l's hooks
 * @vm: the VM
 * @l: a registered listener
 *
 * After return no hook of @l runs any more (pending deferred completions
 * included).
 * Context: as memslot_listener_register().
 * Return: 0; -ENOENT if @l is not registered; -EINVAL for NULL; -EDEADLK
 * inside a read section or a hook.
 */
int memslot_listener_unregister(struct memslot_vm *vm,
				const struct memslot_listener *l);

/**
 * memslot_strerror() - a message for an error this library returns
 * @err: a negative errno returned by a libmemslot function
 *
 * Errors with one meaning wherever the library returns them (-EEXIST,
 * -ENOENT, -ENOMEM, -EFAULT, -EROFS, -EBUSY, -EDEADLK, -ENOSPC) get the
 * library's text; every other errno, -EINVAL included (use
 * memslot_rule_str() for the rule behind a set-region -EINVAL) and a
 * prepare hook's own errors, gets the C library's strerror text.
 * Context: any thread; thread-safe.
 * Return: never NULL; a static string, or one in a per-thread buffer that
 * the thread's next call overwrites.
 */
const char *memslot_strerror(int err);

/**
 * memslot_rule_str() - a message for a validation rule
 * @rule: a rule from memslot_set_region()
 *
 * Return: a static string; never NULL.
 */
const char *memslot_rule_str(enum memslot_rule rule);

/* ---- read side ------------------------------------------------------- */

/**
 * memslot_thread_register() - make the calling thread a reader
 * @vm: the VM
 *
 * Needed by backends that track readers (liburcu, counter); a no-op for
 * the others.  A thread reading several VMs registers with each; the
 * backend counts, so only the first registration and the matching last
 * unregistration reach it.  A thread the application has already
 * registered with liburcu (urcu_memb_register_thread()) may call this too:
 * the library then leaves liburcu's registration to the application.
 * Registration belongs to the thread, not to @vm: whatever a thread still
 * holds when it exits is dropped then.
 * Context: outside a read section.
 */
void memslot_thread_register(struct memslot_vm *vm);

/**
 * memslot_thread_unregister() - undo memslot_thread_register()
 * @vm: the VM, which must still exist
 *
 * Call it before memslot_vm_destroy(@vm), or not at all: a thread that
 * exits without unregistering is unregistered at its exit.
 */
void memslot_thread_unregister(struct memslot_vm *vm);

/**
 * memslot_read_lock() - enter a read-side section
 * @vm: the VM
 *
 * Slots returned by lookups stay valid until the matching unlock.  Sections
 * nest.  Enter once per batch of lookups, not per lookup.  A thread that
 * did not call memslot_thread_register() is registered here, until it
 * exits (builds without NDEBUG say so once on stderr).
 */
void memslot_read_lock(struct memslot_vm *vm);

/**
 * memslot_read_unlock() - leave a read-side section
 * @vm: the VM
 *
 * An unlock with no section open is ignored (builds without NDEBUG say so
 * once on stderr).
 */
void memslot_read_unlock(struct memslot_vm *vm);

/**
 * memslot_generation() - the active set's generation of an address space
 * @vm: the VM
 * @as_id: address space
 *
 * Bit 63 is set while a swap is in progress.  Generations of address space
 * i are congruent to i modulo nr_as.
 * Context: any thread, inside a read section or not.  Read outside one,
 * the number is that of a layout published by then: one a concurrent
 * change has not yet replaced, or its successor.
 * Return: the generation, or 0 for an out-of-range @as_id.
 */
uint64_t memslot_generation(struct memslot_vm *vm, unsigned int as_id);

/* ---- views: one consistent layout per read section ------------------ */

struct memslot_view;

/**
 * memslot_view_get() - pin the active layout of an address space
 * @vm: the VM
 * @as_id: address space (clamped speculation-safely)
 *
 * Every lookup, walk and translation made through the view sees one
 * layout: the whole old one or the whole new one of any change or
 * transaction, never a mix, however many changes are published meanwhile
 * (KVM's kvm_memslots() taken once).  Calls that take the VM instead of a
 * view load the active layout again each time.
 * Context: inside a read section; the view stays valid until that
 * section's matching unlock.
 * Return: the view, or NULL for an out-of-range @as_id.
 */
struct memslot_view *memslot_view_get(struct memslot_vm *vm,
				      unsigned int as_id);

/**
 * memslot_view_generation() - the generation of the layout a view shows
 * @view: a view
 *
 * Changes when anything in the address space changes; a VMM-side
 * translation cache tags its entries with it.  Bit 63 is set while the
 * blocking swap that published this layout waits for older readers.
 * Context: inside the read section the view came from.
 * Return: the generation.
 */
uint64_t memslot_view_generation(const struct memslot_view *view);

/**
 * memslot_view_as_id() - the address space a view belongs to
 * @view: a view
 *
 * Return: the address space id.
 */
unsigned int memslot_view_as_id(const struct memslot_view *view);

/**
 * memslot_view_gfn_to_slot() - the slot containing @gfn, via the set-wide
 *	last-used cache of the view's layout
 * @view: a view
 * @gfn: guest frame number
 *
 * Context: inside the read section the view came from.
 * Return: the slot (INVALID slots included), or NULL.
 */
const struct memslot_slot *memslot_view_gfn_to_slot(struct memslot_view *view,
						    uint64_t gfn);

/**
 * memslot_view_search() - as memslot_search(), on a view
 * @view: a view
 * @gfn: guest frame number
 * @approx: see memslot_search()
 *
 * Context: inside the read section the view came from.
 * Return: the slot, or NULL.
 */
const struct memslot_slot *memslot_view_search(const struct memslot_view *view,
					       uint64_t gfn, bool approx);

/**
 * memslot_view_id_to_slot() - the slot with id @id in a view
 * @view: a view
 * @id: slot id
 *
 * Context: inside the read section the view came from.
 * Return: the slot, or NULL.
 */
const struct memslot_slot *memslot_view_id_to_slot(
	const struct memslot_view *view, uint32_t id);

/**
 * memslot_view_gfn_to_hva() - lookup (set-wide cache) and translation
 * @view: a view
 * @gfn: guest frame number
 * @write: the access is a write
 * @hva: receives the host virtual address
 *
 * Context: inside the read section the view came from.
 * Return: as memslot_slot_gfn_to_hva().
 */
int memslot_view_gfn_to_hva(struct memslot_view *view, uint64_t gfn,
			    bool write, uint64_t *hva);

/* ---- lookups: call inside a read section --------------------------- */

/**
 * memslot_gfn_to_slot() - the slot containing @gfn, via the set-wide cache
 * @vm: the VM
 * @as_id: address space (clamped speculation-safely)
 * @gfn: guest frame number
 *
 * Tries the set's last-used slot first and updates it on a hit elsewhere.
 * INVALID slots are found too.
 * Context: inside a read section.
 * Return: the slot, or NULL (no slot contains @gfn, or bad @as_id).
 */
const struct memslot_slot *memslot_gfn_to_slot(struct memslot_vm *vm,
					       unsigned int as_id,
					       uint64_t gfn);

/**
 * memslot_search() - search the index only, never touching the cache
 * @vm: the VM
 * @as_id: address space
 * @gfn: guest frame number
 * @approx: with no containing slot, return the slot just below the hole,
 *	or the lowest slot when @gfn is below every slot
 *
 * Context: inside a read section.
 * Return: the slot, or NULL.
 */
const struct memslot_slot *memslot_search(struct memslot_vm *vm,
					  unsigned int as_id, uint64_t gfn,
					  bool approx);

/**
 * memslot_id_to_slot() - the slot with id @id in the active set
 * @vm: the VM
 * @as_id: address space
 * @id: slot id
 *
 * Context: inside a read section (or on the writer thread).
 * Return: the slot, or NULL.
 */
const struct memslot_slot *memslot_id_to_slot(struct memslot_vm *vm,
					      unsigned int as_id, uint32_t id);

/**
 * memslot_slot_gfn_to_hva() - translate @gfn inside @slot
 * @slot: a slot from a lookup, or NULL
 * @gfn: guest frame number
 * @write: the access is a write
 * @hva: receives the host virtual address of the page
 *
 * The page offset is clamped speculation-safely before it forms an address.
 * Return: 0; -ENOENT if @slot is NULL or does not contain @gfn; -EFAULT if
 * @slot is INVALID; -EROFS for a write to a READONLY slot.
 */
int memslot_slot_gfn_to_hva(const struct memslot_slot *slot, uint64_t gfn,
			    bool write, uint64_t *hva);

/**
 * memslot_gfn_to_hva() - lookup (set-wide cache) and translation in one
 * @vm: the VM
 * @as_id: address space
 * @gfn: guest frame number
 * @write: the access is a write
 * @hva: receives the host virtual address
 *
 * Context: inside a read section.
 * Return: as memslot_slot_gfn_to_hva().
 */
int memslot_gfn_to_hva(struct memslot_vm *vm, unsigned int as_id,
		       uint64_t gfn, bool write, uint64_t *hva);

/*
 * ---- slot accessors ------------------------------------------------------
 * @slot: a slot from a lookup, still reachable (same read section, or the
 * writer thread); not NULL.  Slot objects never change: a change makes a
 * new one.
 */

/**
 * memslot_slot_base_gfn() - first guest frame of @slot
 * @slot: the slot
 *
 * Return: the gfn.
 */
uint64_t memslot_slot_base_gfn(const struct memslot_slot *slot);

/**
 * memslot_slot_npages() - size of @slot in pages
 * @slot: the slot
 *
 * Return: the page count.
 */
uint64_t memslot_slot_npages(const struct memslot_slot *slot);

/**
 * memslot_slot_hva() - host virtual address of @slot's first page
 * @slot: the slot
 *
 * Return: the hva.
 */
uint64_t memslot_slot_hva(const struct memslot_slot *slot);

/**
 * memslot_slot_flags() - flags of @slot
 * @slot: the slot
 *
 * Return: MEMSLOT_MEM_* flags plus MEMSLOT_INVALID.
 */
uint32_t memslot_slot_flags(const struct memslot_slot *slot);

/**
 * memslot_slot_id() - id of @slot within its address space
 * @slot: the slot
 *
 * Return: the id, without the address space bits.
 */
uint32_t memslot_slot_id(const struct memslot_slot *slot);

/**
 * memslot_slot_as_id() - address space of @slot
 * @slot: the slot
 *
 * Return: the address space.
 */
unsigned int memslot_slot_as_id(const struct memslot_slot *slot);

/**
 * memslot_slot_user_data() - the user data @slot was created with
 * @slot: the slot
 *
 * Return: memslot_region.user_data of the request that created it.
 */
void *memslot_slot_user_data(const struct memslot_slot *slot);

/**
 * memslot_slot_region() - the request that would recreate @slot
 * @vm: the VM @slot belongs to; its id_bits encode the slot argument
 * @slot: the slot
 * @region: receives slot, flags (user bits only), addresses and user data
 *
 * @vm must be the VM whose lookup returned @slot: the library does not
 * check it, and another VM's id_bits would encode a different slot
 * argument (the addresses would still be right).
 * Context: inside the read section @slot came from, or on the writer.
 */
void memslot_slot_region(const struct memslot_vm *vm,
			 const struct memslot_slot *slot,
			 struct memslot_region *region);

/* ---- iterators: stack objects, used inside one read section ---------- */

/**
 * struct memslot_gfn_iter - ascending walk over slots intersecting a range
 *
 * All fields are private.
 */
struct memslot_gfn_iter {
	const void *priv_node[MEMSLOT_ITER_DEPTH];
	uint8_t priv_pos[MEMSLOT_ITER_DEPTH];
	int priv_depth;
	uint64_t priv_end;
	const struct memslot_slot *priv_next;
};

/**
 * memslot_gfn_iter_init() - start a walk over [@start, @end) in @as_id
 * @it: iterator on the caller's stack
 * @vm: the VM
 * @as_id: address space; an out-of-range one yields nothing
 * @start: first gfn
 * @end: gfn after the last; an empty or reversed range yields nothing
 *
 * Yields exactly the slots whose gfn range intersects [@start, @end), in
 * ascending gfn order.  [0, UINT64_MAX) walks every slot.
 * Context: inside a read section held until the walk ends.
 */
void memslot_gfn_iter_init(struct memslot_gfn_iter *it, struct memslot_vm *vm,
			   unsigned int as_id, uint64_t start, uint64_t end);

/**
 * memslot_view_gfn_iter_init() - as memslot_gfn_iter_init(), on a view
 * @it: iterator on the caller's stack
 * @view: a view
 * @start: first gfn
 * @end: gfn after the last
 *
 * Context: inside the read section the view came from.
 */
void memslot_view_gfn_iter_init(struct memslot_gfn_iter *it,
				const struct memslot_view *view,
				uint64_t start, uint64_t end);

/**
 * memslot_gfn_iter_next() - the next slot of the walk
 * @it: the iterator
 *
 * Return: a slot, or NULL at the end.
 */
const struct memslot_slot *memslot_gfn_iter_next(struct memslot_gfn_iter *it);

/**
 * struct memslot_hva_hit - one slot whose hva range meets the query
 * @slot: the slot
 * @hva_start: max(query start, slot hva)
 * @hva_end: min(query end, slot hva end)
 * @gfn_start: first gfn whose page meets the query
 * @gfn_end: gfn after the last such page (a partly covered page counts)
 */
struct memslot_hva_hit {
	const struct memslot_slot *slot;
	uint64_t hva_start;
	uint64_t hva_end;
	uint64_t gfn_start;
	uint64_t gfn_end;
};

/**
 * struct memslot_hva_iter - walk over slots whose hva range meets a range
 *
 * All fields are private.
 */
struct memslot_hva_iter {
	const void *priv_node[MEMSLOT_ITER_DEPTH];
	uint8_t priv_pos[MEMSLOT_ITER_DEPTH];
	int priv_depth;
	unsigned int priv_as;
	uint64_t priv_start;
	uint64_t priv_end;
	struct memslot_vm *priv_vm;
	const void *priv_tree;
};

/**
 * memslot_hva_iter_init() - start a walk over slots meeting [@start, @end)
 * @it: iterator on the caller's stack
 * @vm: the VM
 * @start: first hva
 * @end: hva after the last; an empty or reversed range yields nothing
 *
 * Visits every address space in turn and, inside one, slots in ascending
 * order of hva start; aliased slots are all visited.
 * Context: inside a read section held until the walk ends.
 */
void memslot_hva_iter_init(struct memslot_hva_iter *it, struct memslot_vm *vm,
			   uint64_t start, uint64_t end);

/**
 * memslot_view_hva_iter_init() - walk one view's slots meeting [@start, @end)
 * @it: iterator on the caller's stack
 * @view: a view; only its address space is walked
 * @start: first hva
 * @end: hva after the last; an empty or reversed range yields nothing
 *
 * Context: inside the read section the view came from.
 */
void memslot_view_hva_iter_init(struct memslot_hva_iter *it,
				const struct memslot_view *view,
				uint64_t start, uint64_t end);

/**
 * memslot_hva_iter_next() - the next hit of the walk
 * @it: the iterator
 * @hit: receives the hit
 *
 * Return: true with @hit filled, false at the end.
 */
bool memslot_hva_iter_next(struct memslot_hva_iter *it,
			   struct memslot_hva_hit *hit);

/* ---- per-vCPU cache -------------------------------------------------- */

/**
 * memslot_vcpu_create() - a lookup cache for one vCPU thread
 * @vm: the VM
 * @out: receives the cache
 *
 * Context: any thread; takes no lock.  The cache must be destroyed before
 * the VM.
 * Return: 0; -EINVAL for a NULL argument; -ENOMEM.
 */
int memslot_vcpu_create(struct memslot_vm *vm, struct memslot_vcpu **out);

/**
 * memslot_vcpu_destroy() - free a vCPU cache
 * @vcpu: the cache, or NULL
 */
void memslot_vcpu_destroy(struct memslot_vcpu *vcpu);

/**
 * memslot_vcpu_gfn_to_slot() - the slot containing @gfn, via the vCPU cache
 * @vcpu: the cache; owned by the calling thread
 * @as_id: address space (clamped speculation-safely)
 * @gfn: guest frame number
 *
 * A hit costs no atomic, no lock and no store to shared memory.  The cache
 * is dropped when the active generation changes (any slot change, or a
 * switch of address space); a miss searches without touching the set-wide
 * cache and caches only a hit.
 * Context: inside a read section, on the thread that owns @vcpu.
 * Return: the slot, or NULL.
 */
const struct memslot_slot *memslot_vcpu_gfn_to_slot(struct memslot_vcpu *vcpu,
						    unsigned int as_id,
						    uint64_t gfn);

/**
 * memslot_vcpu_view_gfn_to_slot() - as memslot_vcpu_gfn_to_slot(), on a view
 * @vcpu: the cache; owned by the calling thread
 * @view: a view from the same VM
 * @gfn: guest frame number
 *
 * The cache entry is checked against the view's generation, so the slot
 * returned always belongs to @view's layout.
 * Context: inside the read section the view came from, on the thread that
 * owns @vcpu.
 * Return: the slot, or NULL.
 */
const struct memslot_slot *memslot_vcpu_view_gfn_to_slot(
	struct memslot_vcpu *vcpu, const struct memslot_view *view,
	uint64_t gfn);

/* ---- writer-side queries -------------------------------------------- */

/**
 * struct memslot_stats - counts for one address space
 * @used_ids: slots present
 * @free_user_ids: user ids not in use
 * @total_pages: pages over all slots
 * @bytes: bytes the VM holds from its allocator (all address spaces)
 */
struct memslot_stats {
	uint64_t used_ids;
	uint64_t free_user_ids;
	uint64_t total_pages;
	uint64_t bytes;
};

/**
 * memslot_vm_stats() - counts of ids, pages and memory
 * @vm: the VM
 * @as_id: address space
 * @stats: receives the counts
 *
 * Context: any thread outside a read section; takes the writer lock.
 * Return: 0; -EINVAL for a NULL argument or a bad @as_id; -EDEADLK when
 * called inside a read section or a hook.
 */
int memslot_vm_stats(struct memslot_vm *vm, unsigned int as_id,
		     struct memslot_stats *stats);

/**
 * memslot_lowest_free_id() - the lowest user id with no slot, in O(log n)
 * @vm: the VM
 * @as_id: address space
 * @id: receives the id
 *
 * Context: as memslot_vm_stats().
 * Return: 0; -EINVAL for a NULL argument or a bad @as_id; -ENOSPC when
 * every user id is used; -EDEADLK inside a read section or a hook.
 */
int memslot_lowest_free_id(struct memslot_vm *vm, unsigned int as_id,
			   uint32_t *id);

#ifdef __cplusplus
}
#endif

#include <memslot/notifier.h>
#include <memslot/dirty.h>

#endif /* MEMSLOT_MEMSLOT_H */
