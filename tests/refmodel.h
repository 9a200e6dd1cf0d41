/* SPDX-License-Identifier: MIT */
/*
 * A reference model of one VM's slots, written from KVM's rules
 * (shared/kvm-semantics.md) and nothing else: plain arrays, linear scans,
 * no trees, no caches, no sharing with lib/.  The differential tests and
 * the fuzzer run the same operations on it and on libmemslot and compare.
 *
 * The model holds no global state and never aborts; the profile is passed
 * to every call that needs it, so a model is plain data and can be copied
 * (a transaction is applied to a copy and kept only if it succeeds).
 */
#ifndef MEMSLOT_TESTS_REFMODEL_H
#define MEMSLOT_TESTS_REFMODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <memslot/memslot.h>

/**
 * struct ref_slot - one slot of the model
 * @as_id: address space
 * @id: slot id
 * @base_gfn: first gfn
 * @npages: number of pages (never 0)
 * @hva: host virtual address of the first page
 * @flags: MEMSLOT_MEM_* bits as the request gave them
 * @user_data: the create request's user data
 * @gmem_offset: guest_memfd offset of a GUEST_MEMFD slot, else 0
 * @gmem_fd: guest_memfd descriptor of a GUEST_MEMFD slot, else 0
 * @dirty: with LOG_DIRTY_PAGES, one byte per page (1 = dirty), else NULL
 */
struct ref_slot {
	unsigned int as_id;
	uint32_t id;
	uint64_t base_gfn;
	uint64_t npages;
	uint64_t hva;
	uint32_t flags;
	void *user_data;
	uint64_t gmem_offset;
	uint32_t gmem_fd;
	unsigned char *dirty;
};

/**
 * struct ref_as - the slots of one address space, in no particular order
 * @slots: array of @nslots slots (capacity @cap)
 * @nslots: slots present
 * @cap: allocated entries
 * @generation: what memslot_generation() must return for this space
 */
struct ref_as {
	struct ref_slot *slots;
	size_t nslots;
	size_t cap;
	uint64_t generation;
};

/**
 * struct ref_model - the model of one VM
 * @nr_as: number of address spaces
 * @as: @nr_as address spaces
 * @last_change: what the last successful ref_set_region() did
 *	(MEMSLOT_CHANGE_NONE for a no-op or a failure)
 * @deferred: model memslot_set_regions_deferred(): no INVALID phase, so
 *	a change refused by rule 17 leaves the generation alone
 * @manual: MEMSLOT_DIRTY_LOG_* mode bits
 */
struct ref_model {
	unsigned int nr_as;
	struct ref_as *as;
	enum memslot_change last_change;
	bool deferred;
	uint64_t manual;
};

/**
 * struct ref_hva_hit - one slot met by an hva range query
 * @as_id: address space of the slot
 * @id: slot id
 * @hva_start: max(query start, slot hva)
 * @hva_end: min(query end, slot hva end)
 * @gfn_start: first gfn whose page meets the query
 * @gfn_end: gfn after the last such page
 */
struct ref_hva_hit {
	unsigned int as_id;
	uint32_t id;
	uint64_t hva_start;
	uint64_t hva_end;
	uint64_t gfn_start;
	uint64_t gfn_end;
};

/**
 * ref_model_init() - an empty model for @cfg
 * @m: model to fill
 * @cfg: the profile (only nr_as is read here)
 *
 * Generations start at the address space's number, as the library's do.
 * Return: 0 or -ENOMEM.
 */
int ref_model_init(struct ref_model *m, const struct memslot_config *cfg);

/**
 * ref_model_free() - free a model's arrays
 * @m: the model; may be zeroed or already freed
 */
void ref_model_free(struct ref_model *m);

/**
 * ref_model_copy() - deep copy of @src into @dst (which must be unused)
 * @dst: receives the copy
 * @src: the model
 *
 * Return: 0 or -ENOMEM.
 */
int ref_model_copy(struct ref_model *dst, const struct ref_model *src);

/**
 * ref_region_split() - address space and id of a request's slot argument
 * @cfg: the profile (id_bits)
 * @slot: the request's slot field
 * @as_id: receives the address space
 * @id: receives the id
 */
void ref_region_split(const struct memslot_config *cfg, uint32_t slot,
		      unsigned int *as_id, uint32_t *id);

/**
 * ref_find() - the slot with @id in @as_id
 * @m: the model
 * @as_id: address space (out of range gives NULL)
 * @id: slot id
 *
 * Return: the slot or NULL.
 */
const struct ref_slot *ref_find(const struct ref_model *m, unsigned int as_id,
				uint32_t id);

/**
 * ref_set_region() - apply one KVM_SET_USER_MEMORY_REGION request
 * @m: the model
 * @cfg: the profile
 * @region: the request
 * @internal: the request comes through memslot_set_internal_region()
 * @rule: if not NULL, receives the deciding rule
 *
 * Checks the rules in KVM's order; on success applies the change and
 * advances the address space's generation (CREATE and FLAGS_ONLY by nr_as,
 * DELETE and MOVE by 2 * nr_as).  A MOVE that fails the max-gfn check still
 * advances it by 2 * nr_as (the INVALID copy was published and reverted).
 * Return: 0, -EINVAL, -EEXIST or -ENOMEM (model arrays only).
 */
int ref_set_region(struct ref_model *m, const struct memslot_config *cfg,
		   const struct memslot_region *region, bool internal,
		   enum memslot_rule *rule);

/**
 * ref_set_regions() - apply a transaction as memslot_set_regions() must
 * @m: the model
 * @cfg: the profile
 * @regions: the requests, user path
 * @n: number of requests (0 does nothing)
 * @failed: receives the index of the failing request (0 on success)
 * @rule: receives the deciding rule (MEMSLOT_RULE_OK on success)
 *
 * Applies the requests one by one to a copy of @m, each checked as
 * ref_set_region() checks it against the layout the earlier ones left; a
 * request that passes rules 1-10 but names another address space than the
 * first fails with rule 8 (MEMSLOT_RULE_AS_ID).  On
 * failure the copy is dropped and @m is untouched (generation included).
 * On success the copy replaces @m and the generation of the address space
 * advances once for the net change: 2 * nr_as if a slot was deleted, moved
 * or replaced (deleted and created again with another size, hva, READONLY
 * bit or user data), nr_as if slots were only created or changed flags, 0
 * if nothing changed.
 * Return: as ref_set_region().
 */
int ref_set_regions(struct ref_model *m, const struct memslot_config *cfg,
		    const struct memslot_region *regions, size_t n,
		    size_t *failed, enum memslot_rule *rule);

/**
 * ref_search() - the slot containing @gfn, or with @approx a neighbour
 * @m: the model
 * @as_id: address space
 * @gfn: guest frame number
 * @approx: with no containing slot, the slot with the greatest base below
 *	@gfn, or the lowest slot when every slot lies above @gfn
 *
 * Return: the slot, or NULL.
 */
const struct ref_slot *ref_search(const struct ref_model *m,
				  unsigned int as_id, uint64_t gfn,
				  bool approx);

/**
 * ref_gfn_range() - the slots intersecting [@start, @end), ascending
 * @m: the model
 * @as_id: address space
 * @start: first gfn
 * @end: gfn after the last
 * @out: receives the first @max of them in gfn order (as a walk of the
 *	library yields them)
 * @max: entries in @out
 *
 * Return: the number of intersecting slots (may exceed @max).
 */
size_t ref_gfn_range(const struct ref_model *m, unsigned int as_id,
		     uint64_t start, uint64_t end,
		     const struct ref_slot **out, size_t max);

/**
 * ref_hva_range() - the slots whose hva range meets [@start, @end)
 * @m: the model
 * @cfg: the profile (page size)
 * @start: first hva
 * @end: hva after the last
 * @out: receives up to @max hits, address space 0 first; within one
 *	address space in array order (compare as sets)
 * @max: entries in @out
 *
 * Return: the number of hits (may exceed @max).
 */
size_t ref_hva_range(const struct ref_model *m,
		     const struct memslot_config *cfg, uint64_t start,
		     uint64_t end, struct ref_hva_hit *out, size_t max);

/**
 * ref_gfn_to_hva() - translate @gfn as memslot_gfn_to_hva() must
 * @m: the model
 * @cfg: the profile (page size)
 * @as_id: address space
 * @gfn: guest frame number
 * @write: the access is a write
 * @hva: receives the address on success
 *
 * Return: 0; -ENOENT with no slot; -EROFS for a write to a READONLY slot.
 */
int ref_gfn_to_hva(const struct ref_model *m, const struct memslot_config *cfg,
		   unsigned int as_id, uint64_t gfn, bool write,
		   uint64_t *hva);

/**
 * ref_total_pages() - pages over every slot of @as_id
 * @m: the model
 * @as_id: address space
 *
 * Return: the sum (wraps like the u64 it is).
 */
uint64_t ref_total_pages(const struct ref_model *m, unsigned int as_id);

/*
 * Dirty logging, from KVM's rules: a slot gets a fresh bitmap (all ones
 * with INITIALLY_SET) when it is created logging or logging is turned on;
 * a MOVE or FLAGS_ONLY that keeps logging keeps it; turning logging off or
 * deleting drops it.  A transaction follows its net change: a slot that
 * ends with the same size, hva, READONLY bit and user data, and logged
 * before and after, keeps its bits.
 */

/**
 * ref_enable_manual_protect() - KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
 * @m: the model
 * @flags: MEMSLOT_DIRTY_LOG_* bits
 *
 * Return: 0, or -EINVAL for bits KVM refuses (INITIALLY_SET needs ENABLE).
 */
int ref_enable_manual_protect(struct ref_model *m, uint64_t flags);

/**
 * ref_mark() - mark @gfn of @as_id dirty if a logging slot holds it
 * @m: the model
 * @as_id: address space (out of range marks nothing)
 * @gfn: guest frame number
 */
void ref_mark(struct ref_model *m, unsigned int as_id, uint64_t gfn);

/**
 * ref_get_dirty_log() - KVM_GET_DIRTY_LOG
 * @m: the model
 * @cfg: the profile
 * @slot: the slot argument
 * @bitmap: receives ceil(npages / 64) words
 *
 * Return: 0; -EINVAL (address space, id >= user_slots); -ENOENT (no slot
 * or no bitmap); -EFAULT for NULL @bitmap.
 */
int ref_get_dirty_log(struct ref_model *m, const struct memslot_config *cfg,
		      uint32_t slot, uint64_t *bitmap);

/**
 * ref_clear_dirty_log() - KVM_CLEAR_DIRTY_LOG
 * @m: the model
 * @cfg: the profile
 * @slot: the slot argument
 * @first_page: first page
 * @num_pages: pages
 * @bitmap: bit i clears page @first_page + i
 *
 * Return: 0, -EINVAL, -ENOENT or -EFAULT in KVM's order.
 */
int ref_clear_dirty_log(struct ref_model *m, const struct memslot_config *cfg,
			uint32_t slot, uint64_t first_page, uint64_t num_pages,
			const uint64_t *bitmap);

#endif /* MEMSLOT_TESTS_REFMODEL_H */
