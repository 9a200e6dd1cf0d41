/* SPDX-License-Identifier: MIT */
/*
 * Grace-period backends: a grace period really waits for a reader that was
 * inside its section, and registration is counted per thread.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include <memslot/memslot.h>

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

struct reader_ctx {
	const struct memslot_rcu_ops *rcu;
	atomic_int inside;	/* 1 once the reader holds its section */
	atomic_int release;	/* set by the test to end the section */
	atomic_int left;	/* 1 once the section has ended */
};

static void *reader(void *arg)
{
	struct reader_ctx *c = arg;

	c->rcu->register_thread(c->rcu->ctx);
	c->rcu->read_lock(c->rcu->ctx);
	atomic_store(&c->inside, 1);
	while (!atomic_load(&c->release))
		sleep_us(1000);
	atomic_store(&c->left, 1);
	c->rcu->read_unlock(c->rcu->ctx);
	c->rcu->unregister_thread(c->rcu->ctx);
	return NULL;
}

static void *releaser(void *arg)
{
	struct reader_ctx *c = arg;

	sleep_us(50 * 1000);
	atomic_store(&c->release, 1);
	return NULL;
}

/* synchronize must not return while a pre-existing reader is inside. */
static void check_waits(const struct memslot_rcu_ops *rcu)
{
	struct reader_ctx c = { .rcu = rcu };
	pthread_t r, w;

	assert_int_equal(pthread_create(&r, NULL, reader, &c), 0);
	while (!atomic_load(&c.inside))
		sleep_us(1000);
	assert_int_equal(pthread_create(&w, NULL, releaser, &c), 0);
	rcu->synchronize(rcu->ctx);
	assert_int_equal(atomic_load(&c.left), 1);
	pthread_join(r, NULL);
	pthread_join(w, NULL);
}

static void test_urcu_waits(void **state)
{
	(void)state;
	check_waits(memslot_rcu_urcu_memb());
}

static void test_counter_waits(void **state)
{
	(void)state;
	check_waits(memslot_rcu_counter());
}

/* A thread reading two VMs registers with both; liburcu must see one. */
static void check_double_register(const struct memslot_rcu_ops *rcu)
{
	struct memslot_config cfg;
	struct memslot_vm *a, *b;

	memslot_config_init_x86_64(&cfg);
	cfg.rcu = rcu;
	assert_int_equal(memslot_vm_create(&cfg, &a), 0);
	assert_int_equal(memslot_vm_create(&cfg, &b), 0);
	memslot_thread_register(a);
	memslot_thread_register(b);
	memslot_read_lock(a);
	memslot_read_lock(b);
	assert_null(memslot_gfn_to_slot(b, 0, 1));
	memslot_read_unlock(b);
	memslot_read_unlock(a);
	memslot_thread_unregister(b);
	/* Still registered for a: a section and a grace period still work. */
	memslot_read_lock(a);
	memslot_read_unlock(a);
	rcu->synchronize(rcu->ctx);
	memslot_thread_unregister(a);
	memslot_vm_destroy(a);
	memslot_vm_destroy(b);
}

static void test_urcu_double_register(void **state)
{
	(void)state;
	check_double_register(memslot_rcu_urcu_memb());
}

static void test_counter_double_register(void **state)
{
	(void)state;
	check_double_register(memslot_rcu_counter());
}

/* Writer-side calls inside a read section would wait for their own
 * thread: refused in every build. */
static void test_deadlock_inside_section(void **state)
{
	struct memslot_listener l = { .size = sizeof(l) };
	struct memslot_config cfg;
	struct memslot_stats st;
	struct memslot_vm *vm;
	uint32_t id;

	(void)state;
	memslot_config_init_x86_64(&cfg);
	cfg.rcu = memslot_rcu_none();
	assert_int_equal(memslot_vm_create(&cfg, &vm), 0);
	memslot_read_lock(vm);
	assert_int_equal(memslot_vm_stats(vm, 0, &st), -EDEADLK);
	assert_int_equal(memslot_lowest_free_id(vm, 0, &id), -EDEADLK);
	assert_int_equal(memslot_listener_register(vm, &l), -EDEADLK);
	assert_int_equal(memslot_listener_unregister(vm, &l), -EDEADLK);
	assert_int_equal(memslot_vm_wait(vm, 0), -EDEADLK);
	memslot_read_unlock(vm);
	assert_int_equal(memslot_vm_stats(vm, 0, &st), 0);
	assert_int_equal(memslot_lowest_free_id(vm, 0, &id), 0);
	assert_int_equal(id, 0);
	assert_int_equal(memslot_listener_register(vm, &l), 0);
	assert_int_equal(memslot_listener_unregister(vm, &l), 0);
	assert_int_equal(memslot_vm_wait(vm, 0), 0);
	memslot_vm_destroy(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_urcu_waits),
		cmocka_unit_test(test_counter_waits),
		cmocka_unit_test(test_urcu_double_register),
		cmocka_unit_test(test_counter_double_register),
		cmocka_unit_test(test_deadlock_inside_section),
	};

	return cmocka_run_group_tests_name("rcu", tests, NULL, NULL);
}
