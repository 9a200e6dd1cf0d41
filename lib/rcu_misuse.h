/* SPDX-License-Identifier: MIT */
/*
 * Private: read-side misuse the backends make harmless.  Builds without
 * NDEBUG also report each kind once per process on stderr and count it, so
 * tests can see that it happened.
 */
#ifndef MEMSLOT_LIB_RCU_MISUSE_H
#define MEMSLOT_LIB_RCU_MISUSE_H

#include <stddef.h>

enum rcu_misuse {
	RCU_MISUSE_UNREGISTERED,	/* read lock of a thread not registered */
	RCU_MISUSE_UNBALANCED,		/* read unlock with no section open */
	RCU_MISUSE_COUNT
};

/* Times @kind happened in this process (always 0 with NDEBUG). */
unsigned long rcu_misuse_count(enum rcu_misuse kind);

/* Threads on the counter backend's reader list (for tests). */
size_t rcu_counter_readers(void);

#endif
