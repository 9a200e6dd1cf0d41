/* SPDX-License-Identifier: MIT */
/*
 * Grace-period backends.  Readers bracket lookups with read_lock/read_unlock;
 * the writer calls synchronize after publishing a set and before editing
 * the set it replaced.  The default is liburcu's memb flavor; a VMM with its
 * own RCU (QEMU has one) plugs it in here, and a single-threaded emulator
 * uses the "none" backend.
 */
#ifndef MEMSLOT_RCU_H
#define MEMSLOT_RCU_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * struct memslot_rcu_ops - a grace-period implementation
 * @size: sizeof(struct memslot_rcu_ops), so the struct can grow
 * @read_lock: enter a read-side section; must nest
 * @read_unlock: leave it
 * @synchronize: return once every read section that was open on entry
 *	has closed; must imply a full memory barrier on both ends
 * @register_thread: make the calling thread a reader (may be NULL)
 * @unregister_thread: undo it (may be NULL)
 * @ctx: passed to every hook
 */
struct memslot_rcu_ops {
	size_t size;
	void (*read_lock)(void *ctx);
	void (*read_unlock)(void *ctx);
	void (*synchronize)(void *ctx);
	void (*register_thread)(void *ctx);
	void (*unregister_thread)(void *ctx);
	void *ctx;
};

/**
 * memslot_rcu_urcu_memb() - liburcu's memb flavor (the default)
 *
 * Readers cost a per-thread counter update and a compiler barrier;
 * synchronize uses membarrier(2).  Reader threads must register.
 * Return: a static backend.
 */
const struct memslot_rcu_ops *memslot_rcu_urcu_memb(void);

/**
 * memslot_rcu_counter() - a self-contained backend on C11 atomics
 *
 * Readers increment a per-thread nesting counter with sequentially
 * consistent atomics; synchronize waits for every registered thread that
 * was inside a section.  Slower readers than liburcu, but every ordering
 * is visible to ThreadSanitizer, so the stress tests use it.
 * Reader threads must register.
 * Return: a static backend.
 */
const struct memslot_rcu_ops *memslot_rcu_counter(void);

/**
 * memslot_rcu_none() - no grace periods, for single-threaded users
 *
 * Every hook is a no-op.  Lookups and changes must then never run
 * concurrently.
 * Return: a static backend.
 */
const struct memslot_rcu_ops *memslot_rcu_none(void);

#ifdef __cplusplus
}
#endif

#endif /* MEMSLOT_RCU_H */
