/* SPDX-License-Identifier: MIT */
/*
 * demo: the memory map of a small PC-like guest, as a VMM would keep it.
 *
 * Builds the slot layout with the x86-64 KVM profile, walks it, translates
 * guest frames to host addresses, moves and deletes a slot, shows a
 * rejected request, answers an hva-range query (what an MMU notifier
 * asks), and prints the generation after every change.
 *
 * The host addresses are made up: libmemslot stores and computes hvas but
 * never dereferences them, so nothing is mapped here.  Every result is
 * checked; the program exits 1 on the first surprise, so it is also a test.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <memslot/memslot.h>

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define PAGE_SHIFT 12

/* Where the VMM "mapped" guest RAM and the firmware image. */
#define RAM_HVA 0x7f0000000000ull
#define ROM_HVA 0x7e0000000000ull
#define VRAM_HVA 0x7e0010000000ull

enum { SLOT_LOW_RAM, SLOT_RAM, SLOT_ROM, SLOT_HIGH_RAM, SLOT_VRAM };

#define REGION(id, fl, gpa, size, hva)                                 \
	{ .slot = (id), .flags = (fl), .guest_phys_addr = (gpa),       \
	  .memory_size = (size), .userspace_addr = (hva) }

static const struct memslot_region pc_layout[] = {
	/* 0 - 640 KiB: conventional memory */
	REGION(SLOT_LOW_RAM, 0, 0, 640 * KiB, RAM_HVA),
	/* 1 MiB - 3 GiB; 640 KiB - 1 MiB stays a hole (VGA, option ROMs) */
	REGION(SLOT_RAM, 0, 1 * MiB, 3 * GiB - 1 * MiB, RAM_HVA + 1 * MiB),
	/* the top 64 MiB below 4 GiB: firmware flash, read-only */
	REGION(SLOT_ROM, MEMSLOT_MEM_READONLY, 4 * GiB - 64 * MiB, 64 * MiB,
	       ROM_HVA),
	/* RAM above the PCI hole continues the same host mapping */
	REGION(SLOT_HIGH_RAM, 0, 4 * GiB, 5 * GiB, RAM_HVA + 3 * GiB),
};

static void fail(const char *what, int ret)
{
	fprintf(stderr, "demo: unexpected result from %s: %d (%s)\n", what,
		ret, memslot_strerror(ret));
	exit(1);
}

static void expect(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "demo: check failed: %s\n", what);
		exit(1);
	}
}

/* Apply @r and check the generation moved by @delta (KVM's accounting). */
static void set_region(struct memslot_vm *vm, const struct memslot_region *r,
		       uint64_t delta, const char *what)
{
	uint64_t gen = memslot_generation(vm, 0);
	int ret = memslot_set_region(vm, r, NULL);

	if (ret)
		fail(what, ret);
	expect(memslot_generation(vm, 0) == gen + delta, "generation delta");
	printf("%-34s generation %" PRIu64 "\n", what, gen + delta);
}

static const char *flag_names(uint32_t flags)
{
	if (flags & MEMSLOT_INVALID)
		return "invalid";
	if (flags & MEMSLOT_MEM_READONLY)
		return "read-only";
	if (flags & MEMSLOT_MEM_LOG_DIRTY_PAGES)
		return "dirty-log";
	return "";
}

/* Print every slot, in guest-physical order; return how many there are. */
static unsigned int print_layout(struct memslot_vm *vm)
{
	struct memslot_gfn_iter it;
	const struct memslot_slot *slot;
	uint64_t prev_end = 0;
	unsigned int n = 0;

	printf("  id  guest physical range              size       host address    flags\n");
	memslot_read_lock(vm);
	memslot_gfn_iter_init(&it, vm, 0, 0, UINT64_MAX);
	while ((slot = memslot_gfn_iter_next(&it))) {
		uint64_t start = memslot_slot_base_gfn(slot) << PAGE_SHIFT;
		uint64_t size = memslot_slot_npages(slot) << PAGE_SHIFT;

		expect(start >= prev_end, "slots come in ascending order");
		printf("  %2" PRIu32 "  0x%012" PRIx64 "-0x%012" PRIx64 "  %6" PRIu64
		       " MiB  %#" PRIx64 "  %s\n", memslot_slot_id(slot), start,
		       start + size, size / MiB, memslot_slot_hva(slot),
		       flag_names(memslot_slot_flags(slot)));
		prev_end = start + size;
		n++;
	}
	memslot_read_unlock(vm);
	return n;
}

/* Translate the guest physical address @gpa and check the outcome. */
static void translate(struct memslot_vm *vm, uint64_t gpa, bool write,
		      int want_ret, uint64_t want_hva, const char *what)
{
	uint64_t hva = 0;
	int ret;

	memslot_read_lock(vm);
	ret = memslot_gfn_to_hva(vm, 0, gpa >> PAGE_SHIFT, write, &hva);
	memslot_read_unlock(vm);

	printf("  %-5s 0x%09" PRIx64 " %-16s ", write ? "write" : "read", gpa,
	       what);
	if (ret)
		printf("%s\n", memslot_strerror(ret));
	else
		printf("hva %#" PRIx64 "\n", hva);
	expect(ret == want_ret, "translation result");
	expect(ret || hva == want_hva, "translated address");
}

static void show_translations(struct memslot_vm *vm)
{
	printf("\nTranslating guest addresses:\n");
	translate(vm, 16 * MiB, false, 0, RAM_HVA + 16 * MiB, "RAM");
	translate(vm, 0xb8000, true, -ENOENT, 0, "VGA hole");
	translate(vm, 4 * GiB - 16, false, 0, ROM_HVA + 64 * MiB - 4096,
		  "reset vector");
	translate(vm, 4 * GiB - 16, true, -EROFS, 0, "write to flash");
	translate(vm, 3 * GiB + 4096, false, -ENOENT, 0, "PCI hole");
	translate(vm, 6 * GiB, true, 0, RAM_HVA + 5 * GiB, "high RAM");
}

/* A 16 MiB framebuffer BAR: created, moved by the guest, then unmapped. */
static void framebuffer_lifecycle(struct memslot_vm *vm)
{
	struct memslot_region vram = {
		.slot = SLOT_VRAM,
		.flags = MEMSLOT_MEM_LOG_DIRTY_PAGES,
		.guest_phys_addr = 3 * GiB + 512 * MiB,
		.memory_size = 16 * MiB,
		.userspace_addr = VRAM_HVA,
	};

	printf("\nA framebuffer in the PCI hole:\n");
	set_region(vm, &vram, 1, "  create at 3.5 GiB:");
	translate(vm, vram.guest_phys_addr, true, 0, VRAM_HVA, "framebuffer");

	/* Moves and deletes take two swaps: the slot turns INVALID first. */
	vram.guest_phys_addr = 3 * GiB + 256 * MiB;
	set_region(vm, &vram, 2, "  guest moves the BAR to 3.25 GiB:");
	translate(vm, 3 * GiB + 512 * MiB, true, -ENOENT, 0, "old BAR");
	translate(vm, vram.guest_phys_addr, true, 0, VRAM_HVA, "new BAR");
	print_layout(vm);

	vram.memory_size = 0;
	set_region(vm, &vram, 2, "  guest disables the BAR (delete):");
	translate(vm, 3 * GiB + 256 * MiB, false, -ENOENT, 0, "no BAR");
}

/* Slot 5 on top of guest RAM: KVM's overlap rule rejects it. */
static void rejected_overlap(struct memslot_vm *vm)
{
	const struct memslot_region bad = {
		.slot = 5,
		.guest_phys_addr = 2 * GiB,
		.memory_size = 2 * MiB,
		.userspace_addr = VRAM_HVA,
	};
	uint64_t gen = memslot_generation(vm, 0);
	enum memslot_rule rule = MEMSLOT_RULE_OK;
	int ret = memslot_set_region(vm, &bad, &rule);

	printf("\nA slot at 2 GiB, inside RAM:\n  rejected: %s (rule: %s)\n",
	       memslot_strerror(ret), memslot_rule_str(rule));
	expect(ret == -EEXIST, "overlap returns -EEXIST");
	expect(rule == MEMSLOT_RULE_OVERLAP, "overlap rule reported");
	expect(memslot_generation(vm, 0) == gen, "a rejected change bumps nothing");
}

/* The host unmaps 128 KiB straddling the 3 GiB and 4 GiB RAM slots. */
static void hva_query(struct memslot_vm *vm)
{
	uint64_t start = RAM_HVA + 3 * GiB - 64 * KiB;
	uint64_t end = RAM_HVA + 3 * GiB + 64 * KiB;
	struct memslot_hva_iter it;
	struct memslot_hva_hit hit;
	uint64_t want_gfn[2] = { (3 * GiB - 64 * KiB) >> PAGE_SHIFT,
				 (4 * GiB) >> PAGE_SHIFT };
	unsigned int n = 0;

	printf("\nHost range %#" PRIx64 "-%#" PRIx64 " is unmapped; slots hit:\n",
	       start, end);
	memslot_read_lock(vm);
	memslot_hva_iter_init(&it, vm, start, end);
	while (memslot_hva_iter_next(&it, &hit)) {
		printf("  slot %" PRIu32 ": gfn %#" PRIx64 "-%#" PRIx64 "\n",
		       memslot_slot_id(hit.slot), hit.gfn_start, hit.gfn_end);
		expect(n < 2, "two slots hit");
		expect(hit.gfn_start == want_gfn[n], "first gfn of the hit");
		expect(hit.gfn_end == want_gfn[n] + 16, "16 pages per hit");
		n++;
	}
	memslot_read_unlock(vm);
	expect(n == 2, "two slots hit");
}

static void show_ids_and_stats(struct memslot_vm *vm, uint32_t want_free_id,
			       uint64_t want_pages)
{
	struct memslot_stats st;
	uint32_t id;
	int ret;

	ret = memslot_lowest_free_id(vm, 0, &id);
	if (ret)
		fail("memslot_lowest_free_id", ret);
	ret = memslot_vm_stats(vm, 0, &st);
	if (ret)
		fail("memslot_vm_stats", ret);
	printf("  lowest free id %" PRIu32 ", %" PRIu64 " slots, %" PRIu64
	       " free user ids, %" PRIu64 " MiB of guest memory\n", id,
	       st.used_ids, st.free_user_ids, st.total_pages >> (20 - PAGE_SHIFT));
	expect(id == want_free_id, "lowest free id");
	expect(st.used_ids + st.free_user_ids == 32764, "ids add up");
	expect(st.total_pages == want_pages, "pages add up");
	expect(st.bytes > 0, "the VM accounts its metadata");
}

int main(void)
{
	struct memslot_config cfg;
	struct memslot_vm *vm;
	uint64_t pages = 0;
	size_t i;
	int ret;

	memslot_config_init_x86_64(&cfg);
	ret = memslot_vm_create(&cfg, &vm);
	if (ret)
		fail("memslot_vm_create", ret);
	/* This thread does lookups, so it registers as an RCU reader. */
	memslot_thread_register(vm);

	printf("Building a PC memory map (x86-64 profile):\n");
	for (i = 0; i < sizeof(pc_layout) / sizeof(pc_layout[0]); i++) {
		char what[32];

		snprintf(what, sizeof(what), "  create slot %" PRIu32 ":",
			 pc_layout[i].slot);
		set_region(vm, &pc_layout[i], 1, what);
		pages += pc_layout[i].memory_size >> PAGE_SHIFT;
	}
	expect(print_layout(vm) == 4, "four slots");
	show_ids_and_stats(vm, 4, pages);

	show_translations(vm);
	framebuffer_lifecycle(vm);
	rejected_overlap(vm);
	hva_query(vm);

	printf("\nFinal layout:\n");
	expect(print_layout(vm) == 4, "four slots again");
	show_ids_and_stats(vm, 4, pages);

	memslot_thread_unregister(vm);
	memslot_vm_destroy(vm);
	printf("\ndemo: all checks passed\n");
	return 0;
}
