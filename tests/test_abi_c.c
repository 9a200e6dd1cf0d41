/* SPDX-License-Identifier: MIT */
/*
 * The public headers as a C user sees them: every header included, built
 * with -Wpedantic and friends (and once more with the generic index mask),
 * linked against the shared library.  The layout checks pin what the ABI
 * promises; the calls prove the symbols resolve with C linkage.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <memslot/access.h>
#include <memslot/alloc.h>
#include <memslot/memslot.h>
#include <memslot/nospec.h>
#include <memslot/rcu.h>

/* Same flag bits as KVM's KVM_MEM_*. */
_Static_assert(MEMSLOT_MEM_LOG_DIRTY_PAGES == 1, "KVM_MEM_LOG_DIRTY_PAGES");
_Static_assert(MEMSLOT_MEM_READONLY == 2, "KVM_MEM_READONLY");
_Static_assert(MEMSLOT_MEM_GUEST_MEMFD == 4, "KVM_MEM_GUEST_MEMFD");
_Static_assert(MEMSLOT_INVALID == 1u << 16, "internal flags start at bit 16");
_Static_assert(MEMSLOT_RULE_OK == 0, "0 means every check passed");

/* struct memslot_region starts like struct kvm_userspace_memory_region. */
_Static_assert(offsetof(struct memslot_region, slot) == 0, "slot");
_Static_assert(offsetof(struct memslot_region, flags) == 4, "flags");
_Static_assert(offsetof(struct memslot_region, guest_phys_addr) == 8, "gpa");
_Static_assert(offsetof(struct memslot_region, memory_size) == 16, "size");
_Static_assert(offsetof(struct memslot_region, userspace_addr) == 24, "hva");

/* Growable structs carry their size first. */
_Static_assert(offsetof(struct memslot_config, size) == 0, "config size");
_Static_assert(offsetof(struct memslot_allocator, size) == 0, "alloc size");
_Static_assert(offsetof(struct memslot_rcu_ops, size) == 0, "rcu size");
_Static_assert(offsetof(struct memslot_callbacks, size) == 0, "cb size");

static int failures;

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "FAIL: %s\n", what);
		failures++;
	}
}

static void check_nospec(void)
{
	check(memslot_array_index_nospec(3, 10) == 3, "index in bounds kept");
	check(memslot_array_index_nospec(10, 10) == 0, "index == size clamped");
	check(memslot_array_index_nospec(UINT64_MAX, 10) == 0, "huge index clamped");
	check(memslot_index_mask_nospec(0, 0) == 0, "size 0 masks everything");
	check(memslot_index_mask_nospec(9, 10) == UINT64_MAX, "mask all ones");
}

static void check_library(void)
{
	struct memslot_config cfg;
	const char *msg;

	memset(&cfg, 0, sizeof(cfg));
	memslot_config_init_x86_64(&cfg);
	check(cfg.size == sizeof(cfg), "config_init sets size");
	check(cfg.page_shift == 12, "x86-64 has 4 KiB pages");
	check(cfg.user_slots == 32764, "x86-64 has 32764 user slots");

	msg = memslot_strerror(-EEXIST);
	check(msg != NULL && msg[0] != '\0', "memslot_strerror(-EEXIST)");
	msg = memslot_rule_str(MEMSLOT_RULE_OVERLAP);
	check(msg != NULL && msg[0] != '\0', "memslot_rule_str(OVERLAP)");
	check(memslot_rcu_none() != NULL, "memslot_rcu_none()");
}

int main(void)
{
	check_nospec();
	check_library();
	if (failures)
		return 1;
	printf("abi C: ok\n");
	return 0;
}
