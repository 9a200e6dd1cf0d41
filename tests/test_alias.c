/* SPDX-License-Identifier: MIT */
/*
 * KVM allows any number of slots to share an hva.  The hva index orders
 * aliases by slot id in its inner nodes too, so creating and deleting
 * 32764 slots that all share one hva costs about what it costs with
 * distinct hvas: this test counts the writer's index work (nodes visited
 * and cells passed while locating entries) rather than timing anything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "vm.h"

#define PAGE 4096ull
#define NSLOTS 32764u

/* Slot ids in a scrambled order, so inserts land all over the tree. */
static uint32_t scrambled(uint32_t i)
{
	return (uint32_t)(((uint64_t)i * 7919u) % NSLOTS);
}

static uint64_t hva_work(struct memslot_vm *vm)
{
	return atomic_load(&vm->active[0])->hva.work;
}

/* Create then delete every slot, one change at a time; return the hva
 * index's work. */
static uint64_t fill_and_empty(bool aliased)
{
	struct memslot_config cfg;
	struct memslot_region r = { .memory_size = PAGE };
	struct memslot_vm *vm;
	uint64_t work;

	memslot_config_init_x86_64(&cfg);
	cfg.rcu = memslot_rcu_none();
	assert_int_equal(memslot_vm_create(&cfg, &vm), 0);
	for (uint32_t i = 0; i < NSLOTS; i++) {
		r.slot = scrambled(i);
		r.guest_phys_addr = (uint64_t)r.slot * PAGE;
		r.userspace_addr = aliased ? 0x40000000ull
					   : 0x40000000ull + r.slot * PAGE;
		assert_int_equal(memslot_set_region(vm, &r, NULL), 0);
	}
	assert_int_equal(bpt_check(&atomic_load(&vm->active[0])->hva), 0);
	for (uint32_t i = 0; i < NSLOTS; i++) {
		r.slot = scrambled(NSLOTS - 1 - i);
		r.memory_size = 0;
		assert_int_equal(memslot_set_region(vm, &r, NULL), 0);
	}
	work = hva_work(vm);
	memslot_vm_destroy(vm);
	return work;
}

static void test_aliases_cost_like_distinct(void **state)
{
	uint64_t distinct, aliased;

	(void)state;
	distinct = fill_and_empty(false);
	aliased = fill_and_empty(true);
	print_message("hva index work: distinct %llu, aliased %llu\n",
		      (unsigned long long)distinct,
		      (unsigned long long)aliased);
	assert_true(distinct > 0);
	assert_true(aliased < 3 * distinct);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aliases_cost_like_distinct),
	};

	return cmocka_run_group_tests_name("alias", tests, NULL, NULL);
}
