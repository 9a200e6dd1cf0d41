/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page logging: the bitmaps of logging slots, marking, and KVM's
 * KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG with their verdicts and check
 * order (virt/kvm/kvm_main.c: kvm_get_dirty_log_protect(),
 * kvm_clear_dirty_log_protect()).
 *
 * Marks are lock-free atomic ORs from reader threads.  Harvests hold the
 * writer lock (KVM's slots_lock), so the slot they found by id, and its
 * bitmap, stay alive; each word is snapshot and cleared by one atomic
 * read-modify-write, so a mark racing a harvest lands in it or in the
 * next one.
 */
#include <errno.h>
#include <string.h>

#include "vm.h"

#define WORD_BITS 64

static uint64_t nwords(uint64_t npages)
{
	return memslot_dirty_bitmap_bytes(npages) / 8;
}

/* Bits [lo, hi) of a word, 0 <= lo < hi <= 64. */
static uint64_t bits(unsigned int lo, unsigned int hi)
{
	uint64_t upto = hi == WORD_BITS ? ~0ull : (1ull << hi) - 1;

	return upto & ~((1ull << lo) - 1);
}

int dirty_alloc(struct mem_alloc *a, struct memslot_slot *s, bool all_set)
{
	uint64_t bytes = memslot_dirty_bitmap_bytes(s->npages);
	uint64_t n = nwords(s->npages);

	if (bytes > SIZE_MAX)
		return -ENOMEM;
	s->dirty = mem_zalloc(a, (size_t)bytes);
	if (!s->dirty)
		return -ENOMEM;
	if (!all_set)
		return 0;
	/* Only the slot's own pages: bits beyond it never read as dirty. */
	for (uint64_t i = 0; i + 1 < n; i++)
		atomic_init(&s->dirty[i], ~0ull);
	atomic_init(&s->dirty[n - 1],
		    bits(0, (unsigned int)((s->npages - 1) % WORD_BITS) + 1));
	return 0;
}

void dirty_free(struct mem_alloc *a, struct memslot_slot *s)
{
	if (!s->dirty)
		return;
	mem_free(a, (void *)s->dirty,
		 (size_t)memslot_dirty_bitmap_bytes(s->npages));
	s->dirty = NULL;
}

/* ---- marking ------------------------------------------------------------ */

void slot_mark_dirty(const struct memslot_slot *slot, uint64_t first_page,
		     uint64_t npages)
{
	_Atomic uint64_t *map = slot->dirty;
	uint64_t end;

	if (!map || (slot->flags & MEMSLOT_INVALID) ||
	    first_page >= slot->npages || !npages)
		return;
	end = npages > slot->npages - first_page ? slot->npages
						  : first_page + npages;
	/* Word-batched: every bit of one word in one atomic OR. */
	while (first_page < end) {
		uint64_t w = first_page / WORD_BITS;
		uint64_t stop = (w + 1) * WORD_BITS < end ? (w + 1) * WORD_BITS
							  : end;
		unsigned int lo = (unsigned int)(first_page % WORD_BITS);

		w = memslot_array_index_nospec(w, nwords(slot->npages));
		atomic_fetch_or_explicit(&map[w],
			bits(lo, lo + (unsigned int)(stop - first_page)),
			memory_order_relaxed);
		first_page = stop;
	}
}

void memslot_slot_mark_page_dirty(const struct memslot_slot *slot,
				  uint64_t gfn)
{
	if (slot)
		dirty_mark_gfn(slot, gfn);
}

void memslot_slot_mark_range_dirty(const struct memslot_slot *slot,
				   uint64_t gfn, uint64_t npages)
{
	uint64_t first;

	if (!slot || !npages)
		return;
	/* Clip [gfn, gfn + npages) to the slot, without wrapping. */
	if (gfn < slot->base_gfn) {
		if (npages <= slot->base_gfn - gfn)
			return;
		npages -= slot->base_gfn - gfn;
		gfn = slot->base_gfn;
	}
	first = gfn - slot->base_gfn;
	slot_mark_dirty(slot, first, npages);
}

void memslot_mark_page_dirty(struct memslot_vm *vm, unsigned int as_id,
			     uint64_t gfn)
{
	const struct memslot_slot *slot = memslot_gfn_to_slot(vm, as_id, gfn);

	if (slot)
		dirty_mark_gfn(slot, gfn);
}

void memslot_view_mark_page_dirty(struct memslot_view *view, uint64_t gfn)
{
	const struct memslot_slot *slot = memslot_view_gfn_to_slot(view, gfn);

	if (slot)
		dirty_mark_gfn(slot, gfn);
}

/* ---- VM mode and hook ----------------------------------------------------- */

int memslot_vm_enable_manual_protect(struct memslot_vm *vm, uint64_t flags)
{
	/* As KVM: INITIALLY_SET is only allowed together with ENABLE. */
	uint64_t allowed = MEMSLOT_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
	int r;

	if (flags & MEMSLOT_DIRTY_LOG_MANUAL_PROTECT_ENABLE)
		allowed |= MEMSLOT_DIRTY_LOG_INITIALLY_SET;
	if (!vm || (flags & ~allowed))
		return -EINVAL;
	r = vm_writer_lock(vm);
	if (r)
		return r;
	vm->dirty.manual = flags;
	vm_writer_unlock(vm);
	return 0;
}

int memslot_vm_set_dirty_protect(struct memslot_vm *vm,
				 void (*protect)(void *ctx,
						 const struct memslot_slot *slot,
						 uint64_t offset, uint64_t mask),
				 void *ctx)
{
	int r;

	if (!vm)
		return -EINVAL;
	r = vm_writer_lock(vm);
	if (r)
		return r;
	vm->dirty.protect = protect;
	vm->dirty.ctx = ctx;
	vm_writer_unlock(vm);
	return 0;
}

/* ---- harvest ---------------------------------------------------------------- */

/* The id and address-space check of KVM's dirty-log ioctls. */
static int decode_user_slot(const struct memslot_vm *vm, uint32_t arg,
			    unsigned int *as_id, uint32_t *id)
{
	const struct memslot_config *cfg = &vm->cfg;
	uint64_t a = arg;

	*id = cfg->id_bits >= 32 ? arg
				 : (uint32_t)(a & ((1ull << cfg->id_bits) - 1));
	*as_id = cfg->id_bits >= 32 ? 0 : (unsigned int)(a >> cfg->id_bits);
	return *as_id >= vm->nr_as || *id >= cfg->user_slots ? -EINVAL : 0;
}

/* The slot with a bitmap, or -ENOENT.  Context: writer lock held. */
static int find_logging(struct memslot_vm *vm, unsigned int as_id,
			uint32_t id, struct memslot_slot **out)
{
	struct memslot_slot *s = set_find_id(vm_active(vm, as_id), id);

	if (!s || !s->dirty)
		return -ENOENT;
	*out = s;
	return 0;
}

/* Lock, decode, find: the start every harvest call shares. */
static int begin(struct memslot_vm *vm, uint32_t arg,
		 struct memslot_slot **out)
{
	unsigned int as_id;
	uint32_t id;
	int r;

	if (!vm)
		return -EINVAL;
	r = decode_user_slot(vm, arg, &as_id, &id);
	if (r)
		return r;
	r = vm_writer_lock(vm);
	if (r)
		return r;
	r = find_logging(vm, as_id, id, out);
	if (r)
		vm_writer_unlock(vm);
	return r;
}

static void protect(struct memslot_vm *vm, const struct memslot_slot *s,
		    uint64_t offset, uint64_t mask)
{
	if (mask && vm->dirty.protect)
		vm->dirty.protect(vm->dirty.ctx, s, offset, mask);
}

/* Snapshot and clear words [w0, w0 + n) into @out; return the pages. */
static uint64_t take_words(struct memslot_vm *vm, const struct memslot_slot *s,
			   uint64_t w0, uint64_t n, uint64_t *out)
{
	uint64_t pages = 0;

	for (uint64_t i = 0; i < n; i++) {
		_Atomic uint64_t *p = &s->dirty[w0 + i];
		/* A clean word costs a load: no atomic, no store to it. */
		uint64_t w = atomic_load_explicit(p, memory_order_relaxed);

		if (w) {
			w = atomic_exchange_explicit(p, 0, memory_order_acq_rel);
			pages += (uint64_t)__builtin_popcountll(w);
			protect(vm, s, (w0 + i) * WORD_BITS, w);
		}
		out[i] = w;
	}
	return pages;
}

int memslot_get_dirty_log(struct memslot_vm *vm, uint32_t slot,
			  uint64_t *bitmap)
{
	struct memslot_slot *s;
	uint64_t n;
	int r = begin(vm, slot, &s);

	if (r)
		return r;
	n = nwords(s->npages);
	if (!bitmap) {
		r = -EFAULT;
	} else if (vm->dirty.manual) {
		/* Manual protect: the VMM clears with memslot_clear_dirty_log. */
		for (uint64_t i = 0; i < n; i++)
			bitmap[i] = atomic_load_explicit(&s->dirty[i],
							 memory_order_relaxed);
	} else {
		take_words(vm, s, 0, n, bitmap);
	}
	vm_writer_unlock(vm);
	return r;
}

/* KVM_CLEAR_DIRTY_LOG's range rules, checked after the slot is found. */
static bool range_ok(const struct memslot_slot *s, uint64_t first,
		     uint64_t num)
{
	if (first > s->npages || num > s->npages - first)
		return false;
	return num == s->npages - first || !(num % WORD_BITS);
}

/* The checks clear and harvest share, in KVM's order. */
static int begin_range(struct memslot_vm *vm, uint32_t arg, uint64_t first,
		       uint64_t num, const void *bitmap,
		       struct memslot_slot **out)
{
	unsigned int as_id;
	uint32_t id;
	int r;

	if (!vm)
		return -EINVAL;
	r = decode_user_slot(vm, arg, &as_id, &id);
	if (r || (first % WORD_BITS))
		return -EINVAL;
	r = vm_writer_lock(vm);
	if (r)
		return r;
	r = find_logging(vm, as_id, id, out);
	if (!r && !range_ok(*out, first, num))
		r = -EINVAL;
	if (!r && !bitmap && num)
		r = -EFAULT;
	if (r)
		vm_writer_unlock(vm);
	return r;
}

int memslot_clear_dirty_log(struct memslot_vm *vm, uint32_t slot,
			    uint64_t first_page, uint64_t num_pages,
			    const uint64_t *bitmap)
{
	struct memslot_slot *s;
	uint64_t w0 = first_page / WORD_BITS;
	int r = begin_range(vm, slot, first_page, num_pages, bitmap, &s);

	if (r)
		return r;
	for (uint64_t i = 0; i < nwords(num_pages); i++) {
		uint64_t mask = bitmap[i];

		if (!mask)
			continue;
		/* Report only what was set and is now clear: never bits
		 * beyond the slot, whatever the caller passed. */
		mask &= atomic_fetch_and_explicit(&s->dirty[w0 + i], ~mask,
						  memory_order_acq_rel);
		protect(vm, s, (w0 + i) * WORD_BITS, mask);
	}
	vm_writer_unlock(vm);
	return 0;
}

int64_t memslot_dirty_harvest(struct memslot_vm *vm, uint32_t slot,
			      uint64_t first_page, uint64_t num_pages,
			      uint64_t *bitmap)
{
	struct memslot_slot *s;
	uint64_t pages;
	int r = begin_range(vm, slot, first_page, num_pages, bitmap, &s);

	if (r)
		return r;
	pages = take_words(vm, s, first_page / WORD_BITS, nwords(num_pages),
			   bitmap);
	vm_writer_unlock(vm);
	return (int64_t)pages;
}

int memslot_dirty_count(struct memslot_vm *vm, uint32_t slot,
			uint64_t *count)
{
	struct memslot_slot *s;
	uint64_t c = 0;
	int r = begin(vm, slot, &s);

	if (r)
		return r;
	for (uint64_t i = 0; count && i < nwords(s->npages); i++)
		c += (uint64_t)__builtin_popcountll(
			atomic_load_explicit(&s->dirty[i], memory_order_relaxed));
	vm_writer_unlock(vm);
	if (!count)
		return -EFAULT;
	*count = c;
	return 0;
}

int memslot_dirty_merge(struct memslot_vm *vm, uint32_t slot,
			const uint64_t *bitmap)
{
	struct memslot_slot *s;
	uint64_t n, tail;
	int r = begin(vm, slot, &s);

	if (r)
		return r;
	n = nwords(s->npages);
	tail = bits(0, (unsigned int)((s->npages - 1) % WORD_BITS) + 1);
	for (uint64_t i = 0; bitmap && i < n; i++) {
		uint64_t w = i + 1 == n ? bitmap[i] & tail : bitmap[i];

		if (w)
			atomic_fetch_or_explicit(&s->dirty[i], w,
						 memory_order_relaxed);
	}
	vm_writer_unlock(vm);
	return bitmap ? 0 : -EFAULT;
}

int memslot_vm_dirty_stats(struct memslot_vm *vm, unsigned int as_id,
			   struct memslot_dirty_stats *stats)
{
	struct bpt_iter it;
	struct memslot_slot *s;
	int r;

	if (!vm || !stats || as_id >= vm->nr_as)
		return -EINVAL;
	r = vm_writer_lock(vm);
	if (r)
		return r;
	memset(stats, 0, sizeof(*stats));
	bpt_iter_seek_le(&it, &vm_active(vm, as_id)->ids, 0);
	while ((s = bpt_iter_next(&it))) {
		if (!s->dirty)
			continue;
		stats->logging_slots++;
		stats->bitmap_bytes += memslot_dirty_bitmap_bytes(s->npages);
	}
	vm_writer_unlock(vm);
	return 0;
}

/* ---- iterating a bitmap ------------------------------------------------------ */

void memslot_dirty_iter_init(struct memslot_dirty_iter *it,
			     const uint64_t *bitmap, uint64_t npages)
{
	it->priv_words = bitmap;
	it->priv_npages = npages;
	it->priv_nwords = nwords(npages);
	it->priv_index = 0;
	it->priv_word = it->priv_nwords ? bitmap[0] : 0;
}

bool memslot_dirty_iter_next(struct memslot_dirty_iter *it, uint64_t *page)
{
	uint64_t p;

	/* Skip clean words: one load each. */
	while (!it->priv_word) {
		if (++it->priv_index >= it->priv_nwords)
			return false;
		it->priv_word = it->priv_words[it->priv_index];
	}
	p = it->priv_index * WORD_BITS +
	    (uint64_t)__builtin_ctzll(it->priv_word);
	it->priv_word &= it->priv_word - 1;
	if (p >= it->priv_npages) {
		it->priv_index = it->priv_nwords;
		it->priv_word = 0;
		return false;
	}
	*page = p;
	return true;
}
