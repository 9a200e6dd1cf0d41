/* SPDX-License-Identifier: MIT */
/*
 * Concurrency stress: reader threads look slots up while the main thread
 * changes the layout, and every reader checks that it never sees a layout
 * that was not published.
 *
 * How "never torn" is checked: each slot's user data points to an
 * immutable record (id, size, hva and the layout version that created it).
 * Before each change the writer appends an immutable snapshot of the layout
 * the change will publish, together with the INVALID-phase layout readers
 * may see on the way (the old layout with each deleted or moved slot marked
 * INVALID).  A reader walks every slot inside one read section and hands
 * the walk to check_view(), a pure function: the walk must equal some
 * snapshot (or its INVALID phase) in the window of versions that could have
 * been active during the section.  A split or merge seen half done matches
 * none of them.  test_checker_rejects_torn feeds the checker such views.
 *
 * Each timed case runs MEMSLOT_STRESS_SECONDS (default 3).  Under
 * ThreadSanitizer the VMs use the counter backend, whose orderings TSan can
 * see (liburcu's membarrier is invisible to it); otherwise liburcu memb,
 * the default, plus one case always on the counter backend.
 */
/* clock_gettime() under -std=c11 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <memslot/memslot.h>

#include "common.h"

#define PAGE TC_PAGE
#define NIDS 10			/* ids 0..NIDS-1 */
#define MAXS 12			/* slots a layout may hold (>= NIDS) */
#define GFN_SPACE 0x400ull	/* slots live in [0, GFN_SPACE) */
#define MAX_VERSIONS 16384
#define NREADERS 2

/* ---- records, layouts and the checker (pure) ------------------------- */

/* What a slot's user data points to; never changed once published. */
struct rec {
	uint32_t id;
	uint64_t npages;
	uint64_t hva;
	size_t version;		/* first layout version holding the slot */
};

/* One slot as a walk sees it. */
struct shape {
	uint32_t id;
	uint32_t flags;
	uint64_t base;
	uint64_t npages;
	uint64_t hva;
	/* not const: it goes into memslot_region.user_data, a plain void * */
	struct rec *rec;
};

struct layout {
	size_t n;
	struct shape s[MAXS];
};

/* A published layout and the INVALID phase on the way to it. */
struct snapshot {
	struct layout final;
	struct layout mid;
	bool has_mid;
};

static bool shape_eq(const struct shape *a, const struct shape *b)
{
	return a->id == b->id && a->flags == b->flags && a->base == b->base &&
	       a->npages == b->npages && a->hva == b->hva && a->rec == b->rec;
}

static bool layout_eq(const struct layout *a, const struct layout *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		if (!shape_eq(&a->s[i], &b->s[i]))
			return false;
	}
	return true;
}

/* A slot's fields must agree with its record. */
static bool shape_matches_rec(const struct shape *s, size_t max_version)
{
	const struct rec *r = s->rec;

	return r && r->id == s->id && r->npages == s->npages &&
	       r->hva == s->hva && r->version <= max_version;
}

/**
 * check_view() - whether a walk shows a layout that was published
 * @view: the slots one walk found, ascending
 * @snaps: the snapshots, indexed by version
 * @lo: first version that may have been active during the walk
 * @hi: last such version
 *
 * Return: NULL if @view equals the final or INVALID-phase layout of a
 * version in [@lo, @hi] and every slot agrees with its record; otherwise
 * what is wrong.
 */
static const char *check_view(const struct layout *view,
			      const struct snapshot *snaps, size_t lo,
			      size_t hi)
{
	for (size_t i = 0; i < view->n; i++) {
		if (!shape_matches_rec(&view->s[i], hi))
			return "slot does not match its record";
		if (i && view->s[i].base < view->s[i - 1].base + view->s[i - 1].npages)
			return "walk not ascending or slots overlap";
	}
	for (size_t v = lo; v <= hi; v++) {
		if (layout_eq(view, &snaps[v].final))
			return NULL;
		/* The INVALID phase of @lo came before @lo itself. */
		if (v > lo && snaps[v].has_mid && layout_eq(view, &snaps[v].mid))
			return NULL;
	}
	return "layout matches no published version (torn)";
}

/* The INVALID phase between @prev and @next: slots of @prev that @next
 * deletes, moves or recreates are marked; flag changes come later. */
static bool make_mid(const struct layout *prev, const struct layout *next,
		     struct layout *mid)
{
	bool any = false;

	*mid = *prev;
	for (size_t i = 0; i < mid->n; i++) {
		struct shape *s = &mid->s[i];
		bool kept = false;

		for (size_t j = 0; j < next->n && !kept; j++)
			kept = next->s[j].rec == s->rec &&
			       next->s[j].base == s->base;
		if (!kept) {
			s->flags |= MEMSLOT_INVALID;
			any = true;
		}
	}
	return any;
}

/* ---- the pure checker, on hand-made views ---------------------------- */

static struct rec rec_a = { 1, 0x30, 0x100000, 0 };
static struct rec rec_a2 = { 1, 0x10, 0x100000, 1 };
static struct rec rec_b = { 2, 0x10, 0x110000, 1 };
static struct rec rec_c = { 3, 0x10, 0x120000, 1 };

static struct shape sh(struct rec *r, uint64_t base, uint32_t flags)
{
	struct shape s = { r->id, flags, base, r->npages, r->hva, r };

	return s;
}

static void test_checker_rejects_torn(void **state)
{
	struct snapshot snaps[2];
	struct layout view;

	(void)state;
	memset(snaps, 0, sizeof(snaps));
	/* v0: one slot; v1: the same range split in three. */
	snaps[0].final.n = 1;
	snaps[0].final.s[0] = sh(&rec_a, 0x100, 0);
	snaps[1].final.n = 3;
	snaps[1].final.s[0] = sh(&rec_a2, 0x100, 0);
	snaps[1].final.s[1] = sh(&rec_b, 0x110, 0);
	snaps[1].final.s[2] = sh(&rec_c, 0x120, 0);
	snaps[1].has_mid = make_mid(&snaps[0].final, &snaps[1].final,
				    &snaps[1].mid);
	assert_true(snaps[1].has_mid);
	assert_int_equal(snaps[1].mid.s[0].flags, MEMSLOT_INVALID);
	/* Every real state passes. */
	assert_null(check_view(&snaps[0].final, snaps, 0, 1));
	assert_null(check_view(&snaps[1].final, snaps, 0, 1));
	assert_null(check_view(&snaps[1].mid, snaps, 0, 1));
	/* Half a split: the first piece is there, the rest missing. */
	view.n = 2;
	view.s[0] = sh(&rec_a2, 0x100, 0);
	view.s[1] = sh(&rec_b, 0x110, 0);
	assert_non_null(check_view(&view, snaps, 0, 1));
	/* The new pieces, but the old slot still valid beside them. */
	view.n = 1;
	view.s[0] = sh(&rec_c, 0x120, 0);
	assert_non_null(check_view(&view, snaps, 0, 1));
	/* Back to the INVALID phase once the final layout was active. */
	assert_non_null(check_view(&snaps[1].mid, snaps, 1, 1));
	/* The old slot valid after the window moved past it. */
	assert_non_null(check_view(&snaps[0].final, snaps, 1, 1));
	/* A slot whose fields disagree with its record. */
	view = snaps[0].final;
	view.s[0].npages = 0x20;
	assert_non_null(check_view(&view, snaps, 0, 1));
	/* A slot seen before the version that created it. */
	assert_non_null(check_view(&snaps[1].final, snaps, 0, 0));
}

/* ---- shared state of a timed case ------------------------------------- */

struct stress {
	struct memslot_vm *vm;
	struct snapshot *snaps;
	_Atomic size_t nsnap;		/* snapshots published */
	atomic_bool stop;
	struct rec *recs;		/* every record, freed at the end */
	size_t nrecs;
	size_t cap_recs;
	uint64_t next_hva;
	uint64_t seed;
	/* errors, reported by whichever thread saw them first */
	atomic_int errors;
	char msg[256];
	pthread_mutex_t msg_lock;
	/* counts for the log */
	_Atomic uint64_t walks;
	_Atomic uint64_t lookups;
	uint64_t changes;
	/* modification stress */
	uint64_t big_npages;
	uint64_t big_hva;
	/* the writer uses memslot_set_regions_deferred() */
	bool deferred;
	uint64_t ticket;
};

static void report(struct stress *st, const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&st->errors, 1) != 0)
		return;
	pthread_mutex_lock(&st->msg_lock);
	va_start(ap, fmt);
	vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&st->msg_lock);
	atomic_store(&st->stop, true);
}

static const struct memslot_rcu_ops *default_rcu(void)
{
#ifdef TC_UNDER_TSAN
	return memslot_rcu_counter();
#else
	return NULL;	/* liburcu memb */
#endif
}

static void stress_init(struct stress *st, const struct memslot_rcu_ops *rcu)
{
	struct memslot_config cfg;

	memset(st, 0, sizeof(*st));
	pthread_mutex_init(&st->msg_lock, NULL);
	memslot_config_init_x86_64(&cfg);
	cfg.rcu = rcu;
	assert_int_equal(memslot_vm_create(&cfg, &st->vm), 0);
	st->snaps = calloc(MAX_VERSIONS, sizeof(*st->snaps));
	st->cap_recs = 4 * MAX_VERSIONS;
	st->recs = calloc(st->cap_recs, sizeof(*st->recs));
	assert_non_null(st->snaps);
	assert_non_null(st->recs);
	st->next_hva = 0x100000000ull;
	st->seed = 0x5eed5eed1234ull;
	/* Version 0: the empty layout. */
	atomic_store(&st->nsnap, 1);
}

static void stress_fini(struct stress *st)
{
	memslot_vm_destroy(st->vm);
	free(st->snaps);
	free(st->recs);
	pthread_mutex_destroy(&st->msg_lock);
}

/* ---- readers ----------------------------------------------------------- */

struct reader {
	struct stress *st;
	uint64_t seed;
	pthread_t tid;
};

static struct shape shape_of(const struct memslot_slot *s)
{
	struct shape x = {
		.id = memslot_slot_id(s),
		.flags = memslot_slot_flags(s),
		.base = memslot_slot_base_gfn(s),
		.npages = memslot_slot_npages(s),
		.hva = memslot_slot_hva(s),
		.rec = memslot_slot_user_data(s),
	};

	return x;
}

/* A slot a point lookup returned: it holds @gfn and matches its record. */
static void check_hit(struct stress *st, const struct memslot_slot *s,
		      uint64_t gfn, const char *what)
{
	struct shape x;

	if (!s)
		return;
	x = shape_of(s);
	if (gfn - x.base >= x.npages)
		report(st, "%s(%#llx) returned [%#llx, +%#llx)", what,
		     (unsigned long long)gfn, (unsigned long long)x.base,
		     (unsigned long long)x.npages);
	else if (!shape_matches_rec(&x, SIZE_MAX))
		report(st, "%s(%#llx): slot disagrees with its record", what,
		     (unsigned long long)gfn);
}

static void point_lookups(struct reader *r, struct memslot_vcpu *vcpu,
			  struct memslot_view *v)
{
	struct stress *st = r->st;

	for (int i = 0; i < 8; i++) {
		uint64_t gfn = tc_rng(&r->seed) % (GFN_SPACE + 16);

		check_hit(st, memslot_gfn_to_slot(st->vm, 0, gfn), gfn,
			  "gfn_to_slot");
		check_hit(st, memslot_vcpu_gfn_to_slot(vcpu, 0, gfn), gfn,
			  "vcpu_gfn_to_slot");
		check_hit(st, memslot_search(st->vm, 0, gfn, false), gfn,
			  "search");
		check_hit(st, memslot_view_gfn_to_slot(v, gfn), gfn,
			  "view_gfn_to_slot");
		check_hit(st, memslot_vcpu_view_gfn_to_slot(vcpu, v, gfn), gfn,
			  "vcpu_view_gfn_to_slot");
	}
	atomic_fetch_add_explicit(&st->lookups, 40, memory_order_relaxed);
}

/* A walk over a random gfn range yields only slots that meet it. */
static void range_walks(struct reader *r)
{
	struct stress *st = r->st;
	uint64_t a = tc_rng(&r->seed) % GFN_SPACE;
	uint64_t b = a + tc_rng(&r->seed) % 64;
	uint64_t ha = 0x100000000ull, hb;	/* where records' hvas start */
	struct memslot_gfn_iter it;
	struct memslot_hva_iter hit_it;
	struct memslot_hva_hit hit;
	const struct memslot_slot *s;

	memslot_gfn_iter_init(&it, st->vm, 0, a, b);
	while ((s = memslot_gfn_iter_next(&it))) {
		struct shape x = shape_of(s);

		if (x.base >= b || x.base + x.npages <= a)
			report(st, "gfn walk [%#llx,%#llx) yielded a slot outside",
			     (unsigned long long)a, (unsigned long long)b);
	}
	ha += (tc_rng(&r->seed) % 0x800) * PAGE;
	hb = ha + (tc_rng(&r->seed) % 0x100 + 1) * PAGE;
	memslot_hva_iter_init(&hit_it, st->vm, ha, hb);
	while (memslot_hva_iter_next(&hit_it, &hit)) {
		struct shape x = shape_of(hit.slot);

		if (hit.hva_start < x.hva || hit.hva_end > x.hva + x.npages * PAGE ||
		    hit.hva_start < ha || hit.hva_end > hb ||
		    hit.hva_start >= hit.hva_end ||
		    hit.gfn_start != x.base + (hit.hva_start - x.hva) / PAGE)
			report(st, "hva walk gave an inconsistent hit");
	}
}

static void walk_all(struct memslot_view *v, struct layout *l)
{
	struct memslot_gfn_iter it;
	const struct memslot_slot *s;

	l->n = 0;
	memslot_view_gfn_iter_init(&it, v, 0, UINT64_MAX);
	while ((s = memslot_gfn_iter_next(&it)) && l->n < MAXS)
		l->s[l->n++] = shape_of(s);
}

/*
 * One read section on one view: a full walk (checked against the
 * snapshots), point lookups and range walks, a second full walk that must
 * equal the first (a view never changes, whatever the writer publishes
 * meanwhile), and every walked slot found again by id.
 */
static void reader_round(struct reader *r, struct memslot_vcpu *vcpu)
{
	struct stress *st = r->st;
	size_t c0 = atomic_load(&st->nsnap), c1;
	struct layout view, again;
	struct memslot_view *v;
	const char *why;

	memslot_read_lock(st->vm);
	v = memslot_view_get(st->vm, 0);
	walk_all(v, &view);
	point_lookups(r, vcpu, v);
	range_walks(r);
	walk_all(v, &again);
	for (size_t i = 0; i < view.n; i++) {
		const struct memslot_slot *s =
			memslot_view_id_to_slot(v, view.s[i].id);

		if (!s || memslot_slot_base_gfn(s) != view.s[i].base)
			report(st, "view: id %u not found as walked",
			       view.s[i].id);
	}
	memslot_read_unlock(st->vm);
	if (!layout_eq(&view, &again))
		report(st, "view: two walks of one view differ");
	c1 = atomic_load(&st->nsnap);
	/* Snapshot v is appended before the change that publishes it, and
	 * only after change v - 1 returned: at the lock, version c0 - 2 (or
	 * a later one) was active. */
	why = check_view(&view, st->snaps, c0 >= 2 ? c0 - 2 : 0, c1 - 1);
	if (why)
		report(st, "%s (%zu slots, versions %zu..%zu)", why, view.n,
		     c0 >= 2 ? c0 - 2 : 0, c1 - 1);
	atomic_fetch_add_explicit(&st->walks, 1, memory_order_relaxed);
}

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct stress *st = r->st;
	struct memslot_vcpu *vcpu;

	memslot_thread_register(st->vm);
	if (memslot_vcpu_create(st->vm, &vcpu)) {
		report(st, "vcpu_create failed");
		return NULL;
	}
	while (!atomic_load_explicit(&st->stop, memory_order_relaxed))
		reader_round(r, vcpu);
	memslot_vcpu_destroy(vcpu);
	memslot_thread_unregister(st->vm);
	return NULL;
}

static void start_readers(struct stress *st, struct reader *rd,
			  void *(*fn)(void *))
{
	for (int i = 0; i < NREADERS; i++) {
		rd[i].st = st;
		rd[i].seed = 0x1234567ull * (uint64_t)(i + 1);
		assert_int_equal(pthread_create(&rd[i].tid, NULL, fn, &rd[i]), 0);
	}
}

static void stop_readers(struct stress *st, struct reader *rd)
{
	atomic_store(&st->stop, true);
	for (int i = 0; i < NREADERS; i++)
		pthread_join(rd[i].tid, NULL);
}

/* ---- the writer: a model of the layout and random changes ------------- */

static const struct layout *model(struct stress *st)
{
	return &st->snaps[atomic_load(&st->nsnap) - 1].final;
}

static struct rec *new_rec(struct stress *st, uint32_t id, uint64_t npages)
{
	struct rec *r = &st->recs[st->nrecs++];

	r->id = id;
	r->npages = npages;
	r->hva = st->next_hva;
	r->version = atomic_load(&st->nsnap);
	/* A gap page, so hva walks see slots as distinct ranges. */
	st->next_hva += (npages + 1) * PAGE;
	return r;
}

static const struct shape *find_id(const struct layout *l, uint32_t id)
{
	for (size_t i = 0; i < l->n; i++) {
		if (l->s[i].id == id)
			return &l->s[i];
	}
	return NULL;
}

static bool range_free(const struct layout *l, uint64_t base, uint64_t npages,
		       uint32_t except_id)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct shape *s = &l->s[i];

		if (s->id != except_id && s->base < base + npages &&
		    base < s->base + s->npages)
			return false;
	}
	return true;
}

static int free_id(struct stress *st, const struct layout *l)
{
	uint32_t id = (uint32_t)(tc_rng(&st->seed) % NIDS);

	for (int k = 0; k < NIDS; k++, id = (id + 1) % NIDS) {
		if (!find_id(l, id))
			return (int)id;
	}
	return -1;
}

/* Build the next layout from @l by replacing, adding or removing slots. */
static void lay_remove(struct layout *l, uint32_t id)
{
	for (size_t i = 0; i < l->n; i++) {
		if (l->s[i].id == id) {
			l->s[i] = l->s[--l->n];
			return;
		}
	}
}

static void lay_put(struct layout *l, struct shape s)
{
	lay_remove(l, s.id);
	l->s[l->n++] = s;
}

static void lay_sort(struct layout *l)
{
	for (size_t i = 1; i < l->n; i++) {
		struct shape x = l->s[i];
		size_t j = i;

		for (; j > 0 && l->s[j - 1].base > x.base; j--)
			l->s[j] = l->s[j - 1];
		l->s[j] = x;
	}
}

static struct memslot_region req_of(const struct shape *s)
{
	struct memslot_region r = tc_region_pages(0, s->id, s->flags, s->base,
						  s->npages, s->hva);

	r.user_data = s->rec;
	return r;
}

static struct memslot_region req_delete(uint32_t id)
{
	struct memslot_region r = { .slot = id };

	return r;
}

/* A free range of @npages for slot @id, or false. */
static bool pick_range(struct stress *st, const struct layout *l,
		       uint64_t npages, uint32_t id, uint64_t *base)
{
	for (int tries = 0; tries < 16; tries++) {
		*base = tc_rng(&st->seed) % (GFN_SPACE - npages);
		if (range_free(l, *base, npages, id))
			return true;
	}
	return false;
}

/* Each op fills @next and the requests; returns the request count or 0
 * if it does not apply to the current layout. */
static size_t op_create(struct stress *st, const struct layout *l,
			struct layout *next, struct memslot_region *q)
{
	int id = free_id(st, l);
	uint64_t npages = 1 + tc_rng(&st->seed) % 32, base;
	struct shape s;

	if (id < 0 || !pick_range(st, l, npages, (uint32_t)id, &base))
		return 0;
	s = sh(new_rec(st, (uint32_t)id, npages), base, 0);
	lay_put(next, s);
	q[0] = req_of(&s);
	return 1;
}

static const struct shape *pick_slot(struct stress *st, const struct layout *l)
{
	return l->n ? &l->s[tc_rng(&st->seed) % l->n] : NULL;
}

static size_t op_delete(struct stress *st, const struct layout *l,
			struct layout *next, struct memslot_region *q)
{
	const struct shape *s = pick_slot(st, l);

	if (!s)
		return 0;
	q[0] = req_delete(s->id);
	lay_remove(next, s->id);
	return 1;
}

static size_t op_move(struct stress *st, const struct layout *l,
		      struct layout *next, struct memslot_region *q)
{
	const struct shape *s = pick_slot(st, l);
	struct shape m;
	uint64_t base;

	if (!s || !pick_range(st, l, s->npages, s->id, &base) ||
	    base == s->base)
		return 0;
	m = *s;
	m.base = base;
	lay_put(next, m);
	q[0] = req_of(&m);
	return 1;
}

static size_t op_flags(struct stress *st, const struct layout *l,
		       struct layout *next, struct memslot_region *q)
{
	const struct shape *s = pick_slot(st, l);
	struct shape m;

	if (!s)
		return 0;
	m = *s;
	m.flags ^= MEMSLOT_MEM_LOG_DIRTY_PAGES;
	lay_put(next, m);
	q[0] = req_of(&m);
	return 1;
}

/* Split a slot in three: delete it, create its id and two more over the
 * same gfns (fresh records, backed by pieces of the old hva range). */
static size_t op_split(struct stress *st, const struct layout *l,
		       struct layout *next, struct memslot_region *q)
{
	const struct shape *s = pick_slot(st, l);
	uint32_t ids[3];
	uint64_t cut[4];
	size_t k = 1;

	if (!s || s->npages < 3)
		return 0;
	ids[0] = s->id;
	for (uint32_t id = 0; id < NIDS && k < 3; id++) {
		if (!find_id(l, id))
			ids[k++] = id;
	}
	if (k < 3)
		return 0;
	lay_remove(next, s->id);
	cut[0] = 0;
	cut[1] = 1 + tc_rng(&st->seed) % (s->npages - 2);
	cut[2] = cut[1] + 1 + tc_rng(&st->seed) % (s->npages - cut[1] - 1);
	cut[3] = s->npages;
	q[0] = req_delete(s->id);
	for (int i = 0; i < 3; i++) {
		struct rec *r = new_rec(st, ids[i], cut[i + 1] - cut[i]);
		struct shape p;

		r->hva = s->hva + cut[i] * PAGE;
		p = sh(r, s->base + cut[i], 0);
		lay_put(next, p);
		q[1 + i] = req_of(&p);
	}
	return 4;
}

/* Merge two slots that touch in gfn space into one new slot. */
static size_t op_merge(struct stress *st, const struct layout *l,
		       struct layout *next, struct memslot_region *q)
{
	const struct shape *a = NULL, *b = NULL;
	struct shape m;

	for (size_t i = 0; i + 1 < l->n && !a; i++) {
		if (l->s[i].base + l->s[i].npages == l->s[i + 1].base) {
			a = &l->s[i];
			b = &l->s[i + 1];
		}
	}
	if (!a)
		return 0;
	q[0] = req_delete(a->id);
	q[1] = req_delete(b->id);
	lay_remove(next, a->id);
	lay_remove(next, b->id);
	m = sh(new_rec(st, a->id, a->npages + b->npages), a->base, 0);
	lay_put(next, m);
	q[2] = req_of(&m);
	return 3;
}

/* One random change: publish its snapshot, then make it. */
static void writer_step(struct stress *st)
{
	static size_t (*const ops[])(struct stress *, const struct layout *,
				     struct layout *,
				     struct memslot_region *) = {
		op_create, op_create, op_delete, op_move, op_flags, op_split,
		op_merge, op_merge,
	};
	size_t v = atomic_load(&st->nsnap), n;
	const struct layout *l = model(st);
	struct memslot_region q[4];
	struct memslot_txn_result res = { 0 };
	struct snapshot *next = &st->snaps[v];
	int err;

	next->final = *l;
	n = ops[tc_rng(&st->seed) % (sizeof(ops) / sizeof(ops[0]))](st, l,
							     &next->final, q);
	if (!n)
		return;
	lay_sort(&next->final);
	/* Deferred changes have no INVALID phase. */
	next->has_mid = !st->deferred && make_mid(l, &next->final, &next->mid);
	atomic_store(&st->nsnap, v + 1);
	if (st->deferred) {
		err = memslot_set_regions_deferred(st->vm, q, n, &res);
		/* Now and then let the reclaim thread catch up. */
		if (!err && st->changes % 64 == 63)
			err = memslot_vm_wait(st->vm, res.ticket);
	} else {
		err = n == 1 ? memslot_set_region(st->vm, q, NULL)
			     : memslot_set_regions(st->vm, q, n, &res);
	}
	if (err)
		report(st, "writer: change of %zu requests failed: %d (rule %d, "
		     "request %zu)", n, err, (int)res.rule, res.failed);
	st->changes++;
}

/*
 * Whether a timed writer loop goes on: until @end, and past it (by a minute
 * at most) until it made more than MIN_CHANGES changes, so that a loaded
 * machine slows the test down instead of failing its "the run did
 * something" checks.
 */
#define MIN_CHANGES 10
#define GIVE_UP_SECONDS 60.0

static bool keep_writing(const struct stress *st, double end)
{
	double t = tc_now();

	if (t < end)
		return true;
	return st->changes <= MIN_CHANGES && t < end + GIVE_UP_SECONDS;
}

static void run_consistency(const struct memslot_rcu_ops *rcu, bool deferred)
{
	struct stress *st = calloc(1, sizeof(*st));
	struct reader rd[NREADERS];
	double end;

	assert_non_null(st);
	stress_init(st, rcu);
	st->deferred = deferred;
	start_readers(st, rd, reader_main);
	end = tc_now() + tc_stress_seconds(3.0);
	while (!atomic_load(&st->stop) && keep_writing(st, end) &&
	       atomic_load(&st->nsnap) < MAX_VERSIONS &&
	       st->nrecs + 4 < st->cap_recs)
		writer_step(st);
	stop_readers(st, rd);
	print_message("%llu changes, %llu walks, %llu lookups\n",
		      (unsigned long long)st->changes,
		      (unsigned long long)atomic_load(&st->walks),
		      (unsigned long long)atomic_load(&st->lookups));
	if (atomic_load(&st->errors))
		fail_msg("%d errors; first: %s", atomic_load(&st->errors),
			 st->msg);
	/* The run did exercise both sides. */
	assert_true(st->changes > MIN_CHANGES);
	assert_true(atomic_load(&st->walks) > 10);
	stress_fini(st);
	free(st);
}

static void test_consistency(void **state)
{
	(void)state;
	run_consistency(default_rcu(), false);
}

static void test_consistency_deferred(void **state)
{
	(void)state;
	run_consistency(default_rcu(), true);
}

static void test_consistency_counter(void **state)
{
	(void)state;
	run_consistency(memslot_rcu_counter(), false);
}

/* ---- generations read outside read sections -------------------------- */

struct gen_poll {
	struct memslot_vm *vm;
	atomic_bool stop;
	atomic_ulong reads;
	atomic_int errors;
};

/* memslot_generation() from a thread that never registers nor enters a
 * read section, as its contract allows: every value must belong to its
 * address space and, without the in-flight bit, never go back. */
static void *gen_poller(void *arg)
{
	struct gen_poll *p = arg;
	uint64_t last[2] = { 0, 1 };

	while (!atomic_load(&p->stop)) {
		for (unsigned int as = 0; as < 2; as++) {
			uint64_t g = memslot_generation(p->vm, as) &
				     ~(1ull << 63);

			if (g % 2 != as || g < last[as])
				atomic_fetch_add(&p->errors, 1);
			last[as] = g;
		}
		atomic_fetch_add(&p->reads, 1);
	}
	return NULL;
}

/* A writer replaces layouts (so their headers go back to the spares and
 * out of them) while the poller reads; sanitizers see any read of a
 * replaced header. */
static void test_generation_outside_sections(void **state)
{
	struct memslot_config cfg;
	struct gen_poll p = { 0 };
	struct memslot_region r = { 0 };
	pthread_t th;
	double end = tc_now() + tc_stress_seconds(3.0) / 3;
	unsigned long changes = 0;

	(void)state;
	memslot_config_init_x86_64(&cfg);
	cfg.nr_as = 2;		/* the SMM address space too */
	cfg.rcu = default_rcu();
	assert_int_equal(memslot_vm_create(&cfg, &p.vm), 0);
	r.memory_size = 16 * PAGE;
	r.userspace_addr = 0x100000000ull;
	assert_int_equal(memslot_set_region(p.vm, &r, NULL), 0);
	assert_int_equal(pthread_create(&th, NULL, gen_poller, &p), 0);
	while (tc_now() < end || changes < 100) {
		r.guest_phys_addr = (changes + 1) % 2 * 64 * PAGE;
		assert_int_equal(memslot_set_region(p.vm, &r, NULL), 0);
		changes++;
	}
	atomic_store(&p.stop, true);
	pthread_join(th, NULL);
	print_message("%lu moves, %lu polls\n", changes,
		      (unsigned long)atomic_load(&p.reads));
	assert_int_equal(atomic_load(&p.errors), 0);
	assert_true(atomic_load(&p.reads) > 0);
	/* Each blocking move adds 2 * nr_as, and reads see the last one. */
	assert_int_equal(memslot_generation(p.vm, 0), 2 * (1 + 2 * changes));
	memslot_vm_destroy(p.vm);
}

/* ---- KVM's memslot_modification_stress_test -------------------------- */

/*
 * Readers translate gfns of a fixed big slot while the writer creates and
 * deletes another slot next to it: the big slot must always be found and
 * translate to the same hva, whatever the other slot is doing.
 */
#define BIG_BASE 0x100000ull
#define BIG_PAGES 0x40000ull	/* 1 GiB of 4 KiB pages; no memory behind */

static void *modification_reader(void *arg)
{
	struct reader *r = arg;
	struct stress *st = r->st;
	struct memslot_vcpu *vcpu;

	memslot_thread_register(st->vm);
	if (memslot_vcpu_create(st->vm, &vcpu)) {
		report(st, "vcpu_create failed");
		return NULL;
	}
	while (!atomic_load_explicit(&st->stop, memory_order_relaxed)) {
		memslot_read_lock(st->vm);
		for (int i = 0; i < 64; i++) {
			uint64_t off = tc_rng(&r->seed) % BIG_PAGES, hva = 0;
			const struct memslot_slot *s =
				memslot_vcpu_gfn_to_slot(vcpu, 0, BIG_BASE + off);
			int err = memslot_gfn_to_hva(st->vm, 0, BIG_BASE + off,
						     true, &hva);

			if (!s || memslot_slot_id(s) != 0 || err ||
			    hva != st->big_hva + off * PAGE)
				report(st, "big slot gfn %#llx: slot %p err %d",
				     (unsigned long long)(BIG_BASE + off),
				     (const void *)s, err);
		}
		memslot_read_unlock(st->vm);
		atomic_fetch_add_explicit(&st->lookups, 128,
					  memory_order_relaxed);
	}
	memslot_vcpu_destroy(vcpu);
	memslot_thread_unregister(st->vm);
	return NULL;
}

static void test_modification_stress(void **state)
{
	struct stress *st = calloc(1, sizeof(*st));
	struct reader rd[NREADERS];
	struct memslot_region big = {
		.slot = 0, .guest_phys_addr = BIG_BASE * PAGE,
		.memory_size = BIG_PAGES * PAGE, .userspace_addr = 0x200000000ull,
	};
	struct memslot_region other = {
		.slot = 1, .guest_phys_addr = (BIG_BASE + BIG_PAGES) * PAGE,
		.memory_size = PAGE, .userspace_addr = 0x100000000ull,
	};
	double end;

	(void)state;
	assert_non_null(st);
	stress_init(st, default_rcu());
	st->big_hva = big.userspace_addr;
	assert_int_equal(memslot_set_region(st->vm, &big, NULL), 0);
	start_readers(st, rd, modification_reader);
	end = tc_now() + tc_stress_seconds(3.0);
	while (!atomic_load(&st->stop) && keep_writing(st, end)) {
		other.memory_size = PAGE;
		if (memslot_set_region(st->vm, &other, NULL))
			report(st, "create of the other slot failed");
		other.memory_size = 0;
		if (memslot_set_region(st->vm, &other, NULL))
			report(st, "delete of the other slot failed");
		st->changes += 2;
	}
	stop_readers(st, rd);
	print_message("%llu changes, %llu lookups\n",
		      (unsigned long long)st->changes,
		      (unsigned long long)atomic_load(&st->lookups));
	if (atomic_load(&st->errors))
		fail_msg("%d errors; first: %s", atomic_load(&st->errors),
			 st->msg);
	assert_true(st->changes > MIN_CHANGES);
	assert_true(atomic_load(&st->lookups) > 0);
	stress_fini(st);
	free(st);
}

/* ---- two-slot transactions seen through views -------------------------- */

/*
 * The writer creates two far-apart slots X and Y in one transaction and
 * deletes both in the next; readers look X up, spin, then look Y up
 * through one view: they must find both or neither.  (test_view.c shows
 * the same check failing with VM-level lookups.)
 */
#define PAIR_X 0x10ull
#define PAIR_Y 0x300ull

static void *pair_reader(void *arg)
{
	struct reader *r = arg;
	struct stress *st = r->st;

	memslot_thread_register(st->vm);
	while (!atomic_load_explicit(&st->stop, memory_order_relaxed)) {
		struct memslot_view *v;
		bool x, y;

		memslot_read_lock(st->vm);
		v = memslot_view_get(st->vm, 0);
		x = memslot_view_gfn_to_slot(v, PAIR_X) != NULL;
		for (int i = 0; i < (int)(tc_rng(&r->seed) % 64); i++)
			atomic_signal_fence(memory_order_seq_cst);
		y = memslot_view_search(v, PAIR_Y, false) != NULL;
		memslot_read_unlock(st->vm);
		if (x != y)
			report(st, "view saw half of a two-slot transaction "
			       "(X %d, Y %d)", x, y);
		atomic_fetch_add_explicit(&st->walks, 1, memory_order_relaxed);
	}
	memslot_thread_unregister(st->vm);
	return NULL;
}

static void run_pairs(bool deferred)
{
	struct stress *st = calloc(1, sizeof(*st));
	struct reader rd[NREADERS];
	struct memslot_region q[2] = {
		{ .slot = 1, .guest_phys_addr = PAIR_X * PAGE,
		  .userspace_addr = 0x100000000ull },
		{ .slot = 2, .guest_phys_addr = PAIR_Y * PAGE,
		  .userspace_addr = 0x100100000ull },
	};
	struct memslot_txn_result res = { 0 };
	double end;

	assert_non_null(st);
	stress_init(st, default_rcu());
	start_readers(st, rd, pair_reader);
	end = tc_now() + tc_stress_seconds(3.0) / 2;
	while (!atomic_load(&st->stop) && keep_writing(st, end)) {
		q[0].memory_size = q[1].memory_size = st->changes % 2 ? 0 : PAGE;
		if ((deferred ? memslot_set_regions_deferred(st->vm, q, 2, &res)
			      : memslot_set_regions(st->vm, q, 2, &res)))
			report(st, "pair transaction failed");
		if (deferred && st->changes % 64 == 63)
			memslot_vm_wait(st->vm, res.ticket);
		st->changes++;
	}
	stop_readers(st, rd);
	print_message("%s: %llu transactions, %llu sections\n",
		      deferred ? "deferred" : "blocking",
		      (unsigned long long)st->changes,
		      (unsigned long long)atomic_load(&st->walks));
	if (atomic_load(&st->errors))
		fail_msg("%d errors; first: %s", atomic_load(&st->errors),
			 st->msg);
	/* Both sides ran: the pair check had sections to look at. */
	assert_true(st->changes > MIN_CHANGES);
	assert_true(atomic_load(&st->walks) > 10);
	stress_fini(st);
	free(st);
}

static void test_pairs_through_views(void **state)
{
	(void)state;
	run_pairs(false);
	run_pairs(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checker_rejects_torn),
		cmocka_unit_test(test_consistency),
		cmocka_unit_test(test_consistency_counter),
		cmocka_unit_test(test_consistency_deferred),
		cmocka_unit_test(test_pairs_through_views),
		cmocka_unit_test(test_generation_outside_sections),
		cmocka_unit_test(test_modification_stress),
	};

#ifdef TC_UNDER_TSAN
	print_message("ThreadSanitizer: every VM uses the counter backend\n");
#endif
	return cmocka_run_group_tests_name("stress", tests, NULL, NULL);
}
