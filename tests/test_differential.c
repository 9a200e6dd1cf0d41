/* SPDX-License-Identifier: MIT */
/*
 * Differential tests: seeded random sequences of set-region requests and
 * transactions, valid and invalid, applied both to libmemslot and to the
 * reference model in tests/refmodel.c.  After every request the verdict
 * (errno and rule) and the generations must agree; the layout and every
 * kind of lookup are compared after every request while the layout is
 * small, and every CHECK_EVERY requests once it is large.
 *
 * MEMSLOT_DIFF_OPS=<n> sets the requests per sequence (default 3000), for
 * long runs.  A failure prints the seed and the request number;
 * MEMSLOT_DIFF_TRACE=1 also prints every request with the model's verdict.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <memslot/access.h>
#include <memslot/memslot.h>

#include "common.h"
#include "refmodel.h"

#define DEFAULT_OPS 3000
/* Layouts up to this many slots are compared after every request. */
#define SMALL_LAYOUT 64
#define CHECK_EVERY 50
#define MAX_HITS 4096
#define MAX_TXN 5
/* A logging slot's bitmap is real memory, in KVM and here: requests keep
 * LOG_DIRTY_PAGES only on slots up to this many pages. */
#define LOG_MAX_PAGES 4096
#define LOG_WORDS (LOG_MAX_PAGES / 64)

/**
 * struct diff - one sequence: the library, the model and the generator
 * @cfg: the profile both follow
 * @vm: the library's VM
 * @m: the model
 * @rng: generator state
 * @seed: the seed, for failure messages
 * @op: number of the current request
 * @id_span: ids are mostly drawn below this
 * @gfn_span: guest addresses are mostly drawn below this many pages
 * @hva_window: base of the small hva window where aliasing is frequent
 * @window_pages: pages in that window
 * @next_data: user data for the next create (never repeats)
 * @hits: scratch for the model's hva hits
 * @stat: verdicts seen, indexed by rule, to show the mix is useful
 */
struct diff {
	struct memslot_config cfg;
	struct memslot_vm *vm;
	/* One vCPU cache for the whole run: its entry outlives changes, so
	 * the checks also cover its generation drop and refill. */
	struct memslot_vcpu *vcpu;
	struct ref_model m;
	uint64_t rng;
	uint64_t seed;
	unsigned long op;
	uint32_t id_span;
	uint64_t gfn_span;
	uint64_t hva_window;
	uint64_t window_pages;
	uintptr_t next_data;
	struct ref_hva_hit hits[MAX_HITS];
	unsigned long stat[MEMSLOT_RULE_COUNT];
	unsigned long txns_ok;
	unsigned long txns_failed;
	unsigned long dirty_gets;	/* successful GETs with a bit set */
	bool locked;
	bool deferred;		/* user changes through the deferred call */
};

static void diff_lock(struct diff *d)
{
	memslot_read_lock(d->vm);
	d->locked = true;
}

/* Also called on failure: cmocka leaves the test by longjmp, and a read
 * section left open would make every later write fail with -EBUSY. */
static void diff_unlock(struct diff *d)
{
	if (d->locked)
		memslot_read_unlock(d->vm);
	d->locked = false;
}

/* Fails the test with the sequence's coordinates. */
#define DIFF_FAIL(d, ...)                                                    \
	do {                                                                 \
		diff_unlock(d);                                              \
		print_error("seed %" PRIu64 " op %lu: ", (d)->seed, (d)->op); \
		fail_msg(__VA_ARGS__);                                       \
	} while (0)

#define DIFF_EQ(d, a, b, what)                                               \
	do {                                                                 \
		uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);              \
		if (a_ != b_)                                                \
			DIFF_FAIL(d, "%s: library %#" PRIx64                 \
				  " model %#" PRIx64, what, a_, b_);         \
	} while (0)

static uint64_t page_size(const struct diff *d)
{
	return 1ull << d->cfg.page_shift;
}

static uint64_t pick(struct diff *d, uint64_t n)
{
	return tc_rng_below(&d->rng, n);
}

static bool chance(struct diff *d, unsigned int percent)
{
	return pick(d, 100) < percent;
}

/* ---- generating requests ------------------------------------------------ */

static uint32_t encode_slot(const struct diff *d, unsigned int as_id,
			    uint32_t id)
{
	if (d->cfg.id_bits >= 32)
		return id;
	return (uint32_t)as_id << d->cfg.id_bits |
	       (id & ((1u << d->cfg.id_bits) - 1));
}

static uint32_t id_mask(const struct diff *d)
{
	return d->cfg.id_bits >= 32 ? UINT32_MAX : (1u << d->cfg.id_bits) - 1;
}

/* Mostly small ids; sometimes one at an edge of a limit. */
static uint32_t pick_id(struct diff *d)
{
	const uint32_t edges[] = {
		d->cfg.user_slots - 1, d->cfg.user_slots, d->cfg.total_slots - 1,
		d->cfg.total_slots, id_mask(d), 0,
	};

	if (chance(d, 94))
		return (uint32_t)pick(d, d->id_span);
	return edges[pick(d, sizeof(edges) / sizeof(edges[0]))] & id_mask(d);
}

static unsigned int pick_as(struct diff *d)
{
	if (chance(d, 97) || d->cfg.id_bits >= 32)
		return (unsigned int)pick(d, d->cfg.nr_as);
	return d->cfg.nr_as + (unsigned int)pick(d, 3);
}

static uint32_t pick_flags(struct diff *d)
{
	switch (pick(d, 20)) {
	case 0: case 1: case 2:
		return MEMSLOT_MEM_LOG_DIRTY_PAGES;
	case 3: case 4: case 5:
		return MEMSLOT_MEM_READONLY;
	case 6:
		return MEMSLOT_MEM_READONLY | MEMSLOT_MEM_LOG_DIRTY_PAGES;
	case 7:
		return 1u << pick(d, 32);
	case 8:
		return MEMSLOT_MEM_GUEST_MEMFD | (uint32_t)pick(d, 4);
	default:
		return 0;
	}
}

/* guest_memfd fields: set whatever the flags, as a VMM might; mostly
 * aligned offsets, sometimes unaligned or near the top of u64. */
static void pick_gmem(struct diff *d, struct memslot_region *r)
{
	uint64_t p = page_size(d);

	r->guest_memfd = (uint32_t)pick(d, 4);
	switch (pick(d, 10)) {
	case 0:
		r->guest_memfd_offset = 1 + pick(d, p - 1);
		break;
	case 1:
		r->guest_memfd_offset = (0 - p * (1 + pick(d, 4))) & ~(p - 1);
		break;
	default:
		r->guest_memfd_offset = pick(d, 64) * p;
		break;
	}
}

/* A size in bytes: mostly a few pages, sometimes at a limit or wild. */
static uint64_t pick_size(struct diff *d)
{
	uint64_t p = page_size(d), maxp = d->cfg.max_pages;
	uint64_t cap = UINT64_MAX >> d->cfg.page_shift;

	switch (pick(d, 25)) {
	case 0:
		return (maxp < cap ? maxp : cap) << d->cfg.page_shift;
	case 1:
		return (maxp < cap ? maxp + 1 : cap) << d->cfg.page_shift;
	case 2:
		return tc_rng(&d->rng) & ~(p - 1);
	case 3:
		return (1 + pick(d, 8)) * p + 1 + pick(d, p - 1);
	case 4:
		return (1ull << (32 + pick(d, 20))) & ~(p - 1);
	case 5:
		return 0;
	default:
		return (1 + pick(d, 8)) * p;
	}
}

static uint64_t pick_gpa(struct diff *d, uint64_t size)
{
	uint64_t p = page_size(d), npages = size >> d->cfg.page_shift;
	uint64_t top = d->cfg.max_gfn + 1 - (npages ? npages : 1);

	switch (pick(d, 30)) {
	case 0:
		return (1 + pick(d, d->gfn_span)) * p + 1 + pick(d, p - 1);
	case 1:	/* ends at or beyond 2^64 */
		return (0 - size + p * pick(d, 3)) & ~(p - 1);
	case 2: /* around the last gfn the MMU allows */
		if (d->cfg.max_gfn >= UINT64_MAX >> d->cfg.page_shift)
			return pick(d, d->gfn_span) * p;
		return (top + pick(d, 3) - 1) << d->cfg.page_shift;
	case 3:
		return tc_rng(&d->rng) & ~(p - 1);
	default:
		return pick(d, d->gfn_span) * p;
	}
}

static uint64_t pick_hva(struct diff *d, uint64_t size)
{
	uint64_t p = page_size(d), limit = d->cfg.hva_limit;

	switch (pick(d, 20)) {
	case 0: case 1: case 2: case 3:
		return pick(d, (limit >> d->cfg.page_shift) - 1) * p;
	case 4:	/* the highest aligned start that still fits, or one above */
		if (size > limit)
			return 0;
		return ((limit - size) & ~(p - 1)) + p * pick(d, 2);
	case 5:
		return d->hva_window + 1 + pick(d, p - 1);
	case 6:
		return 0;
	default:
		return d->hva_window + pick(d, d->window_pages) * p;
	}
}

static void random_region(struct diff *d, unsigned int as_id,
			  struct memslot_region *r)
{
	memset(r, 0, sizeof(*r));
	r->slot = encode_slot(d, as_id, pick_id(d));
	r->flags = pick_flags(d);
	r->memory_size = pick_size(d);
	r->guest_phys_addr = pick_gpa(d, r->memory_size);
	r->userspace_addr = pick_hva(d, r->memory_size);
	r->user_data = (void *)d->next_data++;
	pick_gmem(d, r);
}

/* A random slot of the model, or NULL when @as_id has none. */
static const struct ref_slot *pick_slot(struct diff *d, unsigned int as_id)
{
	const struct ref_as *as = &d->m.as[as_id];

	if (!as->nslots)
		return NULL;
	return &as->slots[pick(d, as->nslots)];
}

static void slot_region(struct diff *d, const struct ref_slot *s,
			struct memslot_region *r)
{
	r->slot = encode_slot(d, s->as_id, s->id);
	r->flags = s->flags;
	r->guest_phys_addr = s->base_gfn << d->cfg.page_shift;
	r->memory_size = s->npages << d->cfg.page_shift;
	r->userspace_addr = s->hva;
	r->user_data = (void *)d->next_data++;
	r->guest_memfd_offset = s->gmem_offset;
	r->guest_memfd = s->gmem_fd;
}

/* A move: elsewhere, onto its own range shifted a little, or far away. */
static void move_target(struct diff *d, const struct ref_slot *s,
			struct memslot_region *r)
{
	uint64_t shift = pick(d, 2 * s->npages + 2);

	if (chance(d, 40)) {
		uint64_t gfn = s->base_gfn + shift - s->npages - 1;

		/* The shift may leave the slot in place (a no-op), or wrap
		 * (an invalid gpa): both are worth sending. */
		r->guest_phys_addr = gfn << d->cfg.page_shift;
	} else {
		r->guest_phys_addr = pick_gpa(d, r->memory_size);
	}
	if (chance(d, 20))
		r->flags ^= MEMSLOT_MEM_LOG_DIRTY_PAGES;
}

/* A request derived from an existing slot: delete, move, flags, no-op,
 * or a forbidden modification. */
static bool slot_request(struct diff *d, unsigned int as_id,
			 struct memslot_region *r)
{
	const struct ref_slot *s = pick_slot(d, as_id);

	if (!s)
		return false;
	slot_region(d, s, r);
	switch (pick(d, 12)) {
	case 0: case 1:
		r->memory_size = 0;
		break;
	case 2: case 3: case 4: case 5:
		move_target(d, s, r);
		break;
	case 6: case 7:
		r->flags ^= MEMSLOT_MEM_LOG_DIRTY_PAGES;
		break;
	case 8:
		r->flags ^= chance(d, 50) ? MEMSLOT_MEM_READONLY
					  : MEMSLOT_MEM_GUEST_MEMFD;
		break;
	case 9:
		break;
	case 10:
		r->memory_size += page_size(d) * (1 + pick(d, 2));
		break;
	default:
		r->userspace_addr += page_size(d);
		break;
	}
	return true;
}

static void any_request(struct diff *d, unsigned int as_id,
			struct memslot_region *r)
{
	if (chance(d, 45) && slot_request(d, as_id, r))
		return;
	random_region(d, as_id, r);
	/* Keep most creates valid enough to build a layout. */
	if (chance(d, 60)) {
		r->flags &= MEMSLOT_MEM_LOG_DIRTY_PAGES | MEMSLOT_MEM_READONLY;
		if (d->cfg.guest_memfd && chance(d, 25)) {
			r->flags = MEMSLOT_MEM_GUEST_MEMFD;
			r->guest_memfd_offset &= ~(page_size(d) - 1);
		}
		r->memory_size = (1 + pick(d, 8)) << d->cfg.page_shift;
		r->guest_phys_addr = pick(d, d->gfn_span) << d->cfg.page_shift;
	}
}

/* ---- comparing the library with the model ------------------------------- */

static void region_matches(struct diff *d, const struct memslot_region *r,
			   const struct ref_slot *s, const char *what);

static void check_slot(struct diff *d, const struct memslot_slot *ls,
		       const struct ref_slot *rs, const char *what)
{
	struct memslot_region r;

	if (!rs) {
		if (ls)
			DIFF_FAIL(d, "%s: library found slot %u, model none",
				  what, memslot_slot_id(ls));
		return;
	}
	if (!ls)
		DIFF_FAIL(d, "%s: library found none, model slot %u", what,
			  rs->id);
	DIFF_EQ(d, memslot_slot_id(ls), rs->id, what);
	DIFF_EQ(d, memslot_slot_as_id(ls), rs->as_id, what);
	DIFF_EQ(d, memslot_slot_base_gfn(ls), rs->base_gfn, what);
	DIFF_EQ(d, memslot_slot_npages(ls), rs->npages, what);
	DIFF_EQ(d, memslot_slot_hva(ls), rs->hva, what);
	DIFF_EQ(d, memslot_slot_flags(ls), rs->flags, what);
	DIFF_EQ(d, (uintptr_t)memslot_slot_user_data(ls),
		(uintptr_t)rs->user_data, what);
	memslot_slot_region(d->vm, ls, &r);
	region_matches(d, &r, rs, what);
}

static void check_gfn_range(struct diff *d, unsigned int as_id,
			    uint64_t start, uint64_t end)
{
	const struct ref_slot *want[MAX_HITS];
	struct memslot_gfn_iter it;
	const struct memslot_slot *s;
	size_t n, i = 0;

	n = ref_gfn_range(&d->m, as_id, start, end, want, MAX_HITS);
	if (n > MAX_HITS)
		DIFF_FAIL(d, "gfn range: %zu hits, raise MAX_HITS", n);
	memslot_gfn_iter_init(&it, d->vm, as_id, start, end);
	while ((s = memslot_gfn_iter_next(&it))) {
		if (i >= n)
			DIFF_FAIL(d, "gfn range [%#" PRIx64 ", %#" PRIx64
				  "): extra slot %u", start, end,
				  memslot_slot_id(s));
		check_slot(d, s, want[i++], "gfn range");
	}
	DIFF_EQ(d, i, n, "gfn range count");
}

static int cmp_hit(const void *a, const void *b)
{
	const struct ref_hva_hit *x = a, *y = b;

	if (x->as_id != y->as_id)
		return x->as_id < y->as_id ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

/* Library hits, converted to the model's form, kept in visiting order. */
static size_t lib_hva_hits(struct diff *d, uint64_t start, uint64_t end,
			   struct ref_hva_hit *out)
{
	struct memslot_hva_iter it;
	struct memslot_hva_hit hit;
	uint64_t prev_hva = 0;
	unsigned int prev_as = 0;
	size_t n = 0;

	memslot_hva_iter_init(&it, d->vm, start, end);
	while (memslot_hva_iter_next(&it, &hit)) {
		unsigned int as_id = memslot_slot_as_id(hit.slot);
		uint64_t hva = memslot_slot_hva(hit.slot);

		if (n >= MAX_HITS)
			DIFF_FAIL(d, "hva range: too many hits");
		/* Address spaces in order, ascending hva start inside one. */
		if (n && (as_id < prev_as || (as_id == prev_as && hva < prev_hva)))
			DIFF_FAIL(d, "hva range: visiting order");
		out[n++] = (struct ref_hva_hit){
			.as_id = as_id, .id = memslot_slot_id(hit.slot),
			.hva_start = hit.hva_start, .hva_end = hit.hva_end,
			.gfn_start = hit.gfn_start, .gfn_end = hit.gfn_end,
		};
		prev_as = as_id;
		prev_hva = hva;
	}
	return n;
}

static void check_hva_range(struct diff *d, uint64_t start, uint64_t end)
{
	static struct ref_hva_hit got[MAX_HITS];
	size_t n, want;

	want = ref_hva_range(&d->m, &d->cfg, start, end, d->hits, MAX_HITS);
	if (want > MAX_HITS)
		DIFF_FAIL(d, "hva range: %zu hits, raise MAX_HITS", want);
	n = lib_hva_hits(d, start, end, got);
	DIFF_EQ(d, n, want, "hva range count");
	qsort(got, n, sizeof(got[0]), cmp_hit);
	qsort(d->hits, want, sizeof(d->hits[0]), cmp_hit);
	for (size_t i = 0; i < n; i++) {
		DIFF_EQ(d, got[i].as_id, d->hits[i].as_id, "hva hit as");
		DIFF_EQ(d, got[i].id, d->hits[i].id, "hva hit id");
		DIFF_EQ(d, got[i].hva_start, d->hits[i].hva_start,
			"hva hit hva_start");
		DIFF_EQ(d, got[i].hva_end, d->hits[i].hva_end, "hva hit hva_end");
		DIFF_EQ(d, got[i].gfn_start, d->hits[i].gfn_start,
			"hva hit gfn_start");
		DIFF_EQ(d, got[i].gfn_end, d->hits[i].gfn_end, "hva hit gfn_end");
	}
}

static void check_gfn(struct diff *d, unsigned int as_id, uint64_t gfn)
{
	uint64_t lib_hva = 0, ref_hva = 0;
	int lib_ret, ref_ret;

	check_slot(d, memslot_gfn_to_slot(d->vm, as_id, gfn),
		   ref_search(&d->m, as_id, gfn, false), "gfn_to_slot");
	check_slot(d, memslot_search(d->vm, as_id, gfn, false),
		   ref_search(&d->m, as_id, gfn, false), "search");
	check_slot(d, memslot_search(d->vm, as_id, gfn, true),
		   ref_search(&d->m, as_id, gfn, true), "search approx");
	check_slot(d, memslot_vcpu_gfn_to_slot(d->vcpu, as_id, gfn),
		   ref_search(&d->m, as_id, gfn, false), "vcpu gfn_to_slot");
	for (int write = 0; write < 2; write++) {
		ref_ret = ref_gfn_to_hva(&d->m, &d->cfg, as_id, gfn, write,
					 &ref_hva);
		lib_ret = memslot_gfn_to_hva(d->vm, as_id, gfn, write, &lib_hva);
		DIFF_EQ(d, lib_ret, ref_ret, "gfn_to_hva result");
		if (!ref_ret)
			DIFF_EQ(d, lib_hva, ref_hva, "gfn_to_hva address");
		lib_ret = memslot_vcpu_gfn_to_hva(d->vcpu, as_id, gfn, write,
						  &lib_hva);
		DIFF_EQ(d, lib_ret, ref_ret, "vcpu gfn_to_hva result");
		if (!ref_ret)
			DIFF_EQ(d, lib_hva, ref_hva, "vcpu gfn_to_hva address");
	}
}

/* Every slot of @as_id, in gfn order, and each by id. */
static void check_layout(struct diff *d, unsigned int as_id)
{
	const struct ref_as *as = &d->m.as[as_id];

	check_gfn_range(d, as_id, 0, UINT64_MAX);
	for (size_t i = 0; i < as->nslots; i++) {
		const struct ref_slot *s = &as->slots[i];

		check_slot(d, memslot_id_to_slot(d->vm, as_id, s->id), s,
			   "id_to_slot");
		check_gfn(d, as_id, s->base_gfn);
		check_gfn(d, as_id, s->base_gfn + s->npages - 1);
		check_gfn(d, as_id, s->base_gfn + s->npages);
		check_gfn(d, as_id, s->base_gfn - 1);
	}
	for (int i = 0; i < 4; i++) {
		uint32_t id = pick_id(d);

		check_slot(d, memslot_id_to_slot(d->vm, as_id, id),
			   ref_find(&d->m, as_id, id), "id_to_slot absent");
	}
}

static uint32_t ref_lowest_free(const struct diff *d, unsigned int as_id)
{
	uint32_t id = 0;

	while (ref_find(&d->m, as_id, id))
		id++;
	return id;
}

static void check_stats(struct diff *d, unsigned int as_id)
{
	const struct ref_as *as = &d->m.as[as_id];
	struct memslot_stats st;
	uint64_t user_used = 0;
	uint32_t id = UINT32_MAX;

	for (size_t i = 0; i < as->nslots; i++)
		user_used += as->slots[i].id < d->cfg.user_slots;
	assert_int_equal(memslot_vm_stats(d->vm, as_id, &st), 0);
	DIFF_EQ(d, st.used_ids, as->nslots, "stats used_ids");
	DIFF_EQ(d, st.free_user_ids, d->cfg.user_slots - user_used,
		"stats free_user_ids");
	DIFF_EQ(d, st.total_pages, ref_total_pages(&d->m, as_id),
		"stats total_pages");
	assert_int_equal(memslot_lowest_free_id(d->vm, as_id, &id), 0);
	DIFF_EQ(d, id, ref_lowest_free(d, as_id), "lowest free id");
}

static uint64_t random_gfn(struct diff *d)
{
	if (chance(d, 10))
		return tc_rng(&d->rng) >> pick(d, 64);
	return pick(d, d->gfn_span + 16);
}

static uint64_t random_hva(struct diff *d)
{
	if (chance(d, 70))
		return d->hva_window + pick(d, (d->window_pages + 4) *
						  page_size(d));
	return tc_rng(&d->rng) % d->cfg.hva_limit;
}

static void check_queries(struct diff *d)
{
	for (unsigned int a = 0; a < d->cfg.nr_as; a++) {
		for (int i = 0; i < 8; i++)
			check_gfn(d, a, random_gfn(d));
		for (int i = 0; i < 3; i++) {
			uint64_t s = random_gfn(d), e = s + pick(d, 64);

			check_gfn_range(d, a, s, chance(d, 10) ? UINT64_MAX : e);
		}
	}
	for (int i = 0; i < 4; i++) {
		uint64_t s = random_hva(d);
		uint64_t e = s + pick(d, 8 * page_size(d) + 1);

		check_hva_range(d, s, e < s ? UINT64_MAX : e);
	}
	check_hva_range(d, 0, UINT64_MAX);
}

static void check_all(struct diff *d, bool full)
{
	for (unsigned int a = 0; a < d->cfg.nr_as; a++)
		DIFF_EQ(d, memslot_generation(d->vm, a), d->m.as[a].generation,
			"generation");
	if (!full)
		return;
	diff_lock(d);
	for (unsigned int a = 0; a < d->cfg.nr_as; a++)
		check_layout(d, a);
	check_queries(d);
	diff_unlock(d);
	for (unsigned int a = 0; a < d->cfg.nr_as; a++)
		check_stats(d, a);
}

/* ---- operations --------------------------------------------------------- */

/* MEMSLOT_DIFF_TRACE=1 prints every request and the model's verdict, to
 * turn a failing seed into a minimal case. */
static void trace_region(const struct diff *d, const char *what,
			 const struct memslot_region *r, int ret,
			 enum memslot_rule rule)
{
	static int on = -1;

	if (on < 0)
		on = getenv("MEMSLOT_DIFF_TRACE") != NULL;
	if (!on)
		return;
	fprintf(stderr, "op %lu %s slot %#x flags %#x gpa %#" PRIx64
		" size %#" PRIx64 " hva %#" PRIx64 " -> %d rule %d\n", d->op,
		what, r->slot, r->flags, r->guest_phys_addr, r->memory_size,
		r->userspace_addr, ret, rule);
}

static void log_gate(const struct diff *d, struct memslot_region *r)
{
	if ((r->memory_size >> d->cfg.page_shift) > LOG_MAX_PAGES)
		r->flags &= ~MEMSLOT_MEM_LOG_DIRTY_PAGES;
}

/* One user request through memslot_set_regions_deferred(). */
static int deferred_one(struct diff *d, const struct memslot_region *r,
			enum memslot_rule *rule)
{
	struct memslot_txn_result res = { 0 };
	int ret = memslot_set_regions_deferred(d->vm, r, 1, &res);

	*rule = res.rule;
	return ret;
}

static void do_single(struct diff *d, bool internal)
{
	unsigned int as_id = pick_as(d);
	enum memslot_rule lib_rule = MEMSLOT_RULE_COUNT, ref_rule;
	struct memslot_region r;
	int lib_ret, ref_ret;

	any_request(d, as_id < d->cfg.nr_as ? as_id : 0, &r);
	if (as_id >= d->cfg.nr_as)
		r.slot = encode_slot(d, as_id, r.slot & id_mask(d));
	if (internal && chance(d, 70) && d->cfg.user_slots < d->cfg.total_slots)
		r.slot = encode_slot(d, as_id, d->cfg.user_slots +
			(uint32_t)pick(d, d->cfg.total_slots - d->cfg.user_slots + 1));
	log_gate(d, &r);
	/* Internal slots have no deferred call. */
	d->m.deferred = d->deferred && !internal;
	ref_ret = ref_set_region(&d->m, &d->cfg, &r, internal, &ref_rule);
	trace_region(d, internal ? "internal" : "user", &r, ref_ret, ref_rule);
	if (internal)
		lib_ret = memslot_set_internal_region(d->vm, &r, &lib_rule);
	else if (d->deferred)
		lib_ret = deferred_one(d, &r, &lib_rule);
	else
		lib_ret = memslot_set_region(d->vm, &r, &lib_rule);
	/* The transaction calls report a no-op as OK. */
	if (d->m.deferred && ref_rule == MEMSLOT_RULE_NOOP)
		ref_rule = MEMSLOT_RULE_OK;
	if (lib_ret != ref_ret || lib_rule != ref_rule)
		DIFF_FAIL(d, "%s slot %#x flags %#x gpa %#" PRIx64 " size %#"
			  PRIx64 " hva %#" PRIx64 ": library %d rule %d, "
			  "model %d rule %d", internal ? "internal" : "user",
			  r.slot, r.flags, r.guest_phys_addr, r.memory_size,
			  r.userspace_addr, lib_ret, lib_rule, ref_ret,
			  ref_rule);
	d->stat[ref_rule]++;
}

/* A slot that only a delete and a create can turn @o into. */
static bool replaced(const struct ref_slot *o, const struct ref_slot *n)
{
	return n->npages != o->npages || n->hva != o->hva ||
	       n->user_data != o->user_data || n->gmem_fd != o->gmem_fd ||
	       n->gmem_offset != o->gmem_offset ||
	       ((n->flags ^ o->flags) &
		(MEMSLOT_MEM_READONLY | MEMSLOT_MEM_GUEST_MEMFD));
}

/* The change-list entries the net change of one id needs. */
static size_t id_changes(const struct ref_slot *o, const struct ref_slot *n)
{
	if (!o || !n)
		return o || n;
	if (replaced(o, n))
		return 2;
	return n->base_gfn != o->base_gfn || n->flags != o->flags;
}

static size_t expected_changes(const struct ref_model *before,
			       const struct ref_model *after,
			       unsigned int as_id)
{
	const struct ref_as *b = &before->as[as_id], *a = &after->as[as_id];
	size_t n = 0;

	for (size_t i = 0; i < b->nslots; i++)
		n += id_changes(&b->slots[i],
				ref_find(after, as_id, b->slots[i].id));
	for (size_t i = 0; i < a->nslots; i++)
		n += !ref_find(before, as_id, a->slots[i].id);
	return n;
}

/* @r describes @s exactly (user data included). */
static void region_matches(struct diff *d, const struct memslot_region *r,
			   const struct ref_slot *s, const char *what)
{
	if (!s)
		DIFF_FAIL(d, "%s: the model has no such slot", what);
	DIFF_EQ(d, r->slot, encode_slot(d, s->as_id, s->id), what);
	DIFF_EQ(d, r->flags, s->flags, what);
	DIFF_EQ(d, r->guest_phys_addr, s->base_gfn << d->cfg.page_shift, what);
	DIFF_EQ(d, r->memory_size, s->npages << d->cfg.page_shift, what);
	DIFF_EQ(d, r->userspace_addr, s->hva, what);
	DIFF_EQ(d, (uintptr_t)r->user_data, (uintptr_t)s->user_data, what);
	DIFF_EQ(d, r->guest_memfd_offset, s->gmem_offset, what);
	DIFF_EQ(d, r->guest_memfd, s->gmem_fd, what);
}

/* One entry of the change list against the layouts before and after. */
static void check_change(struct diff *d, const struct memslot_change_info *c,
			 const struct ref_model *before, unsigned int as_id)
{
	const struct memslot_region *r = c->change == MEMSLOT_CHANGE_CREATE ?
					 &c->new_region : &c->old_region;
	const struct ref_slot *o, *n;
	unsigned int a;
	uint32_t id;

	ref_region_split(&d->cfg, r->slot, &a, &id);
	o = ref_find(before, as_id, id);
	n = ref_find(&d->m, as_id, id);
	if (c->change != MEMSLOT_CHANGE_CREATE)
		region_matches(d, &c->old_region, o, "txn change old region");
	if (c->change != MEMSLOT_CHANGE_DELETE)
		region_matches(d, &c->new_region, n, "txn change new region");
	if (c->change == MEMSLOT_CHANGE_DELETE && n && !replaced(o, n))
		DIFF_FAIL(d, "txn DELETE of slot %u that stays", id);
	if (c->change == MEMSLOT_CHANGE_CREATE && o && !replaced(o, n))
		DIFF_FAIL(d, "txn CREATE of slot %u that was there", id);
	if (c->change == MEMSLOT_CHANGE_MOVE &&
	    (replaced(o, n) || o->base_gfn == n->base_gfn))
		DIFF_FAIL(d, "txn MOVE of slot %u is not a move", id);
	if (c->change == MEMSLOT_CHANGE_FLAGS_ONLY &&
	    (replaced(o, n) || o->base_gfn != n->base_gfn || o->flags == n->flags))
		DIFF_FAIL(d, "txn FLAGS_ONLY of slot %u is not one", id);
}

/* The change list: what the model's layouts say changed, in the order
 * DELETE, FLAGS_ONLY, MOVE, CREATE. */
static void check_change_list(struct diff *d,
			      const struct memslot_txn_result *res,
			      const struct ref_model *before, unsigned int as_id)
{
	static const int rank[] = {
		[MEMSLOT_CHANGE_DELETE] = 0, [MEMSLOT_CHANGE_FLAGS_ONLY] = 1,
		[MEMSLOT_CHANGE_MOVE] = 2, [MEMSLOT_CHANGE_CREATE] = 3,
	};
	size_t n = res->nchanges < res->max_changes ? res->nchanges
						      : res->max_changes;

	DIFF_EQ(d, res->nchanges, expected_changes(before, &d->m, as_id),
		"txn change count");
	for (size_t i = 0; i < n; i++) {
		enum memslot_change c = res->changes[i].change;

		if (c < MEMSLOT_CHANGE_CREATE || c > MEMSLOT_CHANGE_FLAGS_ONLY)
			DIFF_FAIL(d, "txn change %zu has kind %d", i, c);
		if (i && rank[c] < rank[res->changes[i - 1].change])
			DIFF_FAIL(d, "txn change list out of order at %zu", i);
		check_change(d, &res->changes[i], before, as_id);
	}
}

/* ---- transactions with a purpose ---------------------------------------- */

/* A gfn well away from the dense part of the layout. */
static uint64_t far_gfn(struct diff *d)
{
	return d->gfn_span + pick(d, 4 * d->gfn_span);
}

/* Delete @s and create it again with another size (a resize). */
static size_t txn_resize(struct diff *d, const struct ref_slot *s,
			 struct memslot_region *r)
{
	uint64_t npages = s->npages > 1 && chance(d, 50) ? s->npages - 1
							 : s->npages + 1 + pick(d, 3);

	slot_region(d, s, &r[0]);
	r[0].memory_size = 0;
	slot_region(d, s, &r[1]);
	r[1].memory_size = npages << d->cfg.page_shift;
	return 2;
}

/* Split @s into itself and a new slot above it. */
static size_t txn_split(struct diff *d, const struct ref_slot *s,
			struct memslot_region *r)
{
	uint64_t k;

	if (s->npages < 2)
		return txn_resize(d, s, r);
	k = 1 + pick(d, s->npages - 1);
	txn_resize(d, s, r);
	r[1].memory_size = k << d->cfg.page_shift;
	slot_region(d, s, &r[2]);
	r[2].slot = encode_slot(d, s->as_id, ref_lowest_free(d, s->as_id));
	r[2].guest_phys_addr += k << d->cfg.page_shift;
	r[2].memory_size -= k << d->cfg.page_shift;
	r[2].userspace_addr += k << d->cfg.page_shift;
	return 3;
}

/* Merge @s and @t into @s over the span of both. */
static size_t txn_merge(struct diff *d, const struct ref_slot *s,
			const struct ref_slot *t, struct memslot_region *r)
{
	uint64_t lo = s->base_gfn < t->base_gfn ? s->base_gfn : t->base_gfn;
	uint64_t hi_s = s->base_gfn + s->npages, hi_t = t->base_gfn + t->npages;
	uint64_t hi = hi_s > hi_t ? hi_s : hi_t;

	slot_region(d, s, &r[0]);
	r[0].memory_size = 0;
	slot_region(d, t, &r[1]);
	r[1].memory_size = 0;
	slot_region(d, s, &r[2]);
	r[2].guest_phys_addr = lo << d->cfg.page_shift;
	r[2].memory_size = (hi - lo) << d->cfg.page_shift;
	return 3;
}

/* @s and @t trade places, through a free spot (KVM order cannot). */
static size_t txn_trade(struct diff *d, const struct ref_slot *s,
			const struct ref_slot *t, struct memslot_region *r)
{
	slot_region(d, t, &r[0]);
	r[0].guest_phys_addr = far_gfn(d) << d->cfg.page_shift;
	slot_region(d, s, &r[1]);
	r[1].guest_phys_addr = t->base_gfn << d->cfg.page_shift;
	slot_region(d, t, &r[2]);
	r[2].guest_phys_addr = s->base_gfn << d->cfg.page_shift;
	return 3;
}

/* Changes that cancel or follow each other on one slot. */
static size_t txn_same_slot(struct diff *d, const struct ref_slot *s,
			    struct memslot_region *r)
{
	for (int i = 0; i < 3; i++)
		slot_region(d, s, &r[i]);
	switch (pick(d, 3)) {
	case 0:	/* flags change, then delete */
		r[0].flags ^= MEMSLOT_MEM_LOG_DIRTY_PAGES;
		r[1].memory_size = 0;
		return 2;
	case 1:	/* move away and back: nothing changes */
		r[0].guest_phys_addr = far_gfn(d) << d->cfg.page_shift;
		return 2;
	default: /* delete and create the same range with a new backing */
		r[0].memory_size = 0;
		return 2;
	}
}

/* A transaction built to succeed more often than random requests do;
 * returns the request count, 0 when the layout offers no slot. */
static size_t shaped_txn(struct diff *d, unsigned int as_id,
			 struct memslot_region *r)
{
	const struct ref_slot *s = pick_slot(d, as_id);
	const struct ref_slot *t = pick_slot(d, as_id);

	if (!s)
		return 0;
	switch (pick(d, 5)) {
	case 0:
		return txn_resize(d, s, r);
	case 1:
		return txn_split(d, s, r);
	case 2:
		return s == t ? txn_same_slot(d, s, r) : txn_merge(d, s, t, r);
	case 3:
		return s == t ? txn_same_slot(d, s, r) : txn_trade(d, s, t, r);
	default:
		return txn_same_slot(d, s, r);
	}
}

/* Random requests in one address space, except now and then one (the
 * transaction call rejects that). */
static size_t random_txn(struct diff *d, unsigned int as_id,
			 struct memslot_region *r)
{
	size_t n = 2 + pick(d, MAX_TXN - 1);

	for (size_t i = 0; i < n; i++) {
		unsigned int a = as_id, ignored;
		uint32_t id;

		any_request(d, as_id, &r[i]);
		if (i && d->cfg.id_bits < 32 && chance(d, 8))
			a = (as_id + 1 + (unsigned int)pick(d, 2)) %
			    (d->cfg.nr_as + 1);
		ref_region_split(&d->cfg, r[i].slot, &ignored, &id);
		r[i].slot = encode_slot(d, a, id);
	}
	return n;
}

static void do_txn(struct diff *d)
{
	unsigned int as_id = (unsigned int)pick(d, d->cfg.nr_as);
	struct memslot_region r[MAX_TXN];
	struct memslot_change_info changes[2 * MAX_TXN];
	struct memslot_txn_result res = {
		.changes = changes, .max_changes = 2 * MAX_TXN,
	};
	size_t n = chance(d, 50) ? shaped_txn(d, as_id, r) : 0, ref_failed;
	enum memslot_rule ref_rule;
	struct ref_model before;
	int lib_ret, ref_ret;

	if (!n)
		n = random_txn(d, as_id, r);
	for (size_t i = 0; i < n; i++)
		log_gate(d, &r[i]);
	assert_int_equal(ref_model_copy(&before, &d->m), 0);
	/* Set here too, not left from the last single request: after an
	 * internal one (never deferred) the model would give a deferred
	 * batch the INVALID phase of a blocking one. */
	d->m.deferred = d->deferred;
	ref_ret = ref_set_regions(&d->m, &d->cfg, r, n, &ref_failed, &ref_rule);
	for (size_t i = 0; i < n; i++)
		trace_region(d, "txn", &r[i], ref_ret, ref_rule);
	lib_ret = d->deferred ? memslot_set_regions_deferred(d->vm, r, n, &res)
			      : memslot_set_regions(d->vm, r, n, &res);
	if (lib_ret != ref_ret || res.rule != ref_rule ||
	    (ref_ret && res.failed != ref_failed)) {
		ref_model_free(&before);
		DIFF_FAIL(d, "txn of %zu: library %d rule %d failed %zu, "
			  "model %d rule %d failed %zu", n, lib_ret, res.rule,
			  res.failed, ref_ret, ref_rule, ref_failed);
	}
	if (!ref_ret)
		check_change_list(d, &res, &before, as_id);
	ref_model_free(&before);
	if (ref_ret)
		d->txns_failed++;
	else
		d->txns_ok++;
}

/* A slot argument for the dirty-log calls: mostly a slot of the model. */
static uint32_t dirty_slot_arg(struct diff *d, unsigned int as_id)
{
	const struct ref_slot *s = pick_slot(d, as_id);

	if (s && chance(d, 85))
		return encode_slot(d, as_id, s->id);
	return encode_slot(d, pick_as(d), pick_id(d));
}

static void dirty_mark(struct diff *d, unsigned int as_id)
{
	const struct ref_slot *s = pick_slot(d, as_id);
	uint64_t gfn = s && chance(d, 90) ? s->base_gfn + pick(d, s->npages + 1)
					  : random_gfn(d);

	ref_mark(&d->m, as_id, gfn);
	memslot_read_lock(d->vm);
	if (chance(d, 50))
		memslot_mark_page_dirty(d->vm, as_id, gfn);
	else
		memslot_vcpu_mark_page_dirty(d->vcpu, as_id, gfn);
	memslot_read_unlock(d->vm);
}

static void dirty_get(struct diff *d, uint32_t arg)
{
	uint64_t lb[LOG_WORDS + 1] = { 0 }, rb[LOG_WORDS + 1] = { 0 };
	int ref = ref_get_dirty_log(&d->m, &d->cfg, arg, rb);
	int lib = memslot_get_dirty_log(d->vm, arg, lb);
	uint64_t any = 0;

	DIFF_EQ(d, lib, ref, "get dirty log verdict");

	for (size_t i = 0; !ref && i <= LOG_WORDS; i++) {
		DIFF_EQ(d, lb[i], rb[i], "get dirty log word");
		any |= rb[i];
	}
	d->dirty_gets += any != 0;
}

static void dirty_clear(struct diff *d, uint32_t arg, uint64_t npages)
{
	uint64_t bm[LOG_WORDS + 2], first, num;

	for (size_t i = 0; i < LOG_WORDS + 2; i++)
		bm[i] = tc_rng(&d->rng) & tc_rng(&d->rng);
	first = chance(d, 80) ? 64 * pick(d, npages / 64 + 2)
			      : pick(d, npages + 2);
	num = first > npages || chance(d, 20) ? pick(d, 130)
		: chance(d, 50) ? npages - first
		: 64 * pick(d, (npages - first) / 64 + 1);
	if (num > 64 * (LOG_WORDS + 2))
		num = 64 * (LOG_WORDS + 2);
	DIFF_EQ(d, memslot_clear_dirty_log(d->vm, arg, first, num, bm),
		ref_clear_dirty_log(&d->m, &d->cfg, arg, first, num, bm),
		"clear dirty log verdict");
}

/* Dirty logging: marks, GET, CLEAR and mode changes on both sides. */
static void do_dirty(struct diff *d)
{
	unsigned int as_id = (unsigned int)pick(d, d->cfg.nr_as);
	uint32_t arg = dirty_slot_arg(d, as_id);
	unsigned int as2;
	uint32_t id;
	const struct ref_slot *s;
	uint64_t flags;

	switch (pick(d, 10)) {
	case 0:
		flags = pick(d, 5);
		DIFF_EQ(d, memslot_vm_enable_manual_protect(d->vm, flags),
			ref_enable_manual_protect(&d->m, flags), "manual protect");
		break;
	case 1: case 2: case 3: case 4:
		for (int i = 0; i < 8; i++)
			dirty_mark(d, as_id);
		break;
	case 5: case 6:
		dirty_get(d, arg);
		break;
	default:
		ref_region_split(&d->cfg, arg, &as2, &id);
		s = ref_find(&d->m, as2, id);
		dirty_clear(d, arg, s ? s->npages : 64);
		dirty_get(d, arg);
		break;
	}
}

static void step(struct diff *d)
{
	unsigned int k = (unsigned int)pick(d, 100);

	if (k < 15)
		do_txn(d);
	else if (k < 30)
		do_dirty(d);
	else
		do_single(d, k < 35);
}

static unsigned long ops_per_run(void)
{
	const char *env = getenv("MEMSLOT_DIFF_OPS");
	unsigned long n = env ? strtoul(env, NULL, 0) : 0;

	return n ? n : DEFAULT_OPS;
}

/**
 * struct diff_params - one configuration of a sequence
 * @unbounded: use the unbounded profile instead of x86-64
 * @guest_memfd: accept MEMSLOT_MEM_GUEST_MEMFD (KVM's v2 call)
 * @deferred: make user changes with memslot_set_regions_deferred()
 * @nr_as: address spaces
 * @id_span: see struct diff
 * @gfn_span: see struct diff
 */
struct diff_params {
	bool unbounded;
	bool guest_memfd;
	bool deferred;
	unsigned int nr_as;
	uint32_t id_span;
	uint64_t gfn_span;
};

static void diff_setup(struct diff *d, const struct diff_params *p,
		       uint64_t seed)
{
	memset(d, 0, sizeof(*d));
	if (p->unbounded)
		memslot_config_init_unbounded(&d->cfg);
	else
		memslot_config_init_x86_64(&d->cfg);
	d->cfg.nr_as = p->nr_as;
	d->cfg.guest_memfd = p->guest_memfd;
	d->cfg.rcu = memslot_rcu_none();
	d->deferred = p->deferred;
	d->seed = seed;
	d->rng = tc_rng_seed(seed);
	d->id_span = p->id_span;
	d->gfn_span = p->gfn_span;
	d->window_pages = 16;
	d->hva_window = 0x10000000ull;
	d->next_data = 0x1000;
	assert_int_equal(memslot_vm_create(&d->cfg, &d->vm), 0);
	assert_int_equal(memslot_vcpu_create(d->vm, &d->vcpu), 0);
	assert_int_equal(ref_model_init(&d->m, &d->cfg), 0);
}

static size_t model_slots(const struct diff *d)
{
	size_t n = 0;

	for (unsigned int a = 0; a < d->m.nr_as; a++)
		n += d->m.as[a].nslots;
	return n;
}

static void run(const struct diff_params *p, uint64_t seed)
{
	static struct diff d;
	unsigned long ops = ops_per_run();

	diff_setup(&d, p, seed);
	check_all(&d, true);
	for (d.op = 1; d.op <= ops; d.op++) {
		step(&d);
		check_all(&d, model_slots(&d) <= SMALL_LAYOUT ||
				      d.op % CHECK_EVERY == 0);
	}
	check_all(&d, true);
	/* A run whose requests all fail, or all succeed, tests little. */
	assert_true(d.stat[MEMSLOT_RULE_OK] > ops / 10);
	assert_true(d.stat[MEMSLOT_RULE_OVERLAP] > 0);
	assert_true(d.txns_ok > 0 && d.txns_failed > 0);
	if (p->guest_memfd) {
		assert_true(d.stat[MEMSLOT_RULE_GMEM_OFFSET] > 0);
		assert_true(d.stat[MEMSLOT_RULE_GMEM_IMMUTABLE] > 0);
	}
	assert_true(d.dirty_gets > 0);
	print_message("seed %" PRIu64 ": %lu ok, %lu overlap, %lu modify, "
		      "%lu noop, %lu max-gfn, %zu slots, txns %lu/%lu, "
		      "%lu dirty GETs\n",
		      seed, d.stat[MEMSLOT_RULE_OK],
		      d.stat[MEMSLOT_RULE_OVERLAP], d.stat[MEMSLOT_RULE_MODIFY],
		      d.stat[MEMSLOT_RULE_NOOP], d.stat[MEMSLOT_RULE_MAX_GFN],
		      model_slots(&d), d.txns_ok, d.txns_failed, d.dirty_gets);
	memslot_vcpu_destroy(d.vcpu);
	memslot_vm_destroy(d.vm);
	ref_model_free(&d.m);
}

/*
 * The model's own promise, which the fuzz target relies on: a range walk
 * cut at @max keeps the first @max slots in gfn order, whatever order the
 * slots were made in.
 */
static void test_model_range_keeps_lowest(void **state)
{
	struct memslot_config cfg;
	struct ref_model m;
	const struct ref_slot *out[8];
	enum memslot_rule rule;

	(void)state;
	memslot_config_init_x86_64(&cfg);
	assert_int_equal(ref_model_init(&m, &cfg), 0);
	for (uint32_t i = 0; i < 20; i++) {
		/* ids 0..19 at gfns 19..0: creation order is gfn order
		 * reversed */
		struct memslot_region r = {
			.slot = i, .guest_phys_addr = (19 - i) * 4096ull,
			.memory_size = 4096, .userspace_addr = 0x100000ull,
		};

		assert_int_equal(ref_set_region(&m, &cfg, &r, false, &rule), 0);
	}
	assert_int_equal(ref_gfn_range(&m, 0, 0, 100, out, 8), 20);
	for (uint64_t k = 0; k < 8; k++)
		assert_int_equal(out[k]->base_gfn, k);
	ref_model_free(&m);
}

static void test_x86_small(void **state)
{
	const struct diff_params p = { false, false, false, 1, 24, 256 };

	(void)state;
	for (uint64_t seed = 1; seed <= 4; seed++)
		run(&p, seed);
}

static void test_x86_two_as(void **state)
{
	const struct diff_params p = { false, false, false, 2, 24, 256 };

	(void)state;
	run(&p, 11);
	run(&p, 12);
}

static void test_unbounded(void **state)
{
	const struct diff_params p = { true, false, false, 1, 40, 1024 };

	(void)state;
	run(&p, 21);
}

/* guest_memfd accepted: offsets checked, GUEST_MEMFD slots immutable. */
static void test_x86_guest_memfd(void **state)
{
	const struct diff_params p = { false, true, false, 1, 24, 256 };

	(void)state;
	run(&p, 41);
	run(&p, 42);
}

/* Every user change deferred: same verdicts, same layouts, generations as
 * blocking except that a refused MOVE has no INVALID phase to undo. */
static void test_x86_deferred(void **state)
{
	const struct diff_params p = { false, false, true, 2, 24, 256 };

	(void)state;
	run(&p, 51);
	run(&p, 52);
}

/* Many slots spread thin: the layout is only compared every few requests. */
static void test_x86_large(void **state)
{
	const struct diff_params p = { false, false, false, 1, 1500, 1u << 16 };

	(void)state;
	run(&p, 31);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_model_range_keeps_lowest),
		cmocka_unit_test(test_x86_small),
		cmocka_unit_test(test_x86_two_as),
		cmocka_unit_test(test_unbounded),
		cmocka_unit_test(test_x86_guest_memfd),
		cmocka_unit_test(test_x86_large),
		cmocka_unit_test(test_x86_deferred),
	};

	return cmocka_run_group_tests_name("differential", tests, NULL, NULL);
}
