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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include <urcu/urcu-memb.h>
#include <urcu/static/urcu-memb.h>

#include <memslot/memslot.h>

#include "rcu_misuse.h"

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
	unsigned long unreg = rcu_misuse_count(RCU_MISUSE_UNREGISTERED);
	size_t readers = rcu_counter_readers();
	size_t mine = rcu == memslot_rcu_counter();	/* counter's list */
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
	assert_int_equal(rcu_counter_readers(), readers + mine);
	memslot_thread_unregister(b);
	/* Still registered for a, once: a section is no misuse (no implicit
	 * registration) and a grace period still works. */
	assert_int_equal(rcu_counter_readers(), readers + mine);
	memslot_read_lock(a);
	memslot_read_unlock(a);
	rcu->synchronize(rcu->ctx);
	assert_int_equal(rcu_misuse_count(RCU_MISUSE_UNREGISTERED), unreg);
	memslot_thread_unregister(a);
	assert_int_equal(rcu_counter_readers(), readers);
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

/* ---- misuse of the read side is harmless -------------------------------- */

static struct memslot_vm *vm_with(const struct memslot_rcu_ops *rcu)
{
	struct memslot_config cfg;
	struct memslot_vm *vm;

	memslot_config_init_x86_64(&cfg);
	cfg.rcu = rcu;
	assert_int_equal(memslot_vm_create(&cfg, &vm), 0);
	return vm;
}

struct misuse_ctx {
	struct memslot_vm *vm;
	bool do_register;	/* call memslot_thread_register() first */
	bool extra_unlock;	/* an unlock with nothing open, first */
	atomic_int inside;
	atomic_int release;
	atomic_int left;
};

/* A reader that may skip registration or start with a stray unlock, and
 * exits without unregistering. */
static void *misuse_reader(void *arg)
{
	struct misuse_ctx *c = arg;

	if (c->do_register)
		memslot_thread_register(c->vm);
	if (c->extra_unlock)
		memslot_read_unlock(c->vm);
	memslot_read_lock(c->vm);
	atomic_store(&c->inside, 1);
	while (!atomic_load(&c->release))
		sleep_us(1000);
	atomic_store(&c->left, 1);
	memslot_read_unlock(c->vm);
	return NULL;
}

static void *misuse_releaser(void *arg)
{
	struct misuse_ctx *c = arg;

	sleep_us(50 * 1000);
	atomic_store(&c->release, 1);
	return NULL;
}

/* The grace period must still wait for the misusing reader. */
static void check_misuse_waits(const struct memslot_rcu_ops *rcu,
			       bool do_register, bool extra_unlock)
{
	struct misuse_ctx c = { .do_register = do_register,
				.extra_unlock = extra_unlock };
	struct memslot_region reg = { .slot = 1, .memory_size = 4096 };
	pthread_t r, w;

	c.vm = vm_with(rcu);
	assert_int_equal(pthread_create(&r, NULL, misuse_reader, &c), 0);
	while (!atomic_load(&c.inside))
		sleep_us(1000);
	assert_int_equal(pthread_create(&w, NULL, misuse_releaser, &c), 0);
	assert_int_equal(memslot_set_region(c.vm, &reg, NULL), 0);
	assert_int_equal(atomic_load(&c.left), 1);
	pthread_join(r, NULL);
	pthread_join(w, NULL);
	memslot_vm_destroy(c.vm);
}

/* (a) A thread that never registered is registered by its first read
 * lock (and unregistered when it exits). */
static void test_misuse_unregistered(void **state)
{
	unsigned long seen = rcu_misuse_count(RCU_MISUSE_UNREGISTERED);
	size_t readers = rcu_counter_readers();

	(void)state;
	check_misuse_waits(memslot_rcu_counter(), false, false);
	check_misuse_waits(memslot_rcu_urcu_memb(), false, false);
	assert_int_equal(rcu_counter_readers(), readers);
#ifndef NDEBUG
	assert_int_equal(rcu_misuse_count(RCU_MISUSE_UNREGISTERED), seen + 2);
#else
	(void)seen;
#endif
}

/* (b) An unlock with no section open is ignored: the next section is a
 * real one, and the thread is not left "inside" a section. */
static void test_misuse_unbalanced(void **state)
{
	unsigned long seen = rcu_misuse_count(RCU_MISUSE_UNBALANCED);
	struct memslot_vm *vm = vm_with(memslot_rcu_none());
	struct memslot_stats st;

	(void)state;
	check_misuse_waits(memslot_rcu_counter(), true, true);
	check_misuse_waits(memslot_rcu_urcu_memb(), true, true);
	memslot_read_unlock(vm);
	assert_int_equal(memslot_vm_stats(vm, 0, &st), 0);
	memslot_read_lock(vm);
	assert_int_equal(memslot_vm_stats(vm, 0, &st), -EDEADLK);
#ifndef NDEBUG
	/* the two backends with reader state saw it; "none" has none */
	assert_int_equal(rcu_misuse_count(RCU_MISUSE_UNBALANCED), seen + 2);
#else
	(void)seen;
#endif
	memslot_read_unlock(vm);
	assert_int_equal(memslot_vm_stats(vm, 0, &st), 0);
	memslot_vm_destroy(vm);
}

struct exit_ctx {
	struct memslot_vm *vm;
	atomic_int registered;
	atomic_int go;
};

static void *register_and_exit(void *arg)
{
	struct exit_ctx *c = arg;

	memslot_thread_register(c->vm);
	memslot_read_lock(c->vm);
	memslot_read_unlock(c->vm);
	atomic_store(&c->registered, 1);
	while (!atomic_load(&c->go))
		sleep_us(1000);
	return NULL;	/* no unregister: its VM is gone by now */
}

/* (c) The VM may be destroyed before a reader thread ends; the thread
 * then must not unregister, and its exit drops the registration. */
static void test_misuse_exit_after_destroy(void **state)
{
	size_t readers = rcu_counter_readers();
	struct exit_ctx c;
	pthread_t t;

	(void)state;
	for (int i = 0; i < 2; i++) {
		c.vm = vm_with(i ? memslot_rcu_urcu_memb()
				 : memslot_rcu_counter());
		atomic_init(&c.registered, 0);
		atomic_init(&c.go, 0);
		assert_int_equal(pthread_create(&t, NULL, register_and_exit,
						&c), 0);
		while (!atomic_load(&c.registered))
			sleep_us(1000);
		memslot_vm_destroy(c.vm);
		atomic_store(&c.go, 1);
		pthread_join(t, NULL);
		assert_int_equal(rcu_counter_readers(), readers);
	}
	/* grace periods still work with the thread gone */
	check_waits(memslot_rcu_counter());
	check_waits(memslot_rcu_urcu_memb());
}

struct app_ctx {
	struct memslot_vm *vm;
	atomic_int still_registered;
};

static void *app_registered_reader(void *arg)
{
	struct app_ctx *c = arg;

	urcu_memb_register_thread();
	memslot_thread_register(c->vm);
	memslot_read_lock(c->vm);
	memslot_read_unlock(c->vm);
	memslot_thread_unregister(c->vm);
	/* the application's own registration is left alone */
	atomic_store(&c->still_registered,
		     URCU_TLS(urcu_memb_reader).registered);
	urcu_memb_unregister_thread();
	return NULL;
}

/* (d) A thread the application registered with liburcu itself may also
 * call memslot_thread_register(). */
static void test_misuse_app_registered(void **state)
{
	struct app_ctx c = { .vm = vm_with(memslot_rcu_urcu_memb()) };
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, app_registered_reader, &c),
			 0);
	pthread_join(t, NULL);
	assert_int_equal(atomic_load(&c.still_registered), 1);
	memslot_vm_destroy(c.vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_urcu_waits),
		cmocka_unit_test(test_counter_waits),
		cmocka_unit_test(test_urcu_double_register),
		cmocka_unit_test(test_counter_double_register),
		cmocka_unit_test(test_deadlock_inside_section),
		cmocka_unit_test(test_misuse_unregistered),
		cmocka_unit_test(test_misuse_unbalanced),
		cmocka_unit_test(test_misuse_exit_after_destroy),
		cmocka_unit_test(test_misuse_app_registered),
	};

	return cmocka_run_group_tests_name("rcu", tests, NULL, NULL);
}
