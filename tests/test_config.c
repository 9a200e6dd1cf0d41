/* SPDX-License-Identifier: MIT */
/*
 * Argument checking at the edges of the API: every config memslot_vm_create()
 * documents as -EINVAL, NULL handles for the destroy functions, address
 * spaces out of range for lookups and queries, empty and reversed ranges
 * for the iterators, and a writer called from inside a read section.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <memslot/memslot.h>

#include "common.h"

#define PAGE TC_PAGE

/* Counts the bytes a VM holds, so a refused config can be shown to leave
 * nothing behind (it never fails). */
static struct tc_alloc counter;

static void base_config(struct memslot_config *cfg)
{
	memslot_config_init_x86_64(cfg);
	cfg->rcu = memslot_rcu_none();
	cfg->alloc = &counter.ops;
}

/* @cfg must be refused with -EINVAL, leave *out alone and allocate
 * nothing. */
static void expect_einval(const struct memslot_config *cfg)
{
	struct memslot_vm *vm = (struct memslot_vm *)&counter;

	counter.calls = 0;
	assert_int_equal(memslot_vm_create(cfg, &vm), -EINVAL);
	assert_ptr_equal(vm, (struct memslot_vm *)&counter);
	assert_int_equal(counter.calls, 0);
	assert_int_equal(counter.live, 0);
}

/* @cfg must be accepted; the VM is destroyed again at once. */
static void expect_ok(const struct memslot_config *cfg)
{
	struct memslot_vm *vm = NULL;

	assert_int_equal(memslot_vm_create(cfg, &vm), 0);
	assert_non_null(vm);
	memslot_vm_destroy(vm);
	assert_int_equal(counter.live, 0);
}

static void test_null_config(void **state)
{
	(void)state;
	expect_einval(NULL);
}

/* page_shift must lie in 9..30: both ends pass, one beyond each fails. */
static void test_page_shift(void **state)
{
	static const unsigned int bad[] = { 0, 8, 31, 64, 1000 };
	struct memslot_config cfg;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		base_config(&cfg);
		cfg.page_shift = bad[i];
		expect_einval(&cfg);
	}
	base_config(&cfg);
	cfg.page_shift = 9;
	expect_ok(&cfg);
	cfg.page_shift = 30;
	expect_ok(&cfg);
}

/* nr_as must lie in 1..256. */
static void test_nr_as(void **state)
{
	struct memslot_config cfg;

	(void)state;
	base_config(&cfg);
	cfg.nr_as = 0;
	expect_einval(&cfg);
	cfg.nr_as = 257;
	expect_einval(&cfg);
	cfg.nr_as = 256;
	expect_ok(&cfg);
	cfg.nr_as = 1;
	expect_ok(&cfg);
}

/* id_bits must lie in 1..32. */
static void test_id_bits(void **state)
{
	struct memslot_config cfg;

	(void)state;
	base_config(&cfg);
	cfg.id_bits = 0;
	expect_einval(&cfg);
	cfg.id_bits = 33;
	expect_einval(&cfg);
	memslot_config_init_unbounded(&cfg);
	cfg.rcu = memslot_rcu_none();
	cfg.alloc = &counter.ops;
	assert_int_equal(cfg.id_bits, 32);
	expect_ok(&cfg);
}

static void test_user_above_total(void **state)
{
	struct memslot_config cfg;

	(void)state;
	base_config(&cfg);
	cfg.user_slots = cfg.total_slots + 1;
	expect_einval(&cfg);
	cfg.user_slots = cfg.total_slots;
	expect_ok(&cfg);
}

/* Ids must fit in id_bits, and the address-space numbers in the bits
 * above them. */
static void test_ids_fit(void **state)
{
	struct memslot_config cfg;

	(void)state;
	base_config(&cfg);
	cfg.id_bits = 8;
	cfg.user_slots = 200;
	cfg.total_slots = 257;
	expect_einval(&cfg);
	cfg.total_slots = 256;
	expect_ok(&cfg);

	base_config(&cfg);
	cfg.id_bits = 31;
	cfg.user_slots = 100;
	cfg.total_slots = 100;
	cfg.nr_as = 3;
	expect_einval(&cfg);
	cfg.nr_as = 2;
	expect_ok(&cfg);

	memslot_config_init_unbounded(&cfg);
	cfg.rcu = memslot_rcu_none();
	cfg.alloc = &counter.ops;
	cfg.nr_as = 2;		/* no bits left for an address space */
	expect_einval(&cfg);
}

/*
 * A size below the first version of the struct (which ends with max_gfn)
 * is refused; exactly that size is accepted and the newer fields read as
 * zero, so READONLY is then unsupported.
 */
static void test_old_size(void **state)
{
	const size_t first = offsetof(struct memslot_config, max_gfn) +
			     sizeof(uint64_t);
	struct memslot_region r = {
		.slot = 1,
		.flags = MEMSLOT_MEM_READONLY,
		.memory_size = PAGE,
	};
	struct memslot_config cfg;
	struct memslot_vm *vm;
	enum memslot_rule rule;

	(void)state;
	base_config(&cfg);
	cfg.size = 0;
	expect_einval(&cfg);
	cfg.size = first - 1;
	expect_einval(&cfg);
	cfg.size = first;
	cfg.alloc = NULL;	/* beyond @first: the defaults apply */
	cfg.rcu = NULL;
	assert_true(cfg.readonly);
	assert_int_equal(memslot_vm_create(&cfg, &vm), 0);
	assert_int_equal(memslot_set_region(vm, &r, &rule), -EINVAL);
	assert_int_equal(rule, MEMSLOT_RULE_FLAGS_COMBO);
	r.flags = 0;
	assert_int_equal(memslot_set_region(vm, &r, &rule), 0);
	memslot_vm_destroy(vm);
}

/* ---- sized structs: the library reads no further than @size -------- */

#define FIRST_SIZE(type, last) (offsetof(type, last) + sizeof(((type *)0)->last))

/* A heap copy of @size bytes of @src: ASan reports a read past its end. */
static void *exact_copy(const void *src, size_t size)
{
	void *p = malloc(size);

	assert_non_null(p);
	memcpy(p, src, size);
	memcpy(p, &size, sizeof(size));	/* every sized struct starts so */
	return p;
}

static unsigned long hook_calls;

/* Hooks for structs cut before @ctx: the copy must read it as NULL. */
static void *nctx_malloc(void *ctx, size_t size)
{
	assert_null(ctx);
	hook_calls++;
	return malloc(size);
}

static void nctx_free(void *ctx, void *ptr, size_t size)
{
	(void)size;
	assert_null(ctx);
	free(ptr);
}

static void nctx_rcu(void *ctx)
{
	assert_null(ctx);
	hook_calls++;
}

static int nctx_prepare(void *ctx, const struct memslot_slot *old,
			const struct memslot_slot *new_slot,
			enum memslot_change change)
{
	(void)old;
	(void)new_slot;
	(void)change;
	assert_null(ctx);
	hook_calls += 1000;
	return 0;
}

static int refuse_prepare(void *ctx, const struct memslot_slot *old,
			  const struct memslot_slot *new_slot,
			  enum memslot_change change)
{
	(void)ctx;
	(void)old;
	(void)new_slot;
	(void)change;
	return -EPERM;
}

static const struct memslot_allocator nctx_alloc = {
	.size = sizeof(struct memslot_allocator),
	.malloc = nctx_malloc,
	.free = nctx_free,
	.ctx = &hook_calls,
};

static const struct memslot_rcu_ops nctx_rcu_ops = {
	.size = sizeof(struct memslot_rcu_ops),
	.read_lock = nctx_rcu,
	.read_unlock = nctx_rcu,
	.synchronize = nctx_rcu,
	.register_thread = nctx_rcu,
	.unregister_thread = nctx_rcu,
	.ctx = &hook_calls,
};

static const struct memslot_callbacks nctx_cb = {
	.size = sizeof(struct memslot_callbacks),
	.prepare = nctx_prepare,
	.ctx = &hook_calls,
};

/* The first published versions, on the heap with nothing after them. */
struct first_versions {
	struct memslot_config *cfg;
	struct memslot_allocator *alloc;
	struct memslot_rcu_ops *rcu;
	struct memslot_callbacks *cb;
};

static void first_versions_make(struct first_versions *v)
{
	struct memslot_config full;

	base_config(&full);
	full.alloc = v->alloc = exact_copy(&nctx_alloc,
		FIRST_SIZE(struct memslot_allocator, free));
	full.rcu = v->rcu = exact_copy(&nctx_rcu_ops,
		FIRST_SIZE(struct memslot_rcu_ops, unregister_thread));
	full.callbacks = v->cb = exact_copy(&nctx_cb,
		FIRST_SIZE(struct memslot_callbacks, commit));
	v->cfg = exact_copy(&full, sizeof(full));
}

static void first_versions_free(struct first_versions *v)
{
	free(v->cfg);
	free(v->alloc);
	free(v->rcu);
	free(v->cb);
}

/*
 * Hooks in structs of their first size work, their missing @ctx reads as
 * NULL, and the VM keeps using them after the caller has freed the
 * structs (ASan reports any read of the caller's memory after create).
 */
static void test_sized_hooks(void **state)
{
	struct memslot_region r = { .slot = 1, .memory_size = PAGE };
	struct first_versions v;
	struct memslot_vm *vm;

	(void)state;
	first_versions_make(&v);
	hook_calls = 0;
	assert_int_equal(memslot_vm_create(v.cfg, &vm), 0);
	assert_true(hook_calls > 0);		/* the allocator */
	first_versions_free(&v);
	hook_calls = 0;
	memslot_thread_register(vm);
	memslot_read_lock(vm);
	memslot_read_unlock(vm);
	memslot_thread_unregister(vm);
	assert_int_equal(hook_calls, 4);
	assert_int_equal(memslot_set_region(vm, &r, NULL), 0);
	assert_true(hook_calls >= 1000);	/* prepare ran */
	memslot_vm_destroy(vm);
}

/* A config of exactly its first size, on the heap: the pointers past it
 * are not read (ASan), so the defaults apply. */
static void test_sized_config(void **state)
{
	struct memslot_config full;
	struct memslot_config *cfg;
	struct memslot_vm *vm;

	(void)state;
	base_config(&full);
	full.alloc = &nctx_alloc;
	cfg = exact_copy(&full, FIRST_SIZE(struct memslot_config, max_gfn));
	hook_calls = 0;
	assert_int_equal(memslot_vm_create(cfg, &vm), 0);
	assert_int_equal(hook_calls, 0);	/* default allocator */
	free(cfg);
	memslot_vm_destroy(vm);
}

/* Each hook struct one byte short of its first version is refused. */
static void test_sized_too_small(void **state)
{
	struct first_versions v;
	size_t *sizes[3];

	(void)state;
	first_versions_make(&v);
	sizes[0] = &v.alloc->size;
	sizes[1] = &v.rcu->size;
	sizes[2] = &v.cb->size;
	for (int i = 0; i < 3; i++) {
		size_t keep = *sizes[i];

		*sizes[i] = keep - 1;
		expect_einval(v.cfg);
		*sizes[i] = 0;
		expect_einval(v.cfg);
		*sizes[i] = keep;
	}
	hook_calls = 0;
	expect_einval(NULL);
	first_versions_free(&v);
}

/* Required hooks may not be NULL. */
static void test_missing_hooks(void **state)
{
	struct memslot_allocator a = nctx_alloc;
	struct memslot_rcu_ops rcu = nctx_rcu_ops;
	struct memslot_config cfg;

	(void)state;
	base_config(&cfg);
	cfg.alloc = &a;
	a.malloc = NULL;
	expect_einval(&cfg);
	a = nctx_alloc;
	a.free = NULL;
	expect_einval(&cfg);
	base_config(&cfg);
	cfg.rcu = &rcu;
	rcu.synchronize = NULL;
	expect_einval(&cfg);
	rcu = nctx_rcu_ops;
	rcu.read_unlock = NULL;
	expect_einval(&cfg);
}

/* A newer caller's larger struct is accepted; its extra bytes are
 * ignored.  Changing the caller's struct after create changes nothing. */
static void test_sized_larger_and_copied(void **state)
{
	struct {
		struct memslot_callbacks cb;
		char newer[64];
	} big;
	struct memslot_region r = { .slot = 2, .memory_size = PAGE };
	struct memslot_config cfg;
	struct memslot_vm *vm;

	(void)state;
	memset(&big, 0xff, sizeof(big));
	big.cb = nctx_cb;
	big.cb.ctx = NULL;
	big.cb.flush = NULL;
	big.cb.commit = NULL;
	big.cb.size = sizeof(big);
	base_config(&cfg);
	cfg.callbacks = &big.cb;
	assert_int_equal(memslot_vm_create(&cfg, &vm), 0);
	big.cb.prepare = refuse_prepare;
	cfg.callbacks = NULL;
	hook_calls = 0;
	assert_int_equal(memslot_set_region(vm, &r, NULL), 0);
	assert_int_equal(hook_calls, 1000);
	memslot_vm_destroy(vm);
	assert_int_equal(counter.live, 0);
}

static void test_null_out(void **state)
{
	struct memslot_config cfg;

	(void)state;
	base_config(&cfg);
	counter.calls = 0;
	assert_int_equal(memslot_vm_create(&cfg, NULL), -EINVAL);
	assert_int_equal(counter.calls, 0);
}

static void test_destroy_null(void **state)
{
	(void)state;
	memslot_vm_destroy(NULL);
	memslot_vcpu_destroy(NULL);
}

/* A VM with two address spaces and the same slot (gfn 16..31) in each. */
static struct memslot_vm *two_as_vm(void)
{
	struct memslot_config cfg;
	struct memslot_vm *vm;

	base_config(&cfg);
	cfg.nr_as = 2;
	assert_int_equal(memslot_vm_create(&cfg, &vm), 0);
	for (uint32_t as_id = 0; as_id < 2; as_id++) {
		struct memslot_region r = {
			.slot = as_id << 16 | 3,
			.guest_phys_addr = 16 * PAGE,
			.memory_size = 16 * PAGE,
			.userspace_addr = 1ull << 30,
		};

		assert_int_equal(memslot_set_region(vm, &r, NULL), 0);
	}
	return vm;
}

/* Every lookup and query with a bad address space finds nothing. */
static void check_bad_as(struct memslot_vm *vm, struct memslot_vcpu *vcpu,
			 unsigned int as_id)
{
	struct memslot_stats st;
	uint64_t hva = 7;
	uint32_t id = 7;

	assert_null(memslot_gfn_to_slot(vm, as_id, 20));
	assert_null(memslot_search(vm, as_id, 20, false));
	assert_null(memslot_search(vm, as_id, 20, true));
	assert_null(memslot_id_to_slot(vm, as_id, 3));
	assert_null(memslot_vcpu_gfn_to_slot(vcpu, as_id, 20));
	assert_int_equal(memslot_gfn_to_hva(vm, as_id, 20, false, &hva),
			 -ENOENT);
	assert_int_equal(hva, 7);
	assert_int_equal(memslot_generation(vm, as_id), 0);
	assert_int_equal(memslot_vm_stats(vm, as_id, &st), -EINVAL);
	assert_int_equal(memslot_lowest_free_id(vm, as_id, &id), -EINVAL);
	assert_int_equal(id, 7);
}

static void test_bad_as_id(void **state)
{
	static const unsigned int bad[] = { 2, 3, 255, 256, 65535, ~0u };
	struct memslot_vm *vm = two_as_vm();
	struct memslot_vcpu *vcpu;
	uint64_t hva;

	(void)state;
	assert_int_equal(memslot_vcpu_create(vm, &vcpu), 0);
	memslot_read_lock(vm);
	/* the valid ones do find the slot, so NULL below means something */
	for (unsigned int as_id = 0; as_id < 2; as_id++) {
		assert_non_null(memslot_gfn_to_slot(vm, as_id, 20));
		assert_non_null(memslot_vcpu_gfn_to_slot(vcpu, as_id, 20));
		assert_non_null(memslot_id_to_slot(vm, as_id, 3));
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check_bad_as(vm, vcpu, bad[i]);
	/* ids beyond total_slots in a good address space */
	assert_null(memslot_id_to_slot(vm, 0, 32767));
	assert_null(memslot_id_to_slot(vm, 0, ~0u));
	memslot_read_unlock(vm);
	assert_int_equal(memslot_slot_gfn_to_hva(NULL, 20, false, &hva),
			 -ENOENT);
	memslot_vcpu_destroy(vcpu);
	memslot_vm_destroy(vm);
	assert_int_equal(counter.live, 0);
}

static unsigned int count_gfn(struct memslot_vm *vm, unsigned int as_id,
			      uint64_t start, uint64_t end)
{
	struct memslot_gfn_iter it;
	unsigned int n = 0;

	memslot_gfn_iter_init(&it, vm, as_id, start, end);
	while (memslot_gfn_iter_next(&it))
		n++;
	return n;
}

static unsigned int count_hva(struct memslot_vm *vm, uint64_t start,
			      uint64_t end)
{
	struct memslot_hva_iter it;
	struct memslot_hva_hit hit;
	unsigned int n = 0;

	memslot_hva_iter_init(&it, vm, start, end);
	while (memslot_hva_iter_next(&it, &hit))
		n++;
	return n;
}

static void test_empty_ranges(void **state)
{
	const uint64_t h = 1ull << 30;
	struct memslot_vm *vm = two_as_vm();

	(void)state;
	memslot_read_lock(vm);
	/* controls: ranges inside the slots find them */
	assert_int_equal(count_gfn(vm, 0, 0, UINT64_MAX), 1);
	assert_int_equal(count_gfn(vm, 1, 20, 21), 1);
	assert_int_equal(count_hva(vm, 0, UINT64_MAX), 2);
	assert_int_equal(count_hva(vm, h, h + 1), 2);
	/* empty and reversed ranges, also right on the slots */
	assert_int_equal(count_gfn(vm, 0, 20, 20), 0);
	assert_int_equal(count_gfn(vm, 0, 16, 16), 0);
	assert_int_equal(count_gfn(vm, 0, 31, 17), 0);
	assert_int_equal(count_gfn(vm, 0, UINT64_MAX, 0), 0);
	assert_int_equal(count_gfn(vm, 0, UINT64_MAX, UINT64_MAX), 0);
	assert_int_equal(count_gfn(vm, 2, 0, UINT64_MAX), 0);
	assert_int_equal(count_gfn(vm, ~0u, 0, UINT64_MAX), 0);
	assert_int_equal(count_hva(vm, h, h), 0);
	assert_int_equal(count_hva(vm, h + PAGE, h + 1), 0);
	assert_int_equal(count_hva(vm, UINT64_MAX, 0), 0);
	assert_int_equal(count_hva(vm, UINT64_MAX, UINT64_MAX), 0);
	memslot_read_unlock(vm);
	memslot_vm_destroy(vm);
}

/* Every writer entry point refuses to run inside a read section, where
 * its grace period would wait for the caller itself. */
static void test_deadlock(void **state)
{
	struct memslot_region r = {
		.slot = 5,
		.guest_phys_addr = 64 * PAGE,
		.memory_size = PAGE,
	};
	struct memslot_txn_result res = { 0 };
	struct memslot_vm *vm = two_as_vm();
	uint64_t gen = memslot_generation(vm, 0);
	enum memslot_rule rule = MEMSLOT_RULE_OK;

	(void)state;
	memslot_read_lock(vm);
	memslot_read_lock(vm);	/* nested */
	assert_int_equal(memslot_set_region(vm, &r, &rule), -EDEADLK);
	assert_int_equal(rule, MEMSLOT_RULE_BUSY);
	memslot_read_unlock(vm);
	rule = MEMSLOT_RULE_OK;
	assert_int_equal(memslot_set_internal_region(vm, &r, &rule), -EDEADLK);
	assert_int_equal(rule, MEMSLOT_RULE_BUSY);
	assert_int_equal(memslot_set_regions(vm, &r, 1, &res), -EDEADLK);
	assert_int_equal(res.rule, MEMSLOT_RULE_BUSY);
	res.rule = MEMSLOT_RULE_OK;
	assert_int_equal(memslot_set_regions_deferred(vm, &r, 1, &res),
			 -EDEADLK);
	assert_int_equal(res.rule, MEMSLOT_RULE_BUSY);
	assert_null(memslot_id_to_slot(vm, 0, 5));
	assert_int_equal(memslot_generation(vm, 0), gen);
	memslot_read_unlock(vm);
	/* outside the section the same request goes through */
	assert_int_equal(memslot_set_region(vm, &r, &rule), 0);
	assert_int_equal(rule, MEMSLOT_RULE_OK);
	assert_int_equal(memslot_generation(vm, 0), gen + 2);
	memslot_vm_destroy(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_null_config),
		cmocka_unit_test(test_page_shift),
		cmocka_unit_test(test_nr_as),
		cmocka_unit_test(test_id_bits),
		cmocka_unit_test(test_user_above_total),
		cmocka_unit_test(test_ids_fit),
		cmocka_unit_test(test_old_size),
		cmocka_unit_test(test_sized_hooks),
		cmocka_unit_test(test_sized_config),
		cmocka_unit_test(test_sized_too_small),
		cmocka_unit_test(test_missing_hooks),
		cmocka_unit_test(test_sized_larger_and_copied),
		cmocka_unit_test(test_null_out),
		cmocka_unit_test(test_destroy_null),
		cmocka_unit_test(test_bad_as_id),
		cmocka_unit_test(test_empty_ranges),
		cmocka_unit_test(test_deadlock),
	};

	tc_alloc_init(&counter);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
