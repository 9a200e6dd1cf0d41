/* SPDX-License-Identifier: MIT */
/*
 * Tests of views (memslot_view_get): every lookup through one view sees
 * one layout, however many changes are published meanwhile.
 *
 * Deferred changes publish without waiting for readers, which lets a test
 * publish a change while another thread sits inside its read section at a
 * chosen point: the difference between VM-level lookups (which reload the
 * active layout each time) and view lookups is then deterministic.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <memslot/memslot.h>

#define PAGE 4096ull
#define HVA 0x10000000ull
#define X_GFN 0x100ull
#define Y_GFN 0x900ull

static struct memslot_region region(uint32_t id, uint64_t gfn,
				    uint64_t npages)
{
	return (struct memslot_region){
		.slot = id, .guest_phys_addr = gfn * PAGE,
		.memory_size = npages * PAGE, .userspace_addr = HVA + gfn * PAGE,
	};
}

/* A two-slot transaction is all or nothing: a reader that finds one of
 * the two slots and not the other saw half of it. */
static bool pair_torn(bool x, bool y)
{
	return x != y;
}

static struct memslot_vm *new_vm(void)
{
	struct memslot_config cfg;
	struct memslot_vm *vm;

	memslot_config_init_x86_64(&cfg);
	cfg.rcu = memslot_rcu_counter();
	assert_int_equal(memslot_vm_create(&cfg, &vm), 0);
	return vm;
}

/* ---- basics -------------------------------------------------------------- */

static void test_view_lookups(void **state)
{
	struct memslot_vm *vm = new_vm();
	struct memslot_region r[2] = { region(3, X_GFN, 4), region(7, Y_GFN, 2) };
	struct memslot_vcpu *vcpu;
	struct memslot_gfn_iter it;
	struct memslot_hva_iter hit_it;
	struct memslot_hva_hit hit;
	struct memslot_view *v;
	uint64_t hva;

	(void)state;
	assert_int_equal(memslot_set_regions(vm, r, 2, NULL), 0);
	assert_int_equal(memslot_vcpu_create(vm, &vcpu), 0);
	memslot_thread_register(vm);
	memslot_read_lock(vm);
	assert_null(memslot_view_get(vm, 1));
	v = memslot_view_get(vm, 0);
	assert_non_null(v);
	assert_int_equal(memslot_view_generation(v), memslot_generation(vm, 0));
	assert_int_equal(memslot_view_as_id(v), 0);
	assert_ptr_equal(memslot_view_gfn_to_slot(v, X_GFN + 3),
			 memslot_gfn_to_slot(vm, 0, X_GFN + 3));
	assert_null(memslot_view_gfn_to_slot(v, X_GFN + 4));
	assert_ptr_equal(memslot_view_search(v, X_GFN + 10, true),
			 memslot_view_id_to_slot(v, 3));
	assert_null(memslot_view_search(v, X_GFN + 10, false));
	assert_ptr_equal(memslot_view_id_to_slot(v, 7),
			 memslot_id_to_slot(vm, 0, 7));
	assert_null(memslot_view_id_to_slot(v, 8));
	assert_int_equal(memslot_view_gfn_to_hva(v, Y_GFN + 1, true, &hva), 0);
	assert_int_equal(hva, HVA + (Y_GFN + 1) * PAGE);
	assert_int_equal(memslot_view_gfn_to_hva(v, 0, false, &hva), -ENOENT);
	assert_ptr_equal(memslot_vcpu_view_gfn_to_slot(vcpu, v, Y_GFN),
			 memslot_view_id_to_slot(v, 7));
	memslot_view_gfn_iter_init(&it, v, 0, UINT64_MAX);
	assert_int_equal(memslot_slot_id(memslot_gfn_iter_next(&it)), 3);
	assert_int_equal(memslot_slot_id(memslot_gfn_iter_next(&it)), 7);
	assert_null(memslot_gfn_iter_next(&it));
	memslot_view_hva_iter_init(&hit_it, v, HVA, HVA + (Y_GFN + 1) * PAGE);
	assert_true(memslot_hva_iter_next(&hit_it, &hit));
	assert_int_equal(memslot_slot_id(hit.slot), 3);
	assert_true(memslot_hva_iter_next(&hit_it, &hit));
	assert_int_equal(hit.gfn_start, Y_GFN);
	assert_int_equal(hit.gfn_end, Y_GFN + 1);
	assert_false(memslot_hva_iter_next(&hit_it, &hit));
	memslot_view_hva_iter_init(&hit_it, v, HVA, HVA);
	assert_false(memslot_hva_iter_next(&hit_it, &hit));
	memslot_read_unlock(vm);
	memslot_thread_unregister(vm);
	memslot_vcpu_destroy(vcpu);
	memslot_vm_destroy(vm);
}

/* ---- a change published inside a reader's section ------------------------ */

struct reader {
	struct memslot_vm *vm;
	bool use_view;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stage;		/* 1: X looked up; 2: change published */
	bool x, y;
	uint64_t gen_before, gen_after;
};

static void stage_wait(struct reader *r, int stage)
{
	pthread_mutex_lock(&r->lock);
	while (r->stage < stage)
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
}

static void stage_set(struct reader *r, int stage)
{
	pthread_mutex_lock(&r->lock);
	r->stage = stage;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static bool present(struct reader *r, struct memslot_view *v, uint64_t gfn)
{
	if (r->use_view)
		return memslot_view_gfn_to_slot(v, gfn) != NULL;
	return memslot_gfn_to_slot(r->vm, 0, gfn) != NULL;
}

/* Look X up, let the writer publish, look Y up: one read section. */
static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct memslot_view *v;

	memslot_thread_register(r->vm);
	memslot_read_lock(r->vm);
	v = memslot_view_get(r->vm, 0);
	r->gen_before = memslot_view_generation(v);
	r->x = present(r, v, X_GFN);
	stage_set(r, 1);
	stage_wait(r, 2);
	r->y = present(r, v, Y_GFN);
	r->gen_after = memslot_view_generation(v);
	memslot_read_unlock(r->vm);
	memslot_thread_unregister(r->vm);
	return NULL;
}

/* Returns whether the reader saw half of the two-slot create. */
static bool run_reader(bool use_view)
{
	struct memslot_vm *vm = new_vm();
	struct memslot_region r[2] = { region(1, X_GFN, 1), region(2, Y_GFN, 1) };
	struct memslot_txn_result res = { 0 };
	struct reader rd = { .vm = vm, .use_view = use_view };
	pthread_t t;
	bool torn;

	pthread_mutex_init(&rd.lock, NULL);
	pthread_cond_init(&rd.cond, NULL);
	assert_int_equal(pthread_create(&t, NULL, reader_main, &rd), 0);
	stage_wait(&rd, 1);
	assert_int_equal(memslot_set_regions_deferred(vm, r, 2, &res), 0);
	stage_set(&rd, 2);
	pthread_join(t, NULL);
	assert_int_equal(memslot_vm_wait(vm, res.ticket), 0);
	torn = pair_torn(rd.x, rd.y);
	if (use_view)
		assert_int_equal(rd.gen_before, rd.gen_after);
	memslot_vm_destroy(vm);
	return torn;
}

/*
 * The same reader, the same interleaving: VM-level lookups see half of
 * the transaction (the checker catches it), view lookups never do.
 */
static void test_view_never_torn(void **state)
{
	(void)state;
	assert_false(pair_torn(false, false));
	assert_false(pair_torn(true, true));
	assert_true(run_reader(false));
	assert_false(run_reader(true));
}

/* A vCPU cache entry from an older layout is not returned through a view
 * of a newer one, and the other way round. */
static void test_vcpu_view_generation(void **state)
{
	struct memslot_vm *vm = new_vm();
	struct memslot_region x = region(1, X_GFN, 4);
	struct memslot_vcpu *vcpu;
	const struct memslot_slot *a, *b;
	struct memslot_view *v;

	(void)state;
	assert_int_equal(memslot_set_region(vm, &x, NULL), 0);
	assert_int_equal(memslot_vcpu_create(vm, &vcpu), 0);
	memslot_thread_register(vm);
	memslot_read_lock(vm);
	v = memslot_view_get(vm, 0);
	a = memslot_vcpu_view_gfn_to_slot(vcpu, v, X_GFN);
	assert_non_null(a);
	memslot_read_unlock(vm);
	x.flags = MEMSLOT_MEM_LOG_DIRTY_PAGES;
	assert_int_equal(memslot_set_region(vm, &x, NULL), 0);
	memslot_read_lock(vm);
	v = memslot_view_get(vm, 0);
	b = memslot_vcpu_view_gfn_to_slot(vcpu, v, X_GFN + 1);
	assert_ptr_equal(b, memslot_view_id_to_slot(v, 1));
	assert_ptr_not_equal(a, b);
	assert_int_equal(memslot_slot_flags(b), MEMSLOT_MEM_LOG_DIRTY_PAGES);
	memslot_read_unlock(vm);
	memslot_thread_unregister(vm);
	memslot_vcpu_destroy(vcpu);
	memslot_vm_destroy(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_view_lookups),
		cmocka_unit_test(test_view_never_torn),
		cmocka_unit_test(test_vcpu_view_generation),
	};

	return cmocka_run_group_tests_name("view", tests, NULL, NULL);
}
