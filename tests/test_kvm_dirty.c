/* SPDX-License-Identifier: MIT */
/*
 * Differential test of dirty logging against the real KVM.
 *
 * A KVM VM (no vCPUs) and a library VM get the same slot requests and the
 * same KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 settings.  With INITIALLY_SET a
 * new bitmap starts all ones, so the bitmaps have known contents without a
 * running vCPU.  Then seeded random KVM_GET_DIRTY_LOG and
 * KVM_CLEAR_DIRTY_LOG calls (good and bad ids, address spaces, first_page
 * and num_pages around every rule, random bitmaps), mode changes, moves
 * and flag toggles go to both: every verdict and every bitmap must agree.
 *
 * Environment: MEMSLOT_KVM_DEV (default /dev/kvm), MEMSLOT_KVM_OPS (random
 * operations, default 5000).  Exits 77 (skip) without a usable KVM, as
 * test_kvm_diff does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/kvm.h>

#include <memslot/memslot.h>

#include "common.h"

#define PAGE TC_PAGE
#define IDS 12			/* slots the test uses */
#define MAX_NPAGES 1100		/* largest slot */
#define WORDS (MAX_NPAGES / 64 + 2)
#define HVA 0x10000000ull

struct pair {
	int vm_fd;
	struct memslot_vm *vm;
	struct memslot_config cfg;
	uint64_t npages[IDS];	/* 0: no slot */
	uint64_t gfn[IDS];
	uint32_t flags[IDS];
	uint64_t rng;
	unsigned long mismatches;
	unsigned long calls;
};

static int kvm_fd = -1;

static const char *kvm_path(void)
{
	const char *p = getenv("MEMSLOT_KVM_DEV");

	return p && *p ? p : "/dev/kvm";
}

static uint64_t below(struct pair *p, uint64_t n)
{
	return tc_rng_below(&p->rng, n);
}

static int kvm_cap(int fd, long cap)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

static void verdict(struct pair *p, const char *what, int kvm, int lib)
{
	p->calls++;
	if (kvm == lib)
		return;
	fprintf(stderr, "MISMATCH %s: kvm %d, library %d\n", what, kvm, lib);
	p->mismatches++;
}

static void pair_open(struct pair *p, uint64_t seed)
{
	int nr_as;

	memset(p, 0, sizeof(*p));
	p->rng = tc_rng_seed(seed);
	p->vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	assert_true(p->vm_fd >= 0);
	memslot_config_init_x86_64(&p->cfg);
	p->cfg.user_slots = (uint32_t)kvm_cap(p->vm_fd, KVM_CAP_NR_MEMSLOTS);
	nr_as = kvm_cap(p->vm_fd, KVM_CAP_MULTI_ADDRESS_SPACE);
	p->cfg.nr_as = nr_as > 1 ? (unsigned int)nr_as : 1;
	p->cfg.readonly = kvm_cap(p->vm_fd, KVM_CAP_READONLY_MEM) > 0;
	p->cfg.rcu = memslot_rcu_none();
	assert_int_equal(memslot_vm_create(&p->cfg, &p->vm), 0);
}

static void pair_close(struct pair *p)
{
	memslot_vm_destroy(p->vm);
	close(p->vm_fd);
	printf("  %lu calls compared, %lu mismatches\n", p->calls,
	       p->mismatches);
}

static void set_mode(struct pair *p, uint64_t flags)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args = { flags },
	};
	int kvm = ioctl(p->vm_fd, KVM_ENABLE_CAP, &cap) ? -errno : 0;
	char what[64];

	snprintf(what, sizeof(what), "enable manual protect 0x%llx",
		 (unsigned long long)flags);
	verdict(p, what, kvm, memslot_vm_enable_manual_protect(p->vm, flags));
}

static void set_slot(struct pair *p, uint32_t id, uint32_t flags,
		     uint64_t gfn, uint64_t npages)
{
	struct kvm_userspace_memory_region k = {
		.slot = id, .flags = flags, .guest_phys_addr = gfn * PAGE,
		.memory_size = npages * PAGE,
		.userspace_addr = HVA + id * 4 * PAGE * MAX_NPAGES,
	};
	struct memslot_region r = tc_region(id, flags, k.guest_phys_addr,
					    k.memory_size, k.userspace_addr);
	int kvm = ioctl(p->vm_fd, KVM_SET_USER_MEMORY_REGION, &k) ? -errno : 0;
	int lib = memslot_set_region(p->vm, &r, NULL);

	verdict(p, "set region", kvm, lib);
	if (kvm || lib)
		return;
	p->npages[id] = npages;
	p->gfn[id] = gfn;
	p->flags[id] = flags;
}

/* GET on both; the verdicts and, on success, the bitmaps must agree. */
static void get_log(struct pair *p, uint32_t slot)
{
	uint64_t kb[WORDS], lb[WORDS];
	struct kvm_dirty_log d = { .slot = slot, .dirty_bitmap = kb };
	int kvm, lib;
	char what[64];

	memset(kb, 0, sizeof(kb));
	memset(lb, 0, sizeof(lb));
	kvm = ioctl(p->vm_fd, KVM_GET_DIRTY_LOG, &d) ? -errno : 0;
	lib = memslot_get_dirty_log(p->vm, slot, lb);
	snprintf(what, sizeof(what), "get dirty log slot 0x%x", slot);
	verdict(p, what, kvm, lib);
	if (!kvm && !lib && memcmp(kb, lb, sizeof(kb))) {
		fprintf(stderr, "MISMATCH %s: bitmaps differ\n", what);
		p->mismatches++;
	}
}

static void clear_log(struct pair *p, uint32_t slot, uint64_t first,
		      uint32_t num)
{
	uint64_t bm[WORDS];
	struct kvm_clear_dirty_log c = {
		.slot = slot, .num_pages = num, .first_page = first,
		.dirty_bitmap = bm,
	};
	char what[96];

	for (size_t i = 0; i < WORDS; i++)
		bm[i] = tc_rng(&p->rng) & tc_rng(&p->rng);
	snprintf(what, sizeof(what), "clear slot 0x%x first %llu num %u",
		 slot, (unsigned long long)first, num);
	verdict(p, what, ioctl(p->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) ? -errno : 0,
		memslot_clear_dirty_log(p->vm, slot, first, num, bm));
}

/* A slot argument: mostly a used id, sometimes a bad one. */
static uint32_t rand_slot(struct pair *p)
{
	switch (below(p, 12)) {
	case 0:
		return p->cfg.user_slots - 1 + (uint32_t)below(p, 4);
	case 1:
		return (uint32_t)(p->cfg.nr_as + below(p, 2)) << 16 |
		       (uint32_t)below(p, IDS);
	default:
		return (uint32_t)below(p, IDS);
	}
}

static uint64_t rand_first(struct pair *p, uint64_t npages)
{
	switch (below(p, 6)) {
	case 0:
		return below(p, npages + 2);
	case 1:
		return (npages + 63) / 64 * 64 + 64 * below(p, 2);
	default:
		return 64 * below(p, npages / 64 + 1);
	}
}

static uint32_t rand_num(struct pair *p, uint64_t npages, uint64_t first)
{
	uint64_t left = first <= npages ? npages - first : 0;

	switch (below(p, 6)) {
	case 0:
		return (uint32_t)left;
	case 1:
		return (uint32_t)(left + 1 + below(p, 64));
	case 2:
		return (uint32_t)below(p, left + 1);
	default:
		return (uint32_t)(64 * below(p, left / 64 + 1));
	}
}

static void random_op(struct pair *p)
{
	uint32_t id = (uint32_t)below(p, IDS), slot = rand_slot(p);
	uint64_t n = slot < IDS ? p->npages[slot] : 64;
	uint64_t first;

	switch (below(p, 20)) {
	case 0:
		set_mode(p, below(p, 4));
		break;
	case 1:	/* create, move or toggle logging */
		if (!p->npages[id])
			set_slot(p, id, MEMSLOT_MEM_LOG_DIRTY_PAGES,
				 id * 2 * MAX_NPAGES, 1 + below(p, MAX_NPAGES));
		else
			set_slot(p, id, p->flags[id] ^ (uint32_t)below(p, 2),
				 id * 2 * MAX_NPAGES + below(p, 2) * MAX_NPAGES,
				 p->npages[id]);
		break;
	case 2:
		if (p->npages[id])
			set_slot(p, id, 0, 0, 0);
		p->npages[id] = 0;
		break;
	case 3: case 4: case 5: case 6:
		get_log(p, slot);
		break;
	default:
		first = rand_first(p, n);
		clear_log(p, slot, first, rand_num(p, n, first));
		get_log(p, slot);
		break;
	}
}

static void test_enable_verdicts(void **state)
{
	struct pair p;

	(void)state;
	pair_open(&p, 1);
	for (uint64_t f = 0; f < 8; f++)
		set_mode(&p, f);
	set_mode(&p, 1ull << 63);
	set_mode(&p, 3);
	pair_close(&p);
	assert_int_equal(p.mismatches, 0);
}

static void test_random(void **state)
{
	const char *e = getenv("MEMSLOT_KVM_OPS");
	unsigned long ops = e ? strtoul(e, NULL, 0) : 5000;
	struct pair p;

	(void)state;
	for (uint64_t seed = 1; seed <= 4; seed++) {
		pair_open(&p, seed);
		set_mode(&p, 3);	/* bitmaps start all ones */
		for (uint32_t id = 0; id < IDS; id++)
			set_slot(&p, id, MEMSLOT_MEM_LOG_DIRTY_PAGES,
				 id * 2 * MAX_NPAGES,
				 (const uint64_t[]){ 1, 63, 64, 65, 127, 128,
						     130, 640, 1000, 1024,
						     1099, 7 }[id]);
		for (unsigned long i = 0; i < ops / 4; i++)
			random_op(&p);
		pair_close(&p);
		assert_int_equal(p.mismatches, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_enable_verdicts),
		cmocka_unit_test(test_random),
	};
	int vm_fd;

	kvm_fd = open(kvm_path(), O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		printf("SKIP: cannot open %s: %s\n", kvm_path(), strerror(errno));
		return 77;
	}
	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0) {
		printf("SKIP: KVM_CREATE_VM on %s failed: %s\n", kvm_path(),
		       strerror(errno));
		return 77;
	}
	if (kvm_cap(vm_fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) <= 0) {
		printf("SKIP: %s lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2\n",
		       kvm_path());
		return 77;
	}
	close(vm_fd);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
