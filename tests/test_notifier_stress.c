/* SPDX-License-Identifier: MIT */
/*
 * The MMU-notifier protocol under load, over real memory.
 *
 * A "host" region of NPAGES pages is mmap'd; each page holds its version
 * in its first word and @truth holds the version the host maps now.  Four
 * slots map the region; a consumer keeps a software TLB (gfn -> page,
 * version) under its own mapping lock, as a stage-2 map would.
 *
 *  - fault threads follow the protocol: in a read section, translate a gfn,
 *    take the sequence, read the page through process_vm_readv() (a
 *    get-user-pages that fails instead of crashing when the page is gone),
 *    then under the mapping lock ask memslot_notifier_retry() and install;
 *  - the invalidating thread really unmaps pages: start, then mmap
 *    MAP_FIXED PROT_NONE over them (the old pages are unmapped and freed;
 *    the addresses stay reserved, so no other mapping can land there), or
 *    a MAP_FIXED replacement in one step, then fresh pages with a new
 *    version, optionally the change event (which installs the new mapping
 *    at once), then end;
 *  - a writer thread moves slots (blocking and deferred changes), which must wait for
 *    active invalidations.
 *
 * The checker: at install, under the mapping lock, the page must not have
 * been invalidated since the fault began (the invalidate hook bumps a
 * per-page counter the fault read first) and the version read must be
 * the one the host maps; after each end, no TLB entry of the range may
 * hold an old version; after each slot move, every entry must agree with
 * the new layout.  test_checker_catches_skipped_retry runs the same
 * threads with the retry check skipped and requires the checker to fail.
 *
 * MEMSLOT_STRESS_SECONDS (default 2) sets the duration.  Under
 * ThreadSanitizer the VM uses the counter backend, whose orderings TSan
 * can see; otherwise liburcu memb.
 */
/* process_vm_readv(), MAP_ANONYMOUS, nanosleep() */
#define _GNU_SOURCE

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <memslot/memslot.h>
#include <memslot/notifier.h>

#include "common.h"

#define PAGE TC_PAGE
#define NSLOTS 4
#define SLOT_PAGES 16
#define NPAGES (NSLOTS * SLOT_PAGES)
#define GFN_B 128		/* slot i lives at i * 16 or GFN_B + i * 16 */
#define GFN_SPACE 256
#define NFAULT 2

struct entry {
	bool valid;
	uint32_t page;
	uint64_t version;
};

struct harness {
	struct memslot_vm *vm;
	uint64_t mem;				/* the host region */
	_Atomic uint64_t truth[NPAGES];		/* version the host maps */
	_Atomic uint64_t zaps[NPAGES];		/* invalidate hooks per page */
	pthread_mutex_t mmu;			/* the consumer's mapping lock */
	struct entry tlb[GFN_SPACE];		/* under @mmu */
	uint64_t base[NSLOTS];			/* writer's: current gfn bases */
	atomic_bool stop;
	bool skip_retry;			/* break the protocol on purpose */
	/* what happened */
	atomic_ulong faults, installs, retries, gup_fail;
	atomic_ulong invalidations, changes, moves;
	atomic_ulong bad_zap, bad_version, bad_sweep, bad_layout;
	struct memslot_listener listener;
	struct memslot_notifier_ops ops;
};

static unsigned long bad(struct harness *h)
{
	return atomic_load(&h->bad_zap) + atomic_load(&h->bad_version) +
	       atomic_load(&h->bad_sweep) + atomic_load(&h->bad_layout);
}

/* get-user-pages: the word at @hva, or false if nothing is mapped. */
static bool host_read(uint64_t hva, uint64_t *v)
{
	struct iovec local = {.iov_base = v, .iov_len = sizeof(*v)};
	struct iovec remote = {.iov_base = (void *)(uintptr_t)hva,
			       .iov_len = sizeof(*v)};

	return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) ==
	       (ssize_t)sizeof(*v);
}

static uint32_t page_of(const struct harness *h, uint64_t hva)
{
	return (uint32_t)((hva - h->mem) / PAGE);
}

/* ---- consumer hooks ----------------------------------------------------- */

static bool on_invalidate(struct memslot_vm *vm, void *ctx,
			  const struct memslot_slot *slot, uint64_t gfn_start,
			  uint64_t gfn_end, enum memslot_notifier_event event)
{
	struct harness *h = ctx;
	uint64_t base = memslot_slot_base_gfn(slot);
	uint32_t first = page_of(h, memslot_slot_hva(slot));

	(void)vm;
	(void)event;
	pthread_mutex_lock(&h->mmu);
	for (uint64_t g = gfn_start; g < gfn_end; g++) {
		h->tlb[g].valid = false;
		atomic_fetch_add(&h->zaps[first + (g - base)], 1);
	}
	pthread_mutex_unlock(&h->mmu);
	return false;
}

/* The change event: install the new mapping at once (the prefetch). */
static void on_change(struct memslot_vm *vm, void *ctx,
		      const struct memslot_slot *slot, uint64_t gfn,
		      uint64_t hva, bool writable)
{
	struct harness *h = ctx;
	uint32_t page = page_of(h, hva);

	(void)vm;
	(void)slot;
	(void)writable;
	pthread_mutex_lock(&h->mmu);
	h->tlb[gfn] = (struct entry){
		.valid = true, .page = page,
		.version = atomic_load(&h->truth[page]),
	};
	pthread_mutex_unlock(&h->mmu);
	atomic_fetch_add(&h->changes, 1);
}

/* Slot moves: drop the old slot's mappings (the flush hook). */
static void on_flush(struct memslot_vm *vm, void *ctx,
		     const struct memslot_slot *old)
{
	struct harness *h = ctx;
	uint64_t base = memslot_slot_base_gfn(old);

	(void)vm;
	pthread_mutex_lock(&h->mmu);
	for (uint64_t g = base; g < base + memslot_slot_npages(old); g++)
		h->tlb[g].valid = false;
	pthread_mutex_unlock(&h->mmu);
}

/* ---- fault threads ---------------------------------------------------- */

/* Install under the mapping lock, after the retry check; check the
 * invariant at the moment of installing. */
static void install(struct harness *h, uint64_t gfn, uint32_t page,
		    uint64_t version, uint64_t zaps0, uint64_t seq)
{
	pthread_mutex_lock(&h->mmu);
	if (!h->skip_retry && memslot_notifier_retry(h->vm, seq, gfn)) {
		pthread_mutex_unlock(&h->mmu);
		atomic_fetch_add(&h->retries, 1);
		return;
	}
	if (atomic_load(&h->zaps[page]) != zaps0)
		atomic_fetch_add(&h->bad_zap, 1);
	if (atomic_load(&h->truth[page]) != version)
		atomic_fetch_add(&h->bad_version, 1);
	h->tlb[gfn] = (struct entry){
		.valid = true, .page = page, .version = version,
	};
	pthread_mutex_unlock(&h->mmu);
	atomic_fetch_add(&h->installs, 1);
}

static void fault_one(struct harness *h, uint64_t gfn, uint64_t *r)
{
	uint64_t hva, seq, zaps0, version;
	uint32_t page;

	memslot_read_lock(h->vm);
	if (memslot_gfn_to_hva(h->vm, 0, gfn, false, &hva)) {
		memslot_read_unlock(h->vm);	/* MMIO, or a slot in flux */
		return;
	}
	page = page_of(h, hva);
	/*
	 * The fault begins when it takes the sequence.  Its zap count comes
	 * after: read before, a whole invalidation (start, zap, end) could
	 * fall between the two, and the fault would rightly not retry yet
	 * see a zap it never raced.
	 */
	seq = memslot_notifier_seq_begin(h->vm);
	zaps0 = atomic_load(&h->zaps[page]);
	if (!host_read(hva, &version)) {
		atomic_fetch_add(&h->gup_fail, 1);
	} else {
		if (tc_rng_xorshift(r) % 8 == 0)
			sched_yield();	/* widen the race window */
		install(h, gfn, page, version, zaps0, seq);
	}
	memslot_read_unlock(h->vm);
	atomic_fetch_add(&h->faults, 1);
}

static void *fault_main(void *arg)
{
	struct harness *h = arg;
	uint64_t r = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&r;

	memslot_thread_register(h->vm);
	while (!atomic_load(&h->stop)) {
		uint64_t gfn = (tc_rng_xorshift(&r) % 2) * GFN_B +
			       tc_rng_xorshift(&r) % NPAGES;

		fault_one(h, gfn, &r);
	}
	memslot_thread_unregister(h->vm);
	return NULL;
}

/* ---- the invalidating thread ---------------------------------------- */

static void map_fresh(struct harness *h, uint32_t p, uint32_t n)
{
	void *at = (void *)(uintptr_t)(h->mem + p * PAGE);
	void *m = mmap(at, n * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);

	if (m != at)
		abort();	/* the test cannot go on without its memory */
	for (uint32_t i = p; i < p + n; i++) {
		uint64_t v = atomic_load(&h->truth[i]) + 1;

		*(uint64_t *)(uintptr_t)(h->mem + i * PAGE) = v;
		atomic_store(&h->truth[i], v);
	}
}

static void unmap_pages(struct harness *h, uint32_t p, uint32_t n)
{
	void *at = (void *)(uintptr_t)(h->mem + p * PAGE);

	if (mmap(at, n * PAGE, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
		 0) != at)
		abort();
}

/* After an end: no mapping of the range may hold an old version. */
static void sweep(struct harness *h, uint32_t p, uint32_t n)
{
	pthread_mutex_lock(&h->mmu);
	for (uint32_t g = 0; g < GFN_SPACE; g++) {
		const struct entry *e = &h->tlb[g];

		if (e->valid && e->page >= p && e->page < p + n &&
		    e->version != atomic_load(&h->truth[e->page]))
			atomic_fetch_add(&h->bad_sweep, 1);
	}
	pthread_mutex_unlock(&h->mmu);
}

static void invalidate_one(struct harness *h, uint64_t *r)
{
	uint32_t n = 1 + (uint32_t)(tc_rng_xorshift(r) % 4);
	uint32_t p = (uint32_t)(tc_rng_xorshift(r) % (NPAGES - n + 1));
	uint64_t start = h->mem + p * PAGE, end = start + n * PAGE;
	uint64_t how = tc_rng_xorshift(r);

	if (memslot_notifier_invalidate_start(h->vm, start, end,
					      MEMSLOT_NOTIFY_UNMAP))
		abort();
	if (how & 1) {
		unmap_pages(h, p, n);
		sched_yield();	/* faults now find no page */
	}
	map_fresh(h, p, n);
	if (how & 2) {
		for (uint32_t i = 0; i < n; i++)
			memslot_notifier_change(h->vm, start + i * PAGE, true);
	}
	if (memslot_notifier_invalidate_end(h->vm, start, end))
		abort();
	atomic_fetch_add(&h->invalidations, 1);
	sweep(h, p, n);
}

static void *invalidator_main(void *arg)
{
	struct harness *h = arg;
	uint64_t r = 0x2545f4914f6cdd1dull;

	while (!atomic_load(&h->stop))
		invalidate_one(h, &r);
	return NULL;
}

/* ---- the slot writer ---------------------------------------------------- */

static struct memslot_region region_of(const struct harness *h, uint32_t i,
				       uint64_t base)
{
	return (struct memslot_region){
		.slot = i, .guest_phys_addr = base * PAGE,
		.memory_size = SLOT_PAGES * PAGE,
		.userspace_addr = h->mem + i * SLOT_PAGES * PAGE,
	};
}

/* Every mapping must agree with the layout now published. */
static void check_layout(struct harness *h)
{
	pthread_mutex_lock(&h->mmu);
	for (uint64_t g = 0; g < GFN_SPACE; g++) {
		const struct entry *e = &h->tlb[g];
		bool ok = false;

		for (uint32_t i = 0; e->valid && i < NSLOTS && !ok; i++)
			ok = g - h->base[i] < SLOT_PAGES &&
			     e->page == i * SLOT_PAGES + (g - h->base[i]);
		if (e->valid && !ok)
			atomic_fetch_add(&h->bad_layout, 1);
	}
	pthread_mutex_unlock(&h->mmu);
}

/*
 * Moves alternate between blocking and deferred changes.  A deferred move
 * publishes the new layout at once and flushes the old slot later; until
 * then invalidations must still reach the consumer's mappings made through
 * the old slot's gfns (the old slot stays on the notifier's pending list).
 */
static int move_slot(struct harness *h, uint32_t i, bool deferred)
{
	uint64_t to = h->base[i] < GFN_B ? GFN_B + i * SLOT_PAGES
					 : i * SLOT_PAGES;
	struct memslot_region reg = region_of(h, i, to);
	struct memslot_txn_result res = { 0 };
	int r = deferred ? memslot_set_regions_deferred(h->vm, &reg, 1, &res)
			 : memslot_set_region(h->vm, &reg, NULL);

	if (!r)
		h->base[i] = to;
	/* The layout check below expects the old slot flushed: wait for it
	 * (the other threads go on meanwhile, through the window). */
	if (!r && deferred)
		r = memslot_vm_wait(h->vm, res.ticket);
	return r;
}

static void *writer_main(void *arg)
{
	struct harness *h = arg;
	uint64_t r = 0x5851f42d4c957f2dull;

	while (!atomic_load(&h->stop)) {
		if (move_slot(h, (uint32_t)(tc_rng_xorshift(&r) % NSLOTS),
			      r & 1))
			abort();
		check_layout(h);
		atomic_fetch_add(&h->moves, 1);
	}
	return NULL;
}

/* ---- the runs ------------------------------------------------------------ */

static const struct memslot_rcu_ops *backend(void)
{
#ifdef TC_UNDER_TSAN
	return memslot_rcu_counter();
#else
	return NULL;
#endif
}

static void harness_init(struct harness *h, bool skip_retry)
{
	struct memslot_config cfg;
	void *mem;

	memset(h, 0, sizeof(*h));
	h->skip_retry = skip_retry;
	pthread_mutex_init(&h->mmu, NULL);
	mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(mem != MAP_FAILED);
	h->mem = (uint64_t)(uintptr_t)mem;
	for (uint32_t i = 0; i < NPAGES; i++) {
		*(uint64_t *)(uintptr_t)(h->mem + i * PAGE) = 1;
		atomic_init(&h->truth[i], 1);
	}
	memslot_config_init_x86_64(&cfg);
	cfg.rcu = backend();
	assert_int_equal(memslot_vm_create(&cfg, &h->vm), 0);
	h->listener = (struct memslot_listener){
		.size = sizeof(h->listener), .flush = on_flush, .ctx = h,
	};
	assert_int_equal(memslot_listener_register(h->vm, &h->listener), 0);
	h->ops = (struct memslot_notifier_ops){
		.size = sizeof(h->ops), .invalidate = on_invalidate,
		.change = on_change, .ctx = h,
	};
	assert_int_equal(memslot_notifier_register(h->vm, &h->ops), 0);
	for (uint32_t i = 0; i < NSLOTS; i++) {
		struct memslot_region reg = region_of(h, i, i * SLOT_PAGES);

		h->base[i] = i * SLOT_PAGES;
		assert_int_equal(memslot_set_region(h->vm, &reg, NULL), 0);
	}
}

static void harness_fini(struct harness *h)
{
	memslot_vm_destroy(h->vm);
	munmap((void *)(uintptr_t)h->mem, NPAGES * PAGE);
	pthread_mutex_destroy(&h->mmu);
}

/* Whether the run went through every path the checks rely on. */
static bool exercised(struct harness *h)
{
	return atomic_load(&h->installs) && atomic_load(&h->retries) &&
	       atomic_load(&h->invalidations) && atomic_load(&h->changes) &&
	       atomic_load(&h->moves);
}

/* Whether run() stops now, @t seconds in. */
static bool run_done(struct harness *h, double t, double secs, bool until_bad)
{
	if (until_bad)
		return bad(h) || t >= secs;
	/* A loaded machine may need longer to reach every path. */
	return t >= secs && (exercised(h) || t >= secs + 60.0);
}

/*
 * Run every thread for @secs (longer, by a minute at most, until every
 * path was taken); with @until_bad, for up to @secs, stopping at the first
 * violation the checker finds.
 */
static void run(struct harness *h, double secs, bool until_bad)
{
	pthread_t faults[NFAULT], inval, writer;
	double t0 = tc_now();
	struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};

	for (int i = 0; i < NFAULT; i++)
		assert_int_equal(pthread_create(&faults[i], NULL, fault_main,
						h), 0);
	assert_int_equal(pthread_create(&inval, NULL, invalidator_main, h), 0);
	assert_int_equal(pthread_create(&writer, NULL, writer_main, h), 0);
	while (!run_done(h, tc_now() - t0, secs, until_bad))
		nanosleep(&tick, NULL);
	atomic_store(&h->stop, true);
	for (int i = 0; i < NFAULT; i++)
		pthread_join(faults[i], NULL);
	pthread_join(inval, NULL);
	pthread_join(writer, NULL);
	printf("notifier stress: %lu faults, %lu installs, %lu retries, "
	       "%lu without page, %lu invalidations, %lu changes, %lu moves; "
	       "violations: %lu zapped, %lu stale version, %lu stale after "
	       "end, %lu off layout\n",
	       atomic_load(&h->faults), atomic_load(&h->installs),
	       atomic_load(&h->retries), atomic_load(&h->gup_fail),
	       atomic_load(&h->invalidations), atomic_load(&h->changes),
	       atomic_load(&h->moves), atomic_load(&h->bad_zap),
	       atomic_load(&h->bad_version), atomic_load(&h->bad_sweep),
	       atomic_load(&h->bad_layout));
}

static void test_protocol_holds(void **state)
{
	struct harness *h = malloc(sizeof(*h));

	(void)state;
	assert_non_null(h);
	harness_init(h, false);
	run(h, tc_stress_seconds(2.0), false);
	/* The run exercised every path... */
	assert_true(atomic_load(&h->installs) > 0);
	assert_true(atomic_load(&h->retries) > 0);
	assert_true(atomic_load(&h->invalidations) > 0);
	assert_true(atomic_load(&h->changes) > 0);
	assert_true(atomic_load(&h->moves) > 0);
	/* ...and no fault ever mapped a page invalidated after it began. */
	assert_int_equal(atomic_load(&h->bad_zap), 0);
	assert_int_equal(atomic_load(&h->bad_version), 0);
	assert_int_equal(atomic_load(&h->bad_sweep), 0);
	assert_int_equal(atomic_load(&h->bad_layout), 0);
	harness_fini(h);
	free(h);
}

/* The checker is not vacuous: without the retry check it must fail. */
static void test_checker_catches_skipped_retry(void **state)
{
	struct harness *h = malloc(sizeof(*h));

	(void)state;
	assert_non_null(h);
	harness_init(h, true);
	run(h, 30.0, true);
	assert_true(atomic_load(&h->bad_zap) + atomic_load(&h->bad_version) +
			    atomic_load(&h->bad_sweep) >
		    0);
	harness_fini(h);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_protocol_holds),
		cmocka_unit_test(test_checker_catches_skipped_retry),
	};

	setvbuf(stdout, NULL, _IONBF, 0);
	return cmocka_run_group_tests_name("notifier_stress", tests, NULL,
					   NULL);
}
