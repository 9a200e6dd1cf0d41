/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page logging: the bitmaps of logging slots, marking, and KVM's
 * KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG with their verdicts and check
 * order (virt/kvm/kvm_main.c: kvm_get_dirty_log_protect(),
 * kvm_clear_dirty_log_protect()).
 *
 * Marks are lock-free atomic ORs from reader threads into the live half
 * of a slot's bitmap.  Harvests hold the writer lock (KVM's slots_lock),
 * so the slot they found by id, and its bitmap, stay alive.  A harvest of
 * a whole large slot switches the live half and waits one grace period;
 * then no mark can reach the old half, which is copied and cleared with
 * plain stores.  Partial ranges, small slots, CLEAR and merge work on the
 * live half with one atomic read-modify-write per word.  Either way a
 * mark racing a harvest lands in it or in the next one.
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

/*
 * Whole-slot harvests of at least this many words (2^18 pages) switch
 * halves; smaller ones take the atomic path.  The break-even: a grace
 * period with registered readers costs about 10-100 us on the development
 * machine, a locked exchange about 9 ns per dirty word, so a fully dirty
 * slot of this size costs about as much either way, and bigger slots gain.
 */
#define DIRTY_FLIP_WORDS 4096

/*
 * A bitmap half as plain memory, for the moments no marker can reach it
 * (freeing it, and the quiet half after a flip): mem_free(), memcpy() and
 * memset() take plain pointers, and no conversion drops _Atomic without a
 * cast.
 */
static void *words_plain(_Atomic uint64_t *w)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcast-qual"
	return (void *)w;
#pragma GCC diagnostic pop
}

uint64_t dirty_alloc_bytes(uint64_t npages)
{
	return 2 * memslot_dirty_bitmap_bytes(npages);
}

int dirty_alloc(struct mem_alloc *a, struct memslot_slot *s, bool all_set)
{
	uint64_t bytes = dirty_alloc_bytes(s->npages);
	uint64_t n = nwords(s->npages);

	if (bytes > SIZE_MAX)
		return -ENOMEM;
	s->dirty = mem_zalloc(a, (size_t)bytes);
	if (!s->dirty)
		return -ENOMEM;
	atomic_init(&s->dirty_live, s->dirty);
	s->mark_npages = s->npages;
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
	mem_free(a, words_plain(s->dirty), (size_t)dirty_alloc_bytes(s->npages));
	dirty_detach(s);
}

/* ---- marking ------------------------------------------------------------ */

void slot_mark_dirty(const struct memslot_slot *slot, uint64_t first_page,
		     uint64_t npages)
{
	uint64_t n = slot->mark_npages, end;
	_Atomic uint64_t *map;

	if (first_page >= n || !npages)
		return;
	end = npages > n - first_page ? n : first_page + npages;
	map = atomic_load_explicit(&slot->dirty_live, memory_order_acquire);
	/* Word-batched: every bit of one word in one atomic OR. */
	while (first_page < end) {
		uint64_t w = first_page / WORD_BITS;
		uint64_t stop = (w + 1) * WORD_BITS < end ? (w + 1) * WORD_BITS
							  : end;
		unsigned int lo = (unsigned int)(first_page % WORD_BITS);

		w = memslot_array_index_nospec(w, nwords(n));
		/* Release, as dirty_mark_offset() says why. */
		atomic_fetch_or_explicit(&map[w],
			bits(lo, lo + (unsigned int)(stop - first_page)),
			memory_order_release);
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

/* The half marks go to now.  Context: writer lock held (only a harvest
 * under it switches halves). */
static _Atomic uint64_t *live(const struct memslot_slot *s)
{
	return atomic_load_explicit(&s->dirty_live, memory_order_relaxed);
}

/* Snapshot and clear live words [w0, w0 + n) into @out, one atomic
 * exchange per dirty word; return the pages. */
static uint64_t take_words(struct memslot_vm *vm, const struct memslot_slot *s,
			   uint64_t w0, uint64_t n, uint64_t *out)
{
	_Atomic uint64_t *map = live(s);
	uint64_t pages = 0;

	for (uint64_t i = 0; i < n; i++) {
		_Atomic uint64_t *p = &map[w0 + i];
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

/* Whether a whole-slot harvest of @s switches halves. */
static bool flips(const struct memslot_vm *vm, const struct memslot_slot *s)
{
	uint64_t min = vm->dirty.flip_words ? vm->dirty.flip_words
					    : DIRTY_FLIP_WORDS;

	return nwords(s->npages) >= min;
}

/*
 * Send marks to the other half, which is clean, and wait one grace
 * period: every mark runs inside a read section, so afterwards no mark
 * writes the old half, and the old half holds every mark made before the
 * switch.  Return: the old half.  Context: writer lock held.
 */
static void *flip(struct memslot_vm *vm, struct memslot_slot *s)
{
	_Atomic uint64_t *old = live(s);
	_Atomic uint64_t *next = old == s->dirty ? s->dirty + nwords(s->npages)
						 : s->dirty;

	/* Release: the clearing of @next comes before any mark into it. */
	atomic_store_explicit(&s->dirty_live, next, memory_order_release);
	vm->rcu.synchronize(vm->rcu.ctx);
	return words_plain(old);
}

/*
 * Copy the quiet half @q into @out and clear it, as memcpy and memset:
 * no marker can reach it.  Then, only if asked, count the pages and call
 * the hook for each nonzero word.  Return: the pages (0 if not counted).
 */
static uint64_t take_quiet(struct memslot_vm *vm, const struct memslot_slot *s,
			   void *q, uint64_t *out, bool count)
{
	uint64_t n = nwords(s->npages), pages = 0;

	memcpy(out, q, (size_t)n * 8);
	memset(q, 0, (size_t)n * 8);
	if (!count && !vm->dirty.protect)
		return 0;
	for (uint64_t i = 0; i < n; i++) {
		if (!out[i])
			continue;
		pages += (uint64_t)__builtin_popcountll(out[i]);
		protect(vm, s, i * WORD_BITS, out[i]);
	}
	return pages;
}

/* Snapshot and clear all of @s into @out; return the pages if @count. */
static uint64_t take_all(struct memslot_vm *vm, struct memslot_slot *s,
			 uint64_t *out, bool count)
{
	if (flips(vm, s))
		return take_quiet(vm, s, flip(vm, s), out, count);
	return take_words(vm, s, 0, nwords(s->npages), out);
}

int memslot_get_dirty_log(struct memslot_vm *vm, uint32_t slot,
			  uint64_t *bitmap)
{
	struct memslot_slot *s;
	_Atomic uint64_t *map;
	int r = begin(vm, slot, &s);

	if (r)
		return r;
	map = live(s);
	if (!bitmap) {
		r = -EFAULT;
	} else if (vm->dirty.manual) {
		/* Manual protect: the VMM clears with memslot_clear_dirty_log. */
		/* Acquire: pairs with the marks' release. */
		for (uint64_t i = 0; i < nwords(s->npages); i++)
			bitmap[i] = atomic_load_explicit(&map[i],
							 memory_order_acquire);
	} else {
		take_all(vm, s, bitmap, false);
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
		mask &= atomic_fetch_and_explicit(&live(s)[w0 + i], ~mask,
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
	if (!first_page && num_pages == s->npages)
		pages = take_all(vm, s, bitmap, true);
	else
		pages = take_words(vm, s, first_page / WORD_BITS,
				   nwords(num_pages), bitmap);
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
			atomic_load_explicit(&live(s)[i], memory_order_relaxed));
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
			atomic_fetch_or_explicit(&live(s)[i], w,
						 memory_order_release);
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
		stats->bitmap_bytes += dirty_alloc_bytes(s->npages);
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
