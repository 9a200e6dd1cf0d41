/* SPDX-License-Identifier: MIT */
/*
 * Grace-period backends: liburcu (memb flavor, the default), a portable one
 * on C11 atomics (visible to ThreadSanitizer), and none.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include <urcu/urcu-memb.h>

#include <memslot/rcu.h>

/* ---- liburcu memb ------------------------------------------------------ */

/*
 * memb: readers only touch a per-thread counter; synchronize uses
 * membarrier(2) to order them, so reads stay as cheap as with the signal
 * flavor without taking a signal.  QSBR would be cheaper still but makes
 * every reader thread announce quiescent states, which a library cannot
 * ask of a VMM's vCPU loop.
 */
static void urcu_lock(void *ctx)
{
	(void)ctx;
	urcu_memb_read_lock();
}

static void urcu_unlock(void *ctx)
{
	(void)ctx;
	urcu_memb_read_unlock();
}

static void urcu_sync(void *ctx)
{
	(void)ctx;
	urcu_memb_synchronize_rcu();
}

/*
 * liburcu asserts that a thread registers once; a VMM thread may read
 * several VMs, each asking it to register.  Count per thread and pass
 * only the first registration and the last unregistration on.
 */
static _Thread_local unsigned int urcu_registrations;

static void urcu_register(void *ctx)
{
	(void)ctx;
	if (urcu_registrations++ == 0)
		urcu_memb_register_thread();
}

static void urcu_unregister(void *ctx)
{
	(void)ctx;
	if (urcu_registrations && --urcu_registrations == 0)
		urcu_memb_unregister_thread();
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
	struct reader *next;
};

static _Thread_local struct reader self;
static struct reader *readers;
static pthread_mutex_t readers_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t global_epoch = 1;

static void counter_register(void *ctx)
{
	(void)ctx;
	if (self.registrations++)
		return;
	pthread_mutex_lock(&readers_lock);
	self.next = readers;
	readers = &self;
	pthread_mutex_unlock(&readers_lock);
}

static void counter_unregister(void *ctx)
{
	struct reader **p;

	(void)ctx;
	if (!self.registrations || --self.registrations)
		return;
	pthread_mutex_lock(&readers_lock);
	for (p = &readers; *p && *p != &self; p = &(*p)->next)
		;
	if (*p)
		*p = self.next;
	pthread_mutex_unlock(&readers_lock);
}

static void counter_lock(void *ctx)
{
	(void)ctx;
	if (self.nest++ == 0)
		atomic_store(&self.epoch, atomic_load(&global_epoch));
}

static void counter_unlock(void *ctx)
{
	(void)ctx;
	if (--self.nest == 0)
		atomic_store(&self.epoch, 0);
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
