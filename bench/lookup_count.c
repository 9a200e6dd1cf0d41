/* SPDX-License-Identifier: MIT */
/*
 * lookup_count: a driver for counting instructions per lookup under
 * callgrind (bench/callgrind.sh).
 *
 *   lookup_count MODE SLOTS COUNT
 *
 * MODE vcpu:   COUNT per-vCPU cache hits (memslot_vcpu_gfn_to_slot on
 *              gfns of one slot, so only the first lookup misses)
 * MODE random: COUNT set-wide lookups (memslot_gfn_to_slot) of uniformly
 *              random gfns over SLOTS slots of 512 pages
 * MODE search: the same gfns through memslot_search (index only)
 * MODE map:    COUNT translations (memslot_gfn_to_hva) of every page of
 *              the slots in gfn order, as bench's map test: the set-wide
 *              cache hits but for the first page of each slot
 * MODE unmap:  COUNT hva-range walks (memslot_hva_iter_init/next) of
 *              4 KiB each, sweeping the slots' hva area, as bench's unmap
 *              test; checked against the pages each must find
 * MODE read4:  COUNT 4-byte guest reads through a warm vCPU cache
 *              (memslot_vcpu_view_read), inside slot 0, which is given
 *              real backing for the purpose
 * MODE mark:   COUNT marks through a warm vCPU cache
 *              (memslot_vcpu_mark_page_dirty on gfns of one logging slot),
 *              checked afterwards against the harvested bitmap
 *
 * Run with --toggle-collect=<the lookup function> so that callgrind counts
 * only the instructions of the lookups themselves; the program checks
 * every result and exits non-zero on a wrong slot.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <memslot/access.h>
#include <memslot/memslot.h>

#define SLOT_PAGES 512u
#define STRIDE_PAGES (SLOT_PAGES + 4u)
#define PAGE 4096u

static struct memslot_vm *make_vm(uint32_t nslots, uint32_t flags)
{
	struct memslot_region *r = calloc(nslots, sizeof(*r));
	struct memslot_config cfg;
	struct memslot_vm *vm;

	memslot_config_init_x86_64(&cfg);
	cfg.rcu = memslot_rcu_none();
	if (!r || memslot_vm_create(&cfg, &vm))
		exit(2);
	for (uint32_t i = 0; i < nslots; i++) {
		r[i].slot = i;
		r[i].flags = flags;
		r[i].guest_phys_addr = (uint64_t)i * STRIDE_PAGES * PAGE;
		r[i].memory_size = (uint64_t)SLOT_PAGES * PAGE;
		r[i].userspace_addr = (1ull << 32) + (uint64_t)i * STRIDE_PAGES * PAGE;
	}
	if (memslot_set_regions(vm, r, nslots, NULL))
		exit(2);
	free(r);
	return vm;
}

/* Lookups of @gfn[], each expected in slot @id[i]; returns the misses. */
static __attribute__((noinline)) size_t
run_random(struct memslot_vm *vm, const uint64_t *gfn, const uint32_t *id,
	   size_t n, int search)
{
	size_t bad = 0;

	for (size_t i = 0; i < n; i++) {
		const struct memslot_slot *s = search
			? memslot_search(vm, 0, gfn[i], false)
			: memslot_gfn_to_slot(vm, 0, gfn[i]);

		bad += !s || memslot_slot_id(s) != id[i];
	}
	return bad;
}

static __attribute__((noinline)) size_t
run_map(struct memslot_vm *vm, uint32_t nslots, size_t n)
{
	size_t bad = 0;
	uint64_t hva;

	for (size_t i = 0; i < n; i++) {
		uint64_t slot = i / SLOT_PAGES % nslots, page = i % SLOT_PAGES;
		uint64_t gfn = slot * STRIDE_PAGES + page;

		bad += memslot_gfn_to_hva(vm, 0, gfn, false, &hva) ||
		       hva != (1ull << 32) + gfn * PAGE;
	}
	return bad;
}

static __attribute__((noinline)) size_t
run_unmap(struct memslot_vm *vm, uint32_t nslots, size_t n)
{
	uint64_t area = (uint64_t)nslots * STRIDE_PAGES;
	size_t bad = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t page = i % area, pages = 0;
		uint64_t start = (1ull << 32) + page * PAGE;
		struct memslot_hva_iter it;
		struct memslot_hva_hit hit;

		memslot_hva_iter_init(&it, vm, start, start + PAGE);
		while (memslot_hva_iter_next(&it, &hit))
			pages += hit.gfn_end - hit.gfn_start;
		bad += pages != (page % STRIDE_PAGES < SLOT_PAGES);
	}
	return bad;
}

static __attribute__((noinline)) size_t
run_vcpu(struct memslot_vcpu *vcpu, const struct memslot_slot *want,
	 size_t n)
{
	size_t bad = 0;

	for (size_t i = 0; i < n; i++)
		bad += memslot_vcpu_gfn_to_slot(vcpu, 0, i % SLOT_PAGES) != want;
	return bad;
}

static __attribute__((noinline)) void
run_mark(struct memslot_vcpu *vcpu, size_t n)
{
	for (size_t i = 0; i < n; i++)
		memslot_vcpu_mark_page_dirty(vcpu, 0, (i * 7) % SLOT_PAGES);
}

/* Every page of slot 0 marked (COUNT >= 512), nothing elsewhere. */
static size_t do_mark(struct memslot_vm *vm, size_t n)
{
	uint64_t bm[SLOT_PAGES / 64], count = 0;
	struct memslot_vcpu *vcpu;
	size_t bad = 0;

	if (memslot_vcpu_create(vm, &vcpu))
		exit(2);
	run_mark(vcpu, n);
	memslot_vcpu_destroy(vcpu);
	memslot_read_unlock(vm);
	if (memslot_get_dirty_log(vm, 0, bm) ||
	    memslot_dirty_count(vm, 1, &count))
		exit(2);
	for (size_t i = 0; i < SLOT_PAGES / 64; i++)
		bad += bm[i] != (n >= SLOT_PAGES ? ~0ull : bm[i]);
	memslot_read_lock(vm);
	return bad + count;
}

static size_t do_random(struct memslot_vm *vm, uint32_t nslots, size_t n,
			int search)
{
	uint64_t *gfn = malloc(n * sizeof(*gfn));
	uint32_t *id = malloc(n * sizeof(*id));
	uint64_t x = 88172645463325252ull;
	size_t bad;

	if (!gfn || !id)
		exit(2);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;	/* xorshift64 */
		id[i] = (uint32_t)(x % nslots);
		gfn[i] = (uint64_t)id[i] * STRIDE_PAGES + (x >> 32) % SLOT_PAGES;
	}
	bad = run_random(vm, gfn, id, n, search);
	free(gfn);
	free(id);
	return bad;
}

static size_t do_vcpu(struct memslot_vm *vm, size_t n)
{
	const struct memslot_slot *want = memslot_id_to_slot(vm, 0, 0);
	struct memslot_vcpu *vcpu;
	size_t bad;

	if (memslot_vcpu_create(vm, &vcpu))
		exit(2);
	bad = run_vcpu(vcpu, want, n);
	memslot_vcpu_destroy(vcpu);
	return bad;
}

static __attribute__((noinline)) size_t
run_read4(struct memslot_vcpu *vcpu, const struct memslot_view *view,
	  const uint8_t *back, size_t n)
{
	size_t bad = 0, done;
	uint32_t v;

	for (size_t i = 0; i < n; i++) {
		uint64_t gpa = (i * 4 * 97) % (SLOT_PAGES * PAGE);

		bad += memslot_vcpu_view_read(vcpu, view, gpa, &v, 4, &done) ||
		       memcmp(&v, back + gpa, 4);
	}
	return bad;
}

/* Slot 0 again, over real memory this time (deleted and created: its hva
 * cannot change in place). */
static uint8_t *back_slot0(struct memslot_vm *vm)
{
	struct memslot_region r = { .slot = 0 };
	uint8_t *back = mmap(NULL, SLOT_PAGES * PAGE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (back == MAP_FAILED || memslot_set_region(vm, &r, NULL))
		exit(2);
	for (size_t i = 0; i < SLOT_PAGES * PAGE; i++)
		back[i] = (uint8_t)(i * 7 + i / 4093);
	r.memory_size = (uint64_t)SLOT_PAGES * PAGE;
	r.userspace_addr = (uint64_t)(uintptr_t)back;
	if (memslot_set_region(vm, &r, NULL))
		exit(2);
	return back;
}

static size_t do_read4(struct memslot_vm *vm, size_t n)
{
	uint8_t *back = back_slot0(vm);
	struct memslot_vcpu *vcpu;
	size_t bad;

	if (memslot_vcpu_create(vm, &vcpu))
		exit(2);
	memslot_read_lock(vm);
	bad = run_read4(vcpu, memslot_view_get(vm, 0), back, n);
	memslot_read_unlock(vm);
	memslot_vcpu_destroy(vcpu);
	munmap(back, SLOT_PAGES * PAGE);
	return bad;
}

int main(int argc, char **argv)
{
	struct memslot_vm *vm;
	uint32_t nslots;
	size_t n, bad;

	if (argc != 4) {
		fprintf(stderr,
			"usage: %s vcpu|random|search|map|unmap|read4|mark SLOTS\n"
			"       COUNT\n",
			argv[0]);
		return 2;
	}
	nslots = (uint32_t)strtoul(argv[2], NULL, 0);
	n = strtoull(argv[3], NULL, 0);
	if (nslots == 0 || nslots > 32764)
		return 2;
	vm = make_vm(nslots, strcmp(argv[1], "mark") ? 0
				: MEMSLOT_MEM_LOG_DIRTY_PAGES);
	if (!strcmp(argv[1], "read4")) {
		bad = do_read4(vm, n);
		memslot_vm_destroy(vm);
		printf("read4 slots=%u reads=%zu wrong=%zu\n", nslots, n, bad);
		return bad ? 1 : 0;
	}
	memslot_read_lock(vm);
	if (!strcmp(argv[1], "vcpu"))
		bad = do_vcpu(vm, n);
	else if (!strcmp(argv[1], "mark"))
		bad = do_mark(vm, n);
	else if (!strcmp(argv[1], "map"))
		bad = run_map(vm, nslots, n);
	else if (!strcmp(argv[1], "unmap"))
		bad = run_unmap(vm, nslots, n);
	else
		bad = do_random(vm, nslots, n, !strcmp(argv[1], "search"));
	memslot_read_unlock(vm);
	memslot_vm_destroy(vm);
	printf("%s slots=%u lookups=%zu wrong=%zu\n", argv[1], nslots, n, bad);
	return bad ? 1 : 0;
}
