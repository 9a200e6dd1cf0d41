/* SPDX-License-Identifier: MIT */
/*
 * Private: thread-local variables on the read path.
 *
 * A shared library's own thread-locals default to the dynamic TLS models,
 * where every function that touches one calls __tls_get_addr(): measured,
 * that was most of what memslot_read_lock()/memslot_read_unlock() cost on
 * the no-op backend (about 8 ns a section).  The initial-exec model reads
 * them at a fixed offset from the thread pointer instead.  Its price is
 * that a library loaded later with dlopen() takes its initial-exec
 * variables from glibc's small reserve of static TLS: the ones marked
 * here are a few dozen bytes, well inside it.  Cold thread-locals (error
 * text buffers) keep the default model.
 */
#ifndef MEMSLOT_LIB_TLS_H
#define MEMSLOT_LIB_TLS_H

#if defined(__GNUC__) && defined(__ELF__)
#define MEMSLOT_TLS_FAST _Thread_local __attribute__((tls_model("initial-exec")))
#else
#define MEMSLOT_TLS_FAST _Thread_local
#endif

#endif
