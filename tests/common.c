/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the test programs; see common.h.
 */
#define _POSIX_C_SOURCE 200809L	/* clock_gettime() */

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common.h"

/* ---- random numbers ----------------------------------------------------- */

uint64_t tc_rng(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

uint64_t tc_rng_xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

uint64_t tc_rng_below(uint64_t *s, uint64_t n)
{
	return n ? tc_rng(s) % n : 0;
}

uint64_t tc_rng_seed(uint64_t seed)
{
	/* +1: seed 0 must not give the all-zero state xorshift keeps. */
	return seed * 0x9e3779b97f4a7c15ull + 1;
}

/* ---- timed cases -------------------------------------------------------- */

double tc_stress_seconds(double dflt)
{
	const char *e = getenv("MEMSLOT_STRESS_SECONDS");
	double s = e ? strtod(e, NULL) : dflt;

	return s > 0 ? s : dflt;
}

double tc_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- region requests ---------------------------------------------------- */

struct memslot_region tc_region(uint32_t slot, uint32_t flags, uint64_t gpa,
				uint64_t size, uint64_t hva)
{
	struct memslot_region r = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = hva,
	};

	return r;
}

struct memslot_region tc_region_pages(unsigned int as_id, uint32_t id,
				      uint32_t flags, uint64_t gfn,
				      uint64_t npages, uint64_t hva)
{
	return tc_region(as_id << 16 | id, flags, gfn * TC_PAGE,
			 npages * TC_PAGE, hva);
}

/* ---- layout snapshots --------------------------------------------------- */

void tc_layout_put(struct tc_layout *l, uint64_t x)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		assert_non_null(l->v);
	}
	l->v[l->n++] = x;
}

void tc_layout_put_slot(struct tc_layout *l, const struct memslot_slot *slot)
{
	tc_layout_put(l, l->pointers ? (uintptr_t)slot : slot != NULL);
	if (!slot)
		return;
	tc_layout_put(l, memslot_slot_base_gfn(slot));
	tc_layout_put(l, memslot_slot_npages(slot));
	tc_layout_put(l, memslot_slot_hva(slot));
	tc_layout_put(l, memslot_slot_flags(slot));
	tc_layout_put(l, memslot_slot_id(slot));
	tc_layout_put(l, memslot_slot_as_id(slot));
	tc_layout_put(l, (uintptr_t)memslot_slot_user_data(slot));
}

void tc_layout_take(struct tc_layout *l, struct memslot_vm *vm,
		    unsigned int nr_as, bool pointers)
{
	struct memslot_gfn_iter it;
	const struct memslot_slot *slot;

	l->n = 0;
	l->nslots = 0;
	l->pointers = pointers;
	memslot_read_lock(vm);
	for (unsigned int as_id = 0; as_id < nr_as; as_id++) {
		tc_layout_put(l, memslot_generation(vm, as_id));
		memslot_gfn_iter_init(&it, vm, as_id, 0, UINT64_MAX);
		while ((slot = memslot_gfn_iter_next(&it))) {
			tc_layout_put_slot(l, slot);
			l->nslots++;
		}
		/* ends the address space: no slot record starts with it */
		tc_layout_put(l, UINT64_MAX);
	}
	memslot_read_unlock(vm);
}

bool tc_layout_equal(const struct tc_layout *a, const struct tc_layout *b)
{
	return a->n == b->n && !memcmp(a->v, b->v, a->n * sizeof(*a->v));
}

void tc_layout_assert_equal(const struct tc_layout *a,
			    const struct tc_layout *b)
{
	size_t n = a->n < b->n ? a->n : b->n;

	for (size_t i = 0; i < n; i++)
		if (a->v[i] != b->v[i])
			fail_msg("layouts differ at number %zu: 0x%" PRIx64
				 " != 0x%" PRIx64, i, a->v[i], b->v[i]);
	assert_int_equal(a->n, b->n);
}

void tc_layout_free(struct tc_layout *l)
{
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

/* ---- an allocator that fails on request ---------------------------------- */

static bool fails_now(struct tc_alloc *a)
{
	long k = a->calls++;

	return a->fail_at >= 0 &&
	       (k == a->fail_at || (a->fail_later && k > a->fail_at));
}

static bool on_owner(const struct tc_alloc *a)
{
	return a->watching && pthread_equal(pthread_self(), a->owner);
}

static void *tc_malloc(void *ctx, size_t size)
{
	struct tc_alloc *a = ctx;
	void *p;

	if (on_owner(a))
		a->owner_mallocs++;
	if (fails_now(a))
		return NULL;
	p = malloc(size);
	if (p) {
		a->live += size;
		a->blocks++;
	}
	return p;
}

static void tc_free(void *ctx, void *ptr, size_t size)
{
	struct tc_alloc *a = ctx;

	assert_true(a->live >= size);
	a->live -= size;
	a->blocks--;
	if (on_owner(a))
		a->owner_frees++;
	free(ptr);
}

void tc_alloc_init(struct tc_alloc *a)
{
	memset(a, 0, sizeof(*a));
	a->ops = (struct memslot_allocator){
		.size = sizeof(a->ops), .malloc = tc_malloc, .free = tc_free,
		.ctx = a,
	};
	a->fail_at = -1;
}

void tc_alloc_fail_nth(struct tc_alloc *a, long n)
{
	a->calls = 0;
	a->fail_at = n;
	a->fail_later = false;
}

void tc_alloc_fail_from(struct tc_alloc *a, long n)
{
	a->calls = 0;
	a->fail_at = n;
	a->fail_later = true;
}

void tc_alloc_disarm(struct tc_alloc *a)
{
	a->fail_at = -1;
	a->fail_later = false;
}

void tc_alloc_watch_thread(struct tc_alloc *a)
{
	a->owner = pthread_self();
	a->watching = true;
	a->owner_mallocs = 0;
	a->owner_frees = 0;
}
