/* SPDX-License-Identifier: MIT */
/*
 * Grace-period backends: liburcu (memb flavor, the default), a portable one
 * on C11 atomics (visible to ThreadSanitizer), and none.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <urcu/urcu-memb.h>
/* For the reader's "registered" bit, which liburcu has no call for. */
#include <urcu/static/urcu-memb.h>

#include <memslot/rcu.h>

#include "rcu_misuse.h"
#include "tls.h"

/* ---- misuse ------------------------------------------------------------ */

#ifndef NDEBUG
static _Atomic unsigned long misuse_seen[RCU_MISUSE_COUNT];

static const char *const misuse_text[RCU_MISUSE_COUNT] = {
	[RCU_MISUSE_UNREGISTERED] = "memslot_read_lock() on a thread that "
		"did not call memslot_thread_register(); registered it",
	[RCU_MISUSE_UNBALANCED] = "memslot_read_unlock() without a matching "
		"memslot_read_lock(); ignored",
};

static void misuse(enum rcu_misuse kind)
{
	if (atomic_fetch_add(&misuse_seen[kind], 1) == 0)
		fprintf(stderr, "libmemslot: %s\n", misuse_text[kind]);
}

unsigned long rcu_misuse_count(enum rcu_misuse kind)
{
	return atomic_load(&misuse_seen[kind]);
}
#else
static void misuse(enum rcu_misuse kind)
{
	(void)kind;
}

unsigned long rcu_misuse_count(enum rcu_misuse kind)
{
	(void)kind;
	return 0;
}
#endif

/*
 * Thread exit drops whatever registration the thread still holds, so a
 * thread that never unregisters (or whose VM is gone) leaves nothing behind
 * in liburcu's registry or the counter backend's list.
 */
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static bool exit_key_ok;

static void on_thread_exit(void *arg);

static void exit_key_create(void)
{
	exit_key_ok = pthread_key_create(&exit_key, on_thread_exit) == 0;
}

/* Arm the thread-exit cleanup for the calling thread. */
static void exit_hook_arm(void)
{
	pthread_once(&exit_once, exit_key_create);
	if (exit_key_ok)
		pthread_setspecific(exit_key, &exit_key);
}

/* ---- liburcu memb ------------------------------------------------------ */

/*
 * memb: readers only touch a per-thread counter; synchronize uses
 * membarrier(2) to order them, so reads stay as cheap as with the signal
 * flavor without taking a signal.  QSBR would be cheaper still but makes
 * every reader thread announce quiescent states, which a library cannot
 * ask of a VMM's vCPU loop.
 */
/*
 * liburcu asserts that a thread registers once, and a VMM thread may read
 * several VMs, or be registered by the VMM itself.  The library counts its
 * own registrations per thread, registers with liburcu only a thread that
 * is not registered yet, and unregisters only what it registered.
 */
struct urcu_thread {
	unsigned int regs;	/* memslot_thread_register() calls */
	unsigned int nest;	/* read sections open */
	bool ready;		/* registered, by us or by the application */
	bool ours;		/* we called urcu_memb_register_thread() */
	bool implicit;		/* registered by a read lock, until exit */
};

static MEMSLOT_TLS_FAST struct urcu_thread ut;

static void urcu_attach(void)
{
	if (ut.ready)
		return;
	if (!URCU_TLS(urcu_memb_reader).registered) {
		urcu_memb_register_thread();
		ut.ours = true;
		exit_hook_arm();
	}
	ut.ready = true;
}

static void urcu_detach(void)
{
	if (ut.ours)
		urcu_memb_unregister_thread();
	ut.ours = false;
	ut.ready = false;
}

static void urcu_lock(void *ctx)
{
	(void)ctx;
	if (!ut.ready) {
		misuse(RCU_MISUSE_UNREGISTERED);
		ut.implicit = true;
		urcu_attach();
	}
	ut.nest++;
	urcu_memb_read_lock();
}

static void urcu_unlock(void *ctx)
{
	(void)ctx;
	if (!ut.nest) {
		misuse(RCU_MISUSE_UNBALANCED);
		return;
	}
	ut.nest--;
	urcu_memb_read_unlock();
}

static void urcu_sync(void *ctx)
{
	(void)ctx;
	urcu_memb_synchronize_rcu();
}

static void urcu_register(void *ctx)
{
	(void)ctx;
	if (ut.regs++ == 0)
		urcu_attach();
}

static void urcu_unregister(void *ctx)
{
	(void)ctx;
	if (ut.regs && --ut.regs == 0 && !ut.implicit && !ut.nest)
		urcu_detach();
}

static const struct memslot_rcu_ops urcu_memb_ops = {
	.size = sizeof(struct memslot_rcu_ops),
	.read_lock = urcu_lock,
	.read_unlock = urcu_unlock,
	.synchronize = urcu_sync,
	.register_thread = urcu_register,
	.unregister_thread = urcu_unregister,
};

const struct memslot_rcu_ops *memslot_rcu_urcu_memb(void)
{
	return &urcu_memb_ops;
}

/* ---- counter: epochs on C11 atomics ------------------------------------ */

/*
 * Each registered thread publishes the epoch it entered its outermost read
 * section in (0 when outside).  synchronize starts a new epoch and waits
 * until no thread is still inside a section that began before it.  Every
 * step is a seq_cst atomic, so a reader that entered too late to be seen
 * by the scan also sees the pointer the writer published before the scan.
 */
struct reader {
	_Atomic uint64_t epoch;
	unsigned int nest;
	unsigned int registrations;	/* one per VM that registered us */
	bool linked;			/* on the readers list */
	bool implicit;			/* linked by a read lock, until exit */
	struct reader *next;
};

static MEMSLOT_TLS_FAST struct reader self;
static struct reader *readers;
static pthread_mutex_t readers_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t global_epoch = 1;

static void counter_link(void)
{
	if (self.linked)
		return;
	pthread_mutex_lock(&readers_lock);
	self.next = readers;
	readers = &self;
	self.linked = true;
	pthread_mutex_unlock(&readers_lock);
	exit_hook_arm();
}

static void counter_unlink(void)
{
	struct reader **p;

	if (!self.linked)
		return;
	pthread_mutex_lock(&readers_lock);
	for (p = &readers; *p && *p != &self; p = &(*p)->next)
		;
	if (*p)
		*p = self.next;
	self.linked = false;
	pthread_mutex_unlock(&readers_lock);
}

static void counter_register(void *ctx)
{
	(void)ctx;
	if (self.registrations++ == 0)
		counter_link();
}

static void counter_unregister(void *ctx)
{
	(void)ctx;
	if (!self.registrations || --self.registrations)
		return;
	if (!self.implicit && !self.nest)
		counter_unlink();
}

static void counter_lock(void *ctx)
{
	(void)ctx;
	if (!self.linked) {
		misuse(RCU_MISUSE_UNREGISTERED);
		self.implicit = true;
		counter_link();
	}
	if (self.nest++ == 0)
		atomic_store(&self.epoch, atomic_load(&global_epoch));
}

static void counter_unlock(void *ctx)
{
	(void)ctx;
	if (!self.nest) {
		misuse(RCU_MISUSE_UNBALANCED);
		return;
	}
	if (--self.nest == 0)
		atomic_store(&self.epoch, 0);
}

size_t rcu_counter_readers(void)
{
	size_t n = 0;

	pthread_mutex_lock(&readers_lock);
	for (struct reader *r = readers; r; r = r->next)
		n++;
	pthread_mutex_unlock(&readers_lock);
	return n;
}

static void on_thread_exit(void *arg)
{
	(void)arg;
	/* A thread that exits inside a section would block writers
	 * forever; it is gone, so its section is over. */
	atomic_store(&self.epoch, 0);
	counter_unlink();
	urcu_detach();
}

static void wait_for(struct reader *r, uint64_t epoch)
{
	uint64_t seen;

	while ((seen = atomic_load(&r->epoch)) != 0 && seen < epoch)
		sched_yield();
}

static void counter_sync(void *ctx)
{
	uint64_t epoch;

	(void)ctx;
	epoch = atomic_fetch_add(&global_epoch, 1) + 1;
	pthread_mutex_lock(&readers_lock);
	for (struct reader *r = readers; r; r = r->next)
		wait_for(r, epoch);
	pthread_mutex_unlock(&readers_lock);
}

static const struct memslot_rcu_ops counter_ops = {
	.size = sizeof(struct memslot_rcu_ops),
	.read_lock = counter_lock,
	.read_unlock = counter_unlock,
	.synchronize = counter_sync,
	.register_thread = counter_register,
	.unregister_thread = counter_unregister,
};

const struct memslot_rcu_ops *memslot_rcu_counter(void)
{
	return &counter_ops;
}

/* ---- none -------------------------------------------------------------- */

static void nop(void *ctx)
{
	(void)ctx;
}

static const struct memslot_rcu_ops none_ops = {
	.size = sizeof(struct memslot_rcu_ops),
	.read_lock = nop,
	.read_unlock = nop,
	.synchronize = nop,
};

const struct memslot_rcu_ops *memslot_rcu_none(void)
{
	return &none_ops;
}
