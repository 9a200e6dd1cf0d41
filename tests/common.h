/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the test programs (built once, as the static library
 * test_common): seeded random numbers, the length of timed cases, region
 * requests, snapshots of a VM's layout to show that a refused or failed
 * call changed nothing, and an allocator that counts bytes and fails a
 * chosen call.
 *
 * The helpers that check something fail the running cmocka test, so they
 * are for the main thread of a cmocka test only.
 */
#ifndef MEMSLOT_TESTS_COMMON_H
#define MEMSLOT_TESTS_COMMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <memslot/memslot.h>

#define TC_PAGE 4096ull

/* Defined to 1 in a ThreadSanitizer build (gcc and clang spell it apart). */
#if defined(__SANITIZE_THREAD__)
#define TC_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TC_UNDER_TSAN 1
#endif
#endif

/* ---- random numbers ----------------------------------------------------- */

/*
 * Two small generators, the same on every platform, so a seed printed by
 * a failing run reproduces it anywhere.  Each advances the 64-bit state
 * @s, which must not be 0.
 */

/* xorshift64*: the default. */
uint64_t tc_rng(uint64_t *s);

/* Plain xorshift64 (shifts 13, 7, 17): the sequence some tests were
 * written with. */
uint64_t tc_rng_xorshift(uint64_t *s);

/* A uniform-enough number in [0, @n) from tc_rng(); 0 when @n is 0. */
uint64_t tc_rng_below(uint64_t *s, uint64_t n);

/* A nonzero state for tc_rng() that differs well between nearby
 * small seeds (1, 2, 3 ...). */
uint64_t tc_rng_seed(uint64_t seed);

/* ---- timed cases -------------------------------------------------------- */

/* Seconds a timed stress case runs: MEMSLOT_STRESS_SECONDS, or @dflt when
 * it is unset or not positive. */
double tc_stress_seconds(double dflt);

/* A monotonic clock, in seconds. */
double tc_now(void);

/* ---- region requests ---------------------------------------------------- */

/* A request as KVM_SET_USER_MEMORY_REGION takes it: @slot is the whole
 * slot field (address space in bits 16 and up), sizes in bytes. */
struct memslot_region tc_region(uint32_t slot, uint32_t flags, uint64_t gpa,
				uint64_t size, uint64_t hva);

/* The same in pages: slot @id of @as_id over [@gfn, @gfn + @npages)
 * backed from byte address @hva; @npages 0 asks for a delete. */
struct memslot_region tc_region_pages(unsigned int as_id, uint32_t id,
				      uint32_t flags, uint64_t gfn,
				      uint64_t npages, uint64_t hva);

/* ---- layout snapshots --------------------------------------------------- */

/**
 * struct tc_layout - what a VM shows, as a vector of numbers
 * @v: the numbers
 * @n: how many
 * @cap: room in @v
 * @nslots: slots recorded by tc_layout_take() over all address spaces
 * @pointers: slot pointers are recorded (to compare a VM with itself);
 *	      otherwise only whether a slot was there (to compare two VMs)
 *
 * Start from { 0 }; tc_layout_take() refills it, tc_layout_free() ends it.
 * A test appends whatever else it needs to compare (lookups, counts) with
 * tc_layout_put() and tc_layout_put_slot() after taking it.
 */
struct tc_layout {
	uint64_t *v;
	size_t n, cap;
	size_t nslots;
	bool pointers;
};

/* Record the generation and every slot (pointer, base, size, hva, flags,
 * id, address space, user data) of address spaces 0 .. @nr_as - 1, each
 * space starting with its generation (so address space 0's is v[0]).
 * Takes the read lock itself. */
void tc_layout_take(struct tc_layout *l, struct memslot_vm *vm,
		    unsigned int nr_as, bool pointers);

void tc_layout_put(struct tc_layout *l, uint64_t x);

/* @slot as tc_layout_take() records it; NULL is recorded as such. */
void tc_layout_put_slot(struct tc_layout *l, const struct memslot_slot *slot);

bool tc_layout_equal(const struct tc_layout *a, const struct tc_layout *b);

/* Fail the test, naming the first number that differs, unless equal. */
void tc_layout_assert_equal(const struct tc_layout *a,
			    const struct tc_layout *b);

void tc_layout_free(struct tc_layout *l);

/* ---- an allocator that fails on request ---------------------------------- */

/**
 * struct tc_alloc - counting allocator that can fail a chosen call
 * @ops: give &@ops as memslot_config.alloc (its ctx is this struct)
 * @calls: malloc calls since the last tc_alloc_fail_nth() or
 *	   tc_alloc_fail_from() (since tc_alloc_init() otherwise)
 * @fail_at: the call (counted from 0) that fails, or -1 for none
 * @fail_later: calls after @fail_at fail too
 * @live: bytes handed out and not yet freed
 * @blocks: blocks handed out and not yet freed
 *
 * A free of more bytes than are live fails the test: the library must
 * free each block with the size it allocated it with.
 */
struct tc_alloc {
	struct memslot_allocator ops;
	long calls;
	long fail_at;
	bool fail_later;
	size_t live;
	long blocks;
	/* Calls made on one thread (tc_alloc_watch_thread()), as opposed
	 * to, say, a VM's reclaim thread. */
	pthread_t owner;
	bool watching;
	long owner_mallocs;
	long owner_frees;
};

/* Ready to use, failing nothing. */
void tc_alloc_init(struct tc_alloc *a);

/* Fail only the @n-th call from now (0: the next one). */
void tc_alloc_fail_nth(struct tc_alloc *a, long n);

/* Let @n more calls through, then fail every call. */
void tc_alloc_fail_from(struct tc_alloc *a, long n);

/* Fail nothing from now on. */
void tc_alloc_disarm(struct tc_alloc *a);

/* Count the calls the calling thread makes in owner_mallocs/owner_frees. */
void tc_alloc_watch_thread(struct tc_alloc *a);

#endif
