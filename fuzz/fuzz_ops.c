/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the input is decoded into a profile and a list of
 * operations (set-region on the user and internal paths, transactions of
 * 2-4 requests, lookups by gfn, approximate search, lookups by id, gfn and
 * hva range walks, vCPU cache lookups, lowest free id, counts) that run on
 * libmemslot and on the reference model of tests/refmodel.h.  Every result
 * is compared; the first difference is printed and the harness aborts.
 *
 * Values are drawn from KVM's edges (ids and address spaces at their
 * limits, sizes around max_pages, gpas around the max gfn, 2^52 and 2^64,
 * hvas around the user limit, misaligned and tagged addresses, every flag
 * bit) so that short inputs reach every validation rule.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <memslot/memslot.h>

#include "refmodel.h"

#define MAX_OPS 256
#define MAX_HITS 64
/* LOG_DIRTY_PAGES only on slots up to this size: a bitmap is memory. */
#define LOG_MAX_PAGES 4096
#define LOG_WORDS (LOG_MAX_PAGES / 64 + 2)

/* The input, consumed from the front; reads past the end give zeros. */
struct input {
	const uint8_t *p;
	size_t n;
};

struct fuzz {
	struct input in;
	struct memslot_config cfg;
	struct memslot_vm *vm;
	struct memslot_vcpu *vcpu;
	struct ref_model ref;
	unsigned long op;
};

static uint8_t get8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint64_t get_n(struct input *in, unsigned int bytes)
{
	uint64_t v = 0;

	while (bytes--)
		v = v << 8 | get8(in);
	return v;
}

static void fail(struct fuzz *f, const char *what, uint64_t lib, uint64_t ref)
{
	fprintf(stderr, "fuzz_ops: op %lu: %s: libmemslot 0x%llx, model 0x%llx\n",
		f->op, what, (unsigned long long)lib, (unsigned long long)ref);
	abort();
}

static void check(struct fuzz *f, const char *what, uint64_t lib,
		  uint64_t ref)
{
	if (lib != ref)
		fail(f, what, lib, ref);
}

/* ---- profiles --------------------------------------------------------- */

/* A profile small enough that a short input fills it. */
static void profile_tiny(struct memslot_config *cfg)
{
	memslot_config_init_x86_64(cfg);
	cfg->nr_as = 2;
	cfg->user_slots = 6;
	cfg->total_slots = 8;
	cfg->max_pages = 64;
	cfg->max_gfn = 1023;
	cfg->hva_limit = 1ull << 24;
	cfg->hva_tag_mask = 0xffull << 56;
	cfg->readonly = false;
	cfg->guest_memfd = true;
}

static void pick_profile(struct fuzz *f)
{
	switch (get8(&f->in) % 4) {
	case 0:
		memslot_config_init_x86_64(&f->cfg);
		break;
	case 1:
		memslot_config_init_x86_64(&f->cfg);
		f->cfg.nr_as = 2;
		break;
	case 2:
		profile_tiny(&f->cfg);
		break;
	default:
		memslot_config_init_unbounded(&f->cfg);
	}
	f->cfg.rcu = memslot_rcu_none();
}

/* ---- values near KVM's edges ------------------------------------------ */

static uint64_t page(const struct fuzz *f)
{
	return 1ull << f->cfg.page_shift;
}

static uint64_t edge(struct input *in, uint64_t limit)
{
	return limit + (uint64_t)((int)(get8(in) % 5) - 2);
}

static uint32_t rand_slot(struct fuzz *f)
{
	struct input *in = &f->in;
	uint8_t k = get8(in);
	uint32_t id = k & 7, as_id = (k >> 3) & 1;

	switch (k >> 5) {
	case 0:
		id = (uint32_t)edge(in, f->cfg.user_slots);
		break;
	case 1:
		id = (uint32_t)edge(in, f->cfg.total_slots);
		break;
	case 2:
		as_id = (uint32_t)edge(in, f->cfg.nr_as);
		break;
	case 3:
		return (uint32_t)get_n(in, 4);
	}
	if (f->cfg.id_bits >= 32)
		return id;
	return as_id << f->cfg.id_bits | (id & ((1u << f->cfg.id_bits) - 1));
}

static uint32_t rand_flags(struct input *in)
{
	uint8_t k = get8(in);

	if (k >= 0xf0)
		return 1u << (get8(in) % 32);
	return k & 7;
}

static uint64_t rand_gfn(struct fuzz *f)
{
	struct input *in = &f->in;
	uint8_t k = get8(in);

	switch (k >> 5) {
	case 0:
		return edge(in, f->cfg.max_gfn);
	case 1:
		return edge(in, 1ull << 40);
	case 2:
		return get_n(in, 8);
	default:
		return k & 63;
	}
}

static uint64_t rand_npages(struct fuzz *f)
{
	struct input *in = &f->in;
	uint8_t k = get8(in);

	switch (k >> 5) {
	case 0:
		return edge(in, f->cfg.max_pages);
	case 1:
		return get_n(in, 8) >> f->cfg.page_shift;
	case 2:
		return 0;
	default:
		return k & 15;
	}
}

static uint64_t rand_hva(struct fuzz *f, uint64_t size)
{
	struct input *in = &f->in;
	uint8_t k = get8(in);

	switch (k >> 5) {
	case 0:
		return edge(in, (f->cfg.hva_limit - size) / page(f)) * page(f);
	case 1:
		return get_n(in, 8);
	case 2:
		return (uint64_t)get8(in) << 56 | (k & 15) * page(f);
	default:
		return (k & 31) * page(f) * 16;
	}
}

static void rand_region(struct fuzz *f, struct memslot_region *r)
{
	uint8_t mis = get8(&f->in), g = get8(&f->in);

	/* Every field from the input: one left as the stack had it would
	 * decide a guest_memfd request by chance, not by the input. */
	memset(r, 0, sizeof(*r));
	r->slot = rand_slot(f);
	r->flags = rand_flags(&f->in);
	r->guest_phys_addr = rand_gfn(f) << f->cfg.page_shift;
	r->memory_size = rand_npages(f) << f->cfg.page_shift;
	r->userspace_addr = rand_hva(f, r->memory_size);
	r->user_data = (void *)(uintptr_t)(get8(&f->in) + 1);
	/* now and then one field off the page grid */
	if (mis >= 0xf8)
		r->guest_phys_addr += 1 + mis % 7;
	else if (mis >= 0xf0)
		r->memory_size += 1 + mis % 7;
	else if (mis >= 0xe8)
		r->userspace_addr += 1 + mis % 7;
	if ((r->memory_size >> f->cfg.page_shift) > LOG_MAX_PAGES)
		r->flags &= ~MEMSLOT_MEM_LOG_DIRTY_PAGES;
	/* guest_memfd binding: a small fd, and an offset mostly on the page
	 * grid, now and then off it or near the top of the range. */
	r->guest_memfd = g & 3;
	r->guest_memfd_offset = (uint64_t)(g >> 2 & 15) * page(f);
	if (g >= 0xf0)
		r->guest_memfd_offset += 1 + g % 7;
	else if (g >= 0xe0)
		r->guest_memfd_offset = 0 - page(f) * (1 + g % 4);
}

/* ---- comparing slots and state --------------------------------------- */

static void check_slot(struct fuzz *f, const char *what,
		       const struct memslot_slot *s, const struct ref_slot *m)
{
	struct memslot_region r;

	check(f, what, s != NULL, m != NULL);
	if (!s)
		return;
	check(f, "slot as_id", memslot_slot_as_id(s), m->as_id);
	check(f, "slot id", memslot_slot_id(s), m->id);
	check(f, "slot base_gfn", memslot_slot_base_gfn(s), m->base_gfn);
	check(f, "slot npages", memslot_slot_npages(s), m->npages);
	check(f, "slot hva", memslot_slot_hva(s), m->hva);
	check(f, "slot flags", memslot_slot_flags(s), m->flags);
	check(f, "slot user_data", (uintptr_t)memslot_slot_user_data(s),
	      (uintptr_t)m->user_data);
	memslot_slot_region(f->vm, s, &r);
	check(f, "slot guest_memfd", r.guest_memfd, m->gmem_fd);
	check(f, "slot guest_memfd_offset", r.guest_memfd_offset,
	      m->gmem_offset);
}

static void check_gfn_walk(struct fuzz *f, unsigned int as_id,
			   uint64_t start, uint64_t end)
{
	const struct ref_slot *want[MAX_HITS];
	size_t n = ref_gfn_range(&f->ref, as_id, start, end, want, MAX_HITS);
	struct memslot_gfn_iter it;
	const struct memslot_slot *s;
	size_t i = 0;

	memslot_gfn_iter_init(&it, f->vm, as_id, start, end);
	while ((s = memslot_gfn_iter_next(&it))) {
		if (i < MAX_HITS)
			check_slot(f, "gfn walk", s, want[i]);
		i++;
	}
	check(f, "gfn walk count", i, n);
}

/* Generations and the whole layout of every address space. */
static void check_state(struct fuzz *f)
{
	memslot_read_lock(f->vm);
	for (unsigned int as_id = 0; as_id < f->cfg.nr_as; as_id++) {
		check(f, "generation", memslot_generation(f->vm, as_id),
		      f->ref.as[as_id].generation);
		check_gfn_walk(f, as_id, 0, UINT64_MAX);
	}
	memslot_read_unlock(f->vm);
}

/* ---- operations -------------------------------------------------------- */

static void op_set(struct fuzz *f, bool internal)
{
	struct memslot_region r;
	enum memslot_rule lr = MEMSLOT_RULE_COUNT, mr = MEMSLOT_RULE_COUNT;
	int l, m;

	rand_region(f, &r);
	l = internal ? memslot_set_internal_region(f->vm, &r, &lr)
		     : memslot_set_region(f->vm, &r, &lr);
	m = ref_set_region(&f->ref, &f->cfg, &r, internal, &mr);
	check(f, "set_region verdict", (uint64_t)l, (uint64_t)m);
	check(f, "set_region rule", lr, mr);
	check_state(f);
}

static void op_txn(struct fuzz *f)
{
	struct memslot_region r[4];
	struct memslot_txn_result res = { 0 };
	size_t n = 2 + get8(&f->in) % 3, mfailed = 0;
	enum memslot_rule mr = MEMSLOT_RULE_COUNT;
	int l, m;

	for (size_t i = 0; i < n; i++)
		rand_region(f, &r[i]);
	/* mostly one address space, as a transaction must name */
	if (get8(&f->in) < 0xe0) {
		for (size_t i = 1; i < n; i++)
			r[i].slot = (r[0].slot & ~0xffffu) | (r[i].slot & 0xffff);
	}
	/* Some transactions deferred: same verdicts; a refused deferred
	 * change has no INVALID phase to undo. */
	f->ref.deferred = get8(&f->in) < 0x40;
	l = f->ref.deferred ? memslot_set_regions_deferred(f->vm, r, n, &res)
			    : memslot_set_regions(f->vm, r, n, &res);
	m = ref_set_regions(&f->ref, &f->cfg, r, n, &mfailed, &mr);
	f->ref.deferred = false;
	check(f, "txn verdict", (uint64_t)l, (uint64_t)m);
	check(f, "txn rule", res.rule, mr);
	if (l)
		check(f, "txn failed index", res.failed, mfailed);
	check_state(f);
}

static unsigned int rand_as(struct fuzz *f)
{
	uint8_t k = get8(&f->in);

	return k < 0xf0 ? k % f->cfg.nr_as : k % 4;
}

static void op_lookup(struct fuzz *f)
{
	unsigned int as_id = rand_as(f);
	uint64_t gfn = rand_gfn(f) + get8(&f->in) % 4;
	bool write = get8(&f->in) & 1;
	uint64_t lh = 0, mh = 0;
	int l, m;

	memslot_read_lock(f->vm);
	check_slot(f, "gfn_to_slot", memslot_gfn_to_slot(f->vm, as_id, gfn),
		   ref_search(&f->ref, as_id, gfn, false));
	check_slot(f, "search", memslot_search(f->vm, as_id, gfn, false),
		   ref_search(&f->ref, as_id, gfn, false));
	check_slot(f, "search approx", memslot_search(f->vm, as_id, gfn, true),
		   ref_search(&f->ref, as_id, gfn, true));
	check_slot(f, "vcpu lookup",
		   memslot_vcpu_gfn_to_slot(f->vcpu, as_id, gfn),
		   ref_search(&f->ref, as_id, gfn, false));
	l = memslot_gfn_to_hva(f->vm, as_id, gfn, write, &lh);
	m = ref_gfn_to_hva(&f->ref, &f->cfg, as_id, gfn, write, &mh);
	memslot_read_unlock(f->vm);
	check(f, "gfn_to_hva verdict", (uint64_t)l, (uint64_t)m);
	if (!l)
		check(f, "gfn_to_hva", lh, mh);
}

static void op_id(struct fuzz *f)
{
	uint32_t slot = rand_slot(f);
	unsigned int as_id;
	uint32_t id;

	ref_region_split(&f->cfg, slot, &as_id, &id);
	memslot_read_lock(f->vm);
	check_slot(f, "id_to_slot", memslot_id_to_slot(f->vm, as_id, id),
		   ref_find(&f->ref, as_id, id));
	memslot_read_unlock(f->vm);
}

static void op_gfn_walk(struct fuzz *f)
{
	unsigned int as_id = rand_as(f);
	uint64_t start = rand_gfn(f);
	uint64_t end = get8(&f->in) < 0x20 ? rand_gfn(f)
					   : start + get8(&f->in);

	memslot_read_lock(f->vm);
	check_gfn_walk(f, as_id, start, end);
	memslot_read_unlock(f->vm);
}

static int hit_cmp(const void *a, const void *b)
{
	const struct ref_hva_hit *x = a, *y = b;

	if (x->as_id != y->as_id)
		return x->as_id < y->as_id ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static size_t lib_hva_hits(struct fuzz *f, uint64_t start, uint64_t end,
			   struct ref_hva_hit *out)
{
	struct memslot_hva_iter it;
	struct memslot_hva_hit h;
	size_t n = 0;

	memslot_read_lock(f->vm);
	memslot_hva_iter_init(&it, f->vm, start, end);
	while (memslot_hva_iter_next(&it, &h)) {
		if (n < MAX_HITS) {
			out[n] = (struct ref_hva_hit){
				memslot_slot_as_id(h.slot),
				memslot_slot_id(h.slot), h.hva_start,
				h.hva_end, h.gfn_start, h.gfn_end,
			};
		}
		n++;
	}
	memslot_read_unlock(f->vm);
	return n;
}

static void op_hva_walk(struct fuzz *f)
{
	struct ref_hva_hit lib[MAX_HITS], ref[MAX_HITS];
	uint64_t start = rand_hva(f, 0);
	uint64_t end = get8(&f->in) < 0x20 ? rand_hva(f, 0)
					   : start + get_n(&f->in, 3);
	size_t ln = lib_hva_hits(f, start, end, lib);
	size_t mn = ref_hva_range(&f->ref, &f->cfg, start, end, ref, MAX_HITS);

	check(f, "hva walk count", ln, mn);
	if (ln > MAX_HITS)
		return;
	qsort(lib, ln, sizeof(lib[0]), hit_cmp);
	qsort(ref, mn, sizeof(ref[0]), hit_cmp);
	if (memcmp(lib, ref, ln * sizeof(lib[0])))
		fail(f, "hva walk hits", ln, mn);
}

static uint64_t ref_lowest_free(struct fuzz *f, unsigned int as_id, int *r)
{
	for (uint64_t id = 0; id < f->cfg.user_slots; id++) {
		if (!ref_find(&f->ref, as_id, (uint32_t)id)) {
			*r = 0;
			return id;
		}
	}
	*r = -ENOSPC;
	return 0;
}

static void op_free_id(struct fuzz *f)
{
	unsigned int as_id = rand_as(f);
	struct memslot_stats st;
	uint32_t id = 0;
	int l = memslot_lowest_free_id(f->vm, as_id, &id), m = -EINVAL;
	uint64_t want = 0;

	if (as_id < f->cfg.nr_as)
		want = ref_lowest_free(f, as_id, &m);
	check(f, "lowest free id verdict", (uint64_t)l, (uint64_t)m);
	if (!l)
		check(f, "lowest free id", id, want);
	if (as_id >= f->cfg.nr_as)
		return;
	check(f, "stats verdict", memslot_vm_stats(f->vm, as_id, &st), 0);
	check(f, "total pages", st.total_pages,
	      ref_total_pages(&f->ref, as_id));
	check(f, "used ids", st.used_ids, f->ref.as[as_id].nslots);
}

static void dirty_get(struct fuzz *f, uint32_t arg)
{
	uint64_t lb[LOG_WORDS] = { 0 }, mb[LOG_WORDS] = { 0 };
	int l = memslot_get_dirty_log(f->vm, arg, lb);
	int m = ref_get_dirty_log(&f->ref, &f->cfg, arg, mb);

	check(f, "get dirty log verdict", (uint64_t)l, (uint64_t)m);
	for (size_t i = 0; !l && !m && i < LOG_WORDS; i++)
		check(f, "get dirty log word", lb[i], mb[i]);
}

static void dirty_clear(struct fuzz *f, uint32_t arg)
{
	uint64_t bm[LOG_WORDS];
	uint64_t first = (uint64_t)get8(&f->in) * (get8(&f->in) & 1 ? 64 : 1);
	uint64_t num = (uint64_t)get8(&f->in) << (get8(&f->in) % 5);
	int l, m;

	for (size_t i = 0; i < LOG_WORDS; i++)
		bm[i] = get_n(&f->in, 1) * 0x0101010101010101ull;
	if (num > 64 * LOG_WORDS)
		num = 64 * LOG_WORDS;
	l = memslot_clear_dirty_log(f->vm, arg, first, num, bm);
	m = ref_clear_dirty_log(&f->ref, &f->cfg, arg, first, num, bm);
	check(f, "clear dirty log verdict", (uint64_t)l, (uint64_t)m);
}

/* Dirty logging: marks (VM and vCPU paths), GET, CLEAR, mode changes. */
static void op_dirty(struct fuzz *f)
{
	uint8_t k = get8(&f->in);
	unsigned int as_id = rand_as(f);
	uint64_t gfn = rand_gfn(f) + get8(&f->in) % 4;
	uint32_t arg = rand_slot(f);
	int l, m;

	switch (k % 5) {
	case 0:
		l = memslot_vm_enable_manual_protect(f->vm, k >> 5);
		m = ref_enable_manual_protect(&f->ref, k >> 5);
		check(f, "manual protect verdict", (uint64_t)l, (uint64_t)m);
		break;
	case 1:
		memslot_read_lock(f->vm);
		if (k & 0x80)
			memslot_vcpu_mark_page_dirty(f->vcpu, as_id, gfn);
		else
			memslot_mark_page_dirty(f->vm, as_id, gfn);
		memslot_read_unlock(f->vm);
		if (as_id < f->cfg.nr_as)
			ref_mark(&f->ref, as_id, gfn);
		break;
	case 2:
		dirty_get(f, arg);
		break;
	default:
		dirty_clear(f, arg);
		dirty_get(f, arg);
		break;
	}
}

static void run_op(struct fuzz *f)
{
	uint8_t k = get8(&f->in);

	if (k < 90)
		op_set(f, false);
	else if (k < 100)
		op_set(f, true);
	else if (k < 125)
		op_txn(f);
	else if (k < 160)
		op_lookup(f);
	else if (k < 175)
		op_dirty(f);
	else if (k < 195)
		op_id(f);
	else if (k < 215)
		op_gfn_walk(f);
	else if (k < 240)
		op_hva_walk(f);
	else
		op_free_id(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz f = { .in = { data, size } };

	pick_profile(&f);
	if (memslot_vm_create(&f.cfg, &f.vm) ||
	    memslot_vcpu_create(f.vm, &f.vcpu) ||
	    ref_model_init(&f.ref, &f.cfg))
		abort();
	for (f.op = 0; f.in.n && f.op < MAX_OPS; f.op++)
		run_op(&f);
	check_state(&f);
	memslot_vcpu_destroy(f.vcpu);
	memslot_vm_destroy(f.vm);
	ref_model_free(&f.ref);
	return 0;
}
