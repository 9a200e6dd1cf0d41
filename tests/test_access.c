/* SPDX-License-Identifier: MIT */
/*
 * Tests of lib/access.c: reads, writes and maps of guest-physical ranges
 * over real mmap'd backing.
 *
 * Every check compares whole buffers: the bytes a call copied, the bytes of
 * the caller's buffer it must not have touched, and the whole backing
 * against a reference copy (a write must change exactly the bytes it
 * reports).  A byte-array model of guest memory gives the expected result
 * of random accesses over random layouts.
 *
 * The dirty hook: this program is linked with --wrap=slot_mark_dirty, so
 * the access code's calls land in __wrap_slot_mark_dirty() below, which
 * records them (the tests see which pages a write marks, and when) and
 * passes them on to the real bitmap code.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include <memslot/access.h>

#include "common.h"
#include "dirty.h"

#define PAGE TC_PAGE
#define BACK_PAGES 64u
#define BACK_BYTES (BACK_PAGES * PAGE)
#define GUEST_PAGES 64u
#define GUEST_BYTES (GUEST_PAGES * PAGE)
#define CANARY 0xa5
#define MAX_MARKS 64

/* ---- the dirty hook ------------------------------------------------------ */

struct mark {
	uint32_t id;
	uint64_t first;
	uint64_t npages;
	/* The first marked page's first byte when the mark came: the write
	 * must already be there. */
	uint8_t byte;
};

static struct mark marks[MAX_MARKS];
static int nmarks;

void __real_slot_mark_dirty(const struct memslot_slot *slot,
			    uint64_t first_page, uint64_t npages);
void __wrap_slot_mark_dirty(const struct memslot_slot *slot,
			    uint64_t first_page, uint64_t npages);

void __wrap_slot_mark_dirty(const struct memslot_slot *slot,
			    uint64_t first_page, uint64_t npages)
{
	const uint8_t *page = (const uint8_t *)(uintptr_t)(
		memslot_slot_hva(slot) + first_page * PAGE);

	assert_true(nmarks < MAX_MARKS);
	assert_true(npages > 0);
	assert_true(first_page + npages <= memslot_slot_npages(slot));
	marks[nmarks].id = memslot_slot_id(slot);
	marks[nmarks].first = first_page;
	marks[nmarks].npages = npages;
	marks[nmarks].byte = *page;
	nmarks++;
	__real_slot_mark_dirty(slot, first_page, npages);
}

/* ---- fixture: a VM over one mmap'd backing area ------------------------ */

struct slotdef {
	uint32_t id;
	uint64_t gfn;
	uint64_t npages;
	uint64_t back_page;	/* hva = backing + back_page * PAGE */
	uint32_t flags;
};

/* The model: per guest page, its backing page or -1, and READONLY. */
struct model {
	int64_t back[GUEST_PAGES];
	bool ro[GUEST_PAGES];
};

struct fixture {
	struct memslot_config cfg;
	struct memslot_callbacks cb;
	struct memslot_vm *vm;
	struct memslot_vcpu *vcpu;
	uint8_t *back;		/* the real backing */
	uint8_t *ref;		/* what the backing must hold */
	struct model m;
	/* Set by the flush hook: an access made while a slot is INVALID. */
	uint64_t flush_gpa;
	size_t flush_len;
	int flush_ret, flush_map_ret;
	size_t flush_done, flush_mapped;
	int flush_calls;
};

/*
 * The fixed layout (pages).  Slots 0 and 1 are hva-contiguous; 5 and 6 are
 * hva-adjacent in the reverse order of their gpas; 3 is READONLY; gfns
 * [16, 18) are a hole.
 */
static const struct slotdef fixed[] = {
	{ 0, 0, 4, 0, 0 },
	{ 1, 4, 4, 4, 0 },
	{ 2, 8, 4, 20, 0 },
	{ 3, 12, 4, 30, MEMSLOT_MEM_READONLY },
	{ 4, 18, 4, 40, 0 },
	{ 5, 22, 4, 10, 0 },
	{ 6, 26, 2, 8, 0 },
};
#define NFIXED (sizeof(fixed) / sizeof(fixed[0]))
#define GUEST_END (28 * PAGE)

static uint64_t hva_of(const struct fixture *f, uint64_t back_page)
{
	return (uint64_t)(uintptr_t)f->back + back_page * PAGE;
}

static void on_flush(void *ctx, const struct memslot_slot *old);

static void fixture_open(struct fixture *f, unsigned int nr_as)
{
	memset(f, 0, sizeof(*f));
	memslot_config_init_x86_64(&f->cfg);
	f->cfg.rcu = memslot_rcu_none();
	f->cfg.nr_as = nr_as;
	f->cb.size = sizeof(f->cb);
	f->cb.flush = on_flush;
	f->cb.ctx = f;
	f->cfg.callbacks = &f->cb;
	assert_int_equal(memslot_vm_create(&f->cfg, &f->vm), 0);
	assert_int_equal(memslot_vcpu_create(f->vm, &f->vcpu), 0);
	f->back = mmap(NULL, BACK_BYTES, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(f->back != MAP_FAILED);
	f->ref = malloc(BACK_BYTES);
	assert_non_null(f->ref);
	for (size_t i = 0; i < BACK_BYTES; i++)
		f->back[i] = (uint8_t)(i * 7 + i / 4093);
	memcpy(f->ref, f->back, BACK_BYTES);
	for (unsigned int p = 0; p < GUEST_PAGES; p++)
		f->m.back[p] = -1;
	f->flush_len = 1;
}

static void fixture_close(struct fixture *f)
{
	memslot_vcpu_destroy(f->vcpu);
	memslot_vm_destroy(f->vm);
	munmap(f->back, BACK_BYTES);
	free(f->ref);
}

static int add_slot(struct fixture *f, unsigned int as_id,
		    const struct slotdef *d)
{
	struct memslot_region r = tc_region_pages(as_id, d->id, d->flags,
						  d->gfn, d->npages,
						  hva_of(f, d->back_page));
	int err = memslot_set_region(f->vm, &r, NULL);

	for (uint64_t p = 0; !err && as_id == 0 && p < d->npages; p++) {
		f->m.back[d->gfn + p] = (int64_t)(d->back_page + p);
		f->m.ro[d->gfn + p] = d->flags & MEMSLOT_MEM_READONLY;
	}
	return err;
}

static void fixed_open(struct fixture *f)
{
	fixture_open(f, 1);
	for (size_t i = 0; i < NFIXED; i++)
		assert_int_equal(add_slot(f, 0, &fixed[i]), 0);
	nmarks = 0;
}

/* The whole backing equals the reference. */
static void check_backing(const struct fixture *f)
{
	assert_int_equal(memcmp(f->back, f->ref, BACK_BYTES), 0);
}

/* ---- the model --------------------------------------------------------- */

/* The reference byte of guest address @gpa, or NULL in a hole. */
static uint8_t *model_byte(struct fixture *f, uint64_t gpa)
{
	uint64_t page = gpa / PAGE;

	if (page >= GUEST_PAGES || f->m.back[page] < 0)
		return NULL;
	return f->ref + (uint64_t)f->m.back[page] * PAGE + gpa % PAGE;
}

/* Byte by byte, as the model of memslot_view_read/write: the expected
 * return and done count; a write updates the reference. */
static int model_access(struct fixture *f, uint64_t gpa, uint8_t *buf,
			size_t len, bool write, size_t *done)
{
	size_t i;

	*done = 0;
	if (len && gpa + len <= gpa)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		uint8_t *b = model_byte(f, gpa + i);

		if (!b)
			break;
		if (write && f->m.ro[(gpa + i) / PAGE]) {
			*done = i;
			return -EROFS;
		}
		if (write)
			*b = buf[i];
		else
			buf[i] = *b;
	}
	*done = i;
	return i == len ? 0 : -EFAULT;
}

/* The model of memslot_view_map: pages by host address, merged. */
static int model_map(struct fixture *f, uint64_t gpa, size_t len, bool write,
		     struct memslot_segment *segs, size_t max, size_t *nsegs,
		     size_t *mapped)
{
	size_t pos = 0, n = 0;
	int ret = 0;

	*nsegs = *mapped = 0;
	if (len && (gpa + len <= gpa || !max))
		return -EINVAL;
	while (pos < len) {
		uint8_t *b = model_byte(f, gpa + pos);
		uint64_t hva, chunk = PAGE - (gpa + pos) % PAGE;

		if (!b || (write && f->m.ro[(gpa + pos) / PAGE])) {
			ret = b ? -EROFS : -EFAULT;
			break;
		}
		hva = (uint64_t)(uintptr_t)(f->back + (b - f->ref));
		chunk = chunk < len - pos ? chunk : len - pos;
		if (n && segs[n - 1].hva + segs[n - 1].len == hva) {
			segs[n - 1].len += chunk;
		} else if (n == max) {
			break;
		} else {
			segs[n].hva = hva;
			segs[n++].len = chunk;
		}
		pos += chunk;
	}
	*nsegs = n;
	*mapped = pos;
	return ret;
}

/* ---- helpers ------------------------------------------------------------- */

static struct memslot_view *view0(struct fixture *f)
{
	return memslot_view_get(f->vm, 0);
}

/*
 * Read through the view and compare with the model: result, done count
 * and every byte of the buffer (past done it must still hold the canary).
 * Return: the result, stored in *@done with the done count.
 */
static int do_read(struct fixture *f, uint64_t gpa, size_t len, size_t *done)
{
	uint8_t *buf = malloc(len + 1), *exp = malloc(len + 1);
	size_t mdone;
	int want, ret;

	assert_true(buf && exp);
	memset(buf, CANARY, len + 1);
	memset(exp, CANARY, len + 1);
	want = model_access(f, gpa, exp, len, false, &mdone);
	*done = 12345;
	memslot_read_lock(f->vm);
	ret = memslot_view_read(view0(f), gpa, buf, len, done);
	memslot_read_unlock(f->vm);
	assert_int_equal(ret, want);
	assert_int_equal(*done, mdone);
	assert_int_equal(memcmp(buf, exp, len + 1), 0);
	check_backing(f);
	free(buf);
	free(exp);
	return ret;
}

/* Write a pattern through the view and compare with the model (the whole
 * backing included). */
static int do_write(struct fixture *f, uint64_t gpa, size_t len,
		    unsigned int flags, size_t *done)
{
	uint8_t *buf = malloc(len + 1);
	size_t mdone;
	int want, ret;

	assert_non_null(buf);
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 13 + gpa + 1);
	want = model_access(f, gpa, buf, len, true, &mdone);
	*done = 12345;
	memslot_read_lock(f->vm);
	ret = memslot_view_write(view0(f), gpa, buf, len, flags, done);
	memslot_read_unlock(f->vm);
	assert_int_equal(ret, want);
	assert_int_equal(*done, mdone);
	check_backing(f);
	free(buf);
	return ret;
}

static void check_read(struct fixture *f, uint64_t gpa, size_t len,
		       int want_ret, size_t want_done)
{
	size_t done;

	assert_int_equal(do_read(f, gpa, len, &done), want_ret);
	assert_int_equal(done, want_done);
}

static void check_write(struct fixture *f, uint64_t gpa, size_t len,
			unsigned int flags, int want_ret, size_t want_done)
{
	size_t done;

	assert_int_equal(do_write(f, gpa, len, flags, &done), want_ret);
	assert_int_equal(done, want_done);
}

/* ---- reads and writes -------------------------------------------------- */

static void test_read_within_and_across(void **state)
{
	struct fixture f;

	(void)state;
	fixed_open(&f);
	check_read(&f, 0, 1, 0, 1);
	check_read(&f, 100, 200, 0, 200);
	/* Page boundary inside a slot, then slot 0 -> 1 -> 2 -> 3. */
	check_read(&f, PAGE - 3, 8, 0, 8);
	check_read(&f, 3 * PAGE + 17, 2 * PAGE, 0, 2 * PAGE);
	check_read(&f, 5, 16 * PAGE - 10, 0, 16 * PAGE - 10);
	/* READONLY slots read normally; reverse-hva neighbours too. */
	check_read(&f, 12 * PAGE, 4 * PAGE, 0, 4 * PAGE);
	check_read(&f, 18 * PAGE + 1, 10 * PAGE - 2, 0, 10 * PAGE - 2);
	assert_int_equal(nmarks, 0);
	fixture_close(&f);
}

static void test_read_stops_at_hole(void **state)
{
	struct fixture f;

	(void)state;
	fixed_open(&f);
	/* Ends one byte into the hole: all but that byte. */
	check_read(&f, 15 * PAGE, PAGE + 1, -EFAULT, PAGE);
	check_read(&f, 14 * PAGE + 9, 5 * PAGE, -EFAULT, 2 * PAGE - 9);
	/* Starts in a hole, or past every slot. */
	check_read(&f, 16 * PAGE, 10, -EFAULT, 0);
	check_read(&f, 17 * PAGE + 4095, 2, -EFAULT, 0);
	check_read(&f, GUEST_END, 1, -EFAULT, 0);
	check_read(&f, 1ull << 50, PAGE, -EFAULT, 0);
	fixture_close(&f);
}

static void test_write_across(void **state)
{
	struct fixture f;

	(void)state;
	fixed_open(&f);
	check_write(&f, 0, 1, 0, 0, 1);
	check_write(&f, PAGE - 2, 4, 0, 0, 4);
	check_write(&f, 7, 12 * PAGE - 7, 0, 0, 12 * PAGE - 7);
	check_write(&f, 20 * PAGE + 1, 8 * PAGE - 1, 0, 0, 8 * PAGE - 1);
	/* Read back what was written. */
	check_read(&f, 0, GUEST_END, -EFAULT, 16 * PAGE);
	fixture_close(&f);
}

static void test_write_readonly_and_hole(void **state)
{
	struct fixture f;

	(void)state;
	fixed_open(&f);
	/* Slot 2 is written up to the READONLY slot 3. */
	check_write(&f, 11 * PAGE + 100, PAGE, 0, -EROFS, PAGE - 100);
	check_write(&f, 12 * PAGE, 1, 0, -EROFS, 0);
	check_write(&f, 15 * PAGE + 4095, 1, 0, -EROFS, 0);
	/* Holes: at the start, and after the last slot. */
	check_write(&f, 16 * PAGE, 3 * PAGE, 0, -EFAULT, 0);
	check_write(&f, GUEST_END - 10, 20, 0, -EFAULT, 10);
	fixture_close(&f);
}

static void test_wrap_and_empty(void **state)
{
	struct fixture f;
	uint8_t buf[16];
	size_t done = 99;

	(void)state;
	fixed_open(&f);
	/* A sum of exactly 2^64 wraps; one byte less does not. */
	check_read(&f, UINT64_MAX - 9, 10, -EINVAL, 0);
	check_read(&f, UINT64_MAX, 1, -EINVAL, 0);
	check_read(&f, UINT64_MAX - 9, 9, -EFAULT, 0);
	check_write(&f, UINT64_MAX - 3, 8, 0, -EINVAL, 0);
	/* Length 0: 0 everywhere, even where a byte would wrap or fault, and
	 * no buffer is touched (NULL would crash). */
	memslot_read_lock(f.vm);
	assert_int_equal(memslot_view_read(view0(&f), UINT64_MAX, NULL, 0,
					   &done), 0);
	assert_int_equal(done, 0);
	done = 99;
	assert_int_equal(memslot_view_write(view0(&f), 16 * PAGE, NULL, 0, 0,
					    &done), 0);
	assert_int_equal(done, 0);
	done = 99;
	assert_int_equal(memslot_view_read(view0(&f), 1ull << 63, buf,
					   UINT64_MAX, &done), -EINVAL);
	assert_int_equal(done, 0);
	/* done may be NULL. */
	assert_int_equal(memslot_view_read(view0(&f), 0, buf, 16, NULL), 0);
	assert_memory_equal(buf, f.ref, 16);
	memslot_read_unlock(f.vm);
	check_backing(&f);
	fixture_close(&f);
}

static void test_bad_flags(void **state)
{
	struct fixture f;
	uint8_t buf[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	size_t done = 99;

	(void)state;
	fixed_open(&f);
	memslot_read_lock(f.vm);
	for (unsigned int bit = 1; bit < 32; bit++) {
		done = 99;
		assert_int_equal(memslot_view_write(view0(&f), 0, buf, 8,
						    1u << bit, &done), -EINVAL);
		assert_int_equal(done, 0);
		assert_int_equal(memslot_guest_write(f.vm, 0, 0, buf, 8,
						     1u << bit, &done),
				 -EINVAL);
		assert_int_equal(memslot_vcpu_view_write(f.vcpu, view0(&f), 0,
							 buf, 8, 1u << bit,
							 &done), -EINVAL);
	}
	memslot_read_unlock(f.vm);
	check_backing(&f);
	fixture_close(&f);
}

static void test_empty_view(void **state)
{
	struct fixture f;
	uint8_t buf[4];
	size_t done = 99;

	(void)state;
	fixture_open(&f, 1);
	memslot_read_lock(f.vm);
	assert_int_equal(memslot_view_read(view0(&f), 0, buf, 4, &done),
			 -EFAULT);
	assert_int_equal(done, 0);
	assert_int_equal(memslot_view_write(view0(&f), 0, buf, 4, 0, &done),
			 -EFAULT);
	assert_int_equal(memslot_view_mark_dirty(view0(&f), 0, 4), -EFAULT);
	assert_int_equal(memslot_view_read(view0(&f), UINT64_MAX, buf, 4,
					   &done), -EINVAL);
	memslot_read_unlock(f.vm);
	fixture_close(&f);
}

/* ---- the VM-level calls -------------------------------------------------- */

static void test_guest_calls(void **state)
{
	struct fixture f;
	struct slotdef other = { 0, 0, 4, 50, 0 };
	uint8_t buf[64], exp[64];
	size_t done = 99;

	(void)state;
	fixture_open(&f, 2);
	for (size_t i = 0; i < NFIXED; i++)
		assert_int_equal(add_slot(&f, 0, &fixed[i]), 0);
	/* Address space 1 maps gpa 0 elsewhere. */
	assert_int_equal(add_slot(&f, 1, &other), 0);
	memslot_read_lock(f.vm);
	assert_int_equal(memslot_guest_read(f.vm, 1, 8, buf, 64, &done), 0);
	assert_int_equal(done, 64);
	assert_memory_equal(buf, f.ref + 50 * PAGE + 8, 64);
	for (int i = 0; i < 64; i++)
		exp[i] = (uint8_t)~i;
	assert_int_equal(memslot_guest_write(f.vm, 1, 4 * PAGE - 32, exp, 64,
					     0, &done), -EFAULT);
	assert_int_equal(done, 32);
	memcpy(f.ref + 54 * PAGE - 32, exp, 32);
	assert_int_equal(memslot_guest_read(f.vm, 2, 0, buf, 1, &done),
			 -EINVAL);
	assert_int_equal(done, 0);
	assert_int_equal(memslot_guest_write(f.vm, 7, 0, buf, 1, 0, &done),
			 -EINVAL);
	assert_int_equal(memslot_guest_read(f.vm, 0, 13 * PAGE, buf, 64,
					    &done), 0);
	assert_memory_equal(buf, f.ref + 31 * PAGE, 64);
	memslot_read_unlock(f.vm);
	check_backing(&f);
	fixture_close(&f);
}

/* ---- maps ---------------------------------------------------------------- */

/* Map through the view and compare with the model, segment by segment. */
static void check_map(struct fixture *f, uint64_t gpa, size_t len,
		      bool write, size_t max, int want_ret, size_t want_nsegs,
		      size_t want_mapped)
{
	struct memslot_segment segs[16], exp[16];
	size_t nsegs = 99, mapped = 99, mn, mm;
	int ret;

	assert_true(max <= 16);
	memset(segs, 0, sizeof(segs));
	memset(exp, 0, sizeof(exp));
	model_map(f, gpa, len, write, exp, max, &mn, &mm);
	assert_int_equal(mn, want_nsegs);
	assert_int_equal(mm, want_mapped);
	memslot_read_lock(f->vm);
	ret = memslot_view_map(view0(f), gpa, len, write, segs, max, &nsegs,
			       &mapped);
	memslot_read_unlock(f->vm);
	assert_int_equal(ret, want_ret);
	assert_int_equal(nsegs, want_nsegs);
	assert_int_equal(mapped, want_mapped);
	assert_memory_equal(segs, exp, sizeof(segs));
}

static void test_map_merges(void **state)
{
	struct fixture f;

	(void)state;
	fixed_open(&f);
	/* Slots 0 and 1 are one host range. */
	check_map(&f, 0, 8 * PAGE, false, 4, 0, 1, 8 * PAGE);
	check_map(&f, 100, 8 * PAGE - 200, true, 1, 0, 1, 8 * PAGE - 200);
	/* ... then slot 2, then READONLY slot 3. */
	check_map(&f, 10, 16 * PAGE - 20, false, 4, 0, 3, 16 * PAGE - 20);
	/* Slots 5 and 6 touch in hva, but 6 comes first: two segments. */
	check_map(&f, 22 * PAGE, 6 * PAGE, false, 4, 0, 2, 6 * PAGE);
	check_map(&f, 5 * PAGE + 1, 1, false, 1, 0, 1, 1);
	fixture_close(&f);
}

static void test_map_limits(void **state)
{
	struct fixture f;
	struct memslot_segment seg;
	size_t n = 9, mapped = 9;

	(void)state;
	fixed_open(&f);
	/* max_segs stops it: what fits is mapped, and that is not an error. */
	check_map(&f, 0, 16 * PAGE, false, 1, 0, 1, 8 * PAGE);
	check_map(&f, 0, 16 * PAGE, false, 2, 0, 2, 12 * PAGE);
	/* Holes and READONLY slots stop it with an error. */
	check_map(&f, 4 * PAGE, 14 * PAGE, false, 8, -EFAULT, 3, 12 * PAGE);
	check_map(&f, 4 * PAGE, 14 * PAGE, true, 8, -EROFS, 2, 8 * PAGE);
	check_map(&f, 16 * PAGE, 1, false, 8, -EFAULT, 0, 0);
	check_map(&f, UINT64_MAX - 1, 2, false, 8, -EINVAL, 0, 0);
	check_map(&f, 0, 0, false, 8, 0, 0, 0);
	memslot_read_lock(f.vm);
	assert_int_equal(memslot_view_map(view0(&f), 0, 1, false, &seg, 0, &n,
					  &mapped), -EINVAL);
	assert_int_equal(n, 0);
	assert_int_equal(mapped, 0);
	memslot_read_unlock(f.vm);
	fixture_close(&f);
}

/* Bytes written through a mapped segment land in the guest. */
static void test_map_then_write(void **state)
{
	struct fixture f;
	struct memslot_segment segs[4];
	size_t n, mapped, off = 0;

	(void)state;
	fixed_open(&f);
	memslot_read_lock(f.vm);
	assert_int_equal(memslot_view_map(view0(&f), 3 * PAGE, 6 * PAGE, true,
					  segs, 4, &n, &mapped), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		memset((void *)(uintptr_t)segs[i].hva, 0x5a, segs[i].len);
		off += segs[i].len;
	}
	assert_int_equal(off, 6 * PAGE);
	assert_int_equal(memslot_view_mark_dirty(view0(&f), 3 * PAGE,
						 6 * PAGE), 0);
	memslot_read_unlock(f.vm);
	memset(f.ref + 3 * PAGE, 0x5a, 5 * PAGE);
	memset(f.ref + 20 * PAGE, 0x5a, PAGE);
	check_backing(&f);
	/* Marks: slot 0 page 3, slot 1 pages 0-3, slot 2 page 0. */
	assert_int_equal(nmarks, 3);
	assert_int_equal(marks[0].id, 0);
	assert_int_equal(marks[0].first, 3);
	assert_int_equal(marks[0].npages, 1);
	assert_int_equal(marks[1].npages, 4);
	assert_int_equal(marks[2].id, 2);
	assert_int_equal(marks[2].npages, 1);
	fixture_close(&f);
}

/* ---- the dirty hook ---------------------------------------------------- */

static void test_dirty_marks(void **state)
{
	struct fixture f;

	(void)state;
	fixed_open(&f);
	check_write(&f, PAGE, 4, 0, 0, 4);
	assert_int_equal(nmarks, 0);
	/* Slot 0 from page 2 (mid-page), slot 1 whole, slot 2 pages 0-1. */
	check_write(&f, 2 * PAGE + 5, 8 * PAGE, MEMSLOT_ACCESS_MARK_DIRTY, 0,
		    8 * PAGE);
	assert_int_equal(nmarks, 3);
	assert_int_equal(marks[0].id, 0);
	assert_int_equal(marks[0].first, 2);
	assert_int_equal(marks[0].npages, 2);
	assert_int_equal(marks[1].id, 1);
	assert_int_equal(marks[1].first, 0);
	assert_int_equal(marks[1].npages, 4);
	assert_int_equal(marks[2].id, 2);
	assert_int_equal(marks[2].first, 0);
	assert_int_equal(marks[2].npages, 3);
	/* Each mark came after its bytes: the first byte of slots 1 and 2
	 * already held the new value (it differs from the old one). */
	assert_int_not_equal(f.back[4 * PAGE], (uint8_t)(4 * PAGE * 7 + 4));
	assert_int_not_equal(f.back[20 * PAGE], (uint8_t)(20 * PAGE * 7 + 20));
	assert_int_equal(marks[1].byte, f.back[4 * PAGE]);
	assert_int_equal(marks[2].byte, f.back[20 * PAGE]);
	/* A write stopped by READONLY marks only what it wrote. */
	nmarks = 0;
	check_write(&f, 11 * PAGE + 1, 2 * PAGE, MEMSLOT_ACCESS_MARK_DIRTY,
		    -EROFS, PAGE - 1);
	assert_int_equal(nmarks, 1);
	assert_int_equal(marks[0].first, 3);
	assert_int_equal(marks[0].npages, 1);
	/* Reads never mark. */
	nmarks = 0;
	check_read(&f, 0, 8 * PAGE, 0, 8 * PAGE);
	assert_int_equal(nmarks, 0);
	fixture_close(&f);
}

/* ---- INVALID slots ----------------------------------------------------- */

/* Inside the flush of a DELETE/MOVE the old slot is INVALID: accesses
 * stop at it. */
static void on_flush(void *ctx, const struct memslot_slot *old)
{
	struct fixture *f = ctx;
	struct memslot_segment segs[4];
	uint8_t *buf = malloc(f->flush_len);

	(void)old;
	assert_non_null(buf);
	f->flush_calls++;
	memslot_read_lock(f->vm);
	f->flush_ret = memslot_view_read(view0(f), f->flush_gpa, buf,
					 f->flush_len, &f->flush_done);
	f->flush_map_ret = memslot_view_map(view0(f), f->flush_gpa,
					    f->flush_len, false, segs, 4,
					    &(size_t){ 0 }, &f->flush_mapped);
	memslot_read_unlock(f->vm);
	free(buf);
}

static void test_invalid_slot(void **state)
{
	struct fixture f;
	struct memslot_region r = {
		.slot = 2,
		.guest_phys_addr = 40 * PAGE,
		.memory_size = 4 * PAGE,
	};

	(void)state;
	fixed_open(&f);
	f.flush_gpa = 6 * PAGE;
	f.flush_len = 4 * PAGE;
	r.userspace_addr = hva_of(&f, 20);
	/* Move slot 2 away: during the flush it is INVALID. */
	assert_int_equal(memslot_set_region(f.vm, &r, NULL), 0);
	assert_int_equal(f.flush_calls, 1);
	assert_int_equal(f.flush_ret, -EFAULT);
	assert_int_equal(f.flush_done, 2 * PAGE);
	assert_int_equal(f.flush_map_ret, -EFAULT);
	assert_int_equal(f.flush_mapped, 2 * PAGE);
	/* Afterwards gfn 8 is a hole and gfn 40 holds slot 2's memory. */
	for (int p = 8; p < 12; p++)
		f.m.back[p] = -1;
	for (int p = 0; p < 4; p++)
		f.m.back[40 + p] = 20 + p;
	check_read(&f, 6 * PAGE, 4 * PAGE, -EFAULT, 2 * PAGE);
	check_read(&f, 40 * PAGE - 1, 2, -EFAULT, 0);
	check_read(&f, 40 * PAGE + 1, 4 * PAGE - 1, 0, 4 * PAGE - 1);
	fixture_close(&f);
}

/* ---- through a vCPU cache ---------------------------------------------- */

static void vcpu_read(struct fixture *f, uint64_t gpa, size_t len,
		      int want_ret, size_t want_done)
{
	uint8_t buf[3 * PAGE + 1], exp[3 * PAGE + 1];
	size_t done = 12345, mdone;
	int ret;

	assert_true(len <= 3 * PAGE);
	memset(buf, CANARY, sizeof(buf));
	memset(exp, CANARY, sizeof(exp));
	assert_int_equal(model_access(f, gpa, exp, len, false, &mdone),
			 want_ret);
	assert_int_equal(mdone, want_done);
	memslot_read_lock(f->vm);
	ret = memslot_vcpu_view_read(f->vcpu, view0(f), gpa, buf, len, &done);
	memslot_read_unlock(f->vm);
	assert_int_equal(ret, want_ret);
	assert_int_equal(done, want_done);
	assert_memory_equal(buf, exp, sizeof(buf));
}

static void vcpu_write(struct fixture *f, uint64_t gpa, size_t len,
		       unsigned int flags, int want_ret, size_t want_done)
{
	uint8_t buf[3 * PAGE];
	size_t done = 12345, mdone;
	int ret;

	assert_true(len <= 3 * PAGE);
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i ^ gpa ^ 0x3c);
	assert_int_equal(model_access(f, gpa, buf, len, true, &mdone),
			 want_ret);
	assert_int_equal(mdone, want_done);
	memslot_read_lock(f->vm);
	ret = memslot_vcpu_view_write(f->vcpu, view0(f), gpa, buf, len, flags,
				      &done);
	memslot_read_unlock(f->vm);
	assert_int_equal(ret, want_ret);
	assert_int_equal(done, want_done);
	check_backing(f);
}

static void test_vcpu_access(void **state)
{
	struct fixture f;

	(void)state;
	fixed_open(&f);
	vcpu_read(&f, 4, 4, 0, 4);		/* miss, then cached */
	vcpu_read(&f, PAGE + 8, 4, 0, 4);	/* one-page path */
	vcpu_read(&f, PAGE - 2, 4, 0, 4);	/* crosses a page */
	vcpu_read(&f, 4 * PAGE - 2, 4, 0, 4);	/* crosses slots */
	vcpu_read(&f, 7 * PAGE, 3 * PAGE, 0, 3 * PAGE);
	vcpu_read(&f, 16 * PAGE - 2, 4, -EFAULT, 2);
	vcpu_read(&f, 16 * PAGE, 4, -EFAULT, 0);
	vcpu_read(&f, UINT64_MAX - 3, 4, -EINVAL, 0);
	vcpu_read(&f, 16 * PAGE, 0, 0, 0);
	vcpu_write(&f, 20, 4, 0, 0, 4);
	vcpu_write(&f, 12 * PAGE + 8, 4, 0, -EROFS, 0);
	vcpu_write(&f, 12 * PAGE - 2, 4, 0, -EROFS, 2);
	vcpu_write(&f, 22 * PAGE - 5, 10, 0, 0, 10);
	nmarks = 0;
	vcpu_write(&f, 19 * PAGE + 9, 8, MEMSLOT_ACCESS_MARK_DIRTY, 0, 8);
	assert_int_equal(nmarks, 1);
	assert_int_equal(marks[0].id, 4);
	assert_int_equal(marks[0].first, 1);
	assert_int_equal(marks[0].npages, 1);
	vcpu_write(&f, 2 * PAGE - 1, 2, MEMSLOT_ACCESS_MARK_DIRTY, 0, 2);
	assert_int_equal(nmarks, 2);
	assert_int_equal(marks[1].first, 1);
	assert_int_equal(marks[1].npages, 2);
	/* The short path on a cache hit (the first read caches slot 1):
	 * sizes copy_fixed() leaves to copy_out(), a marked write, and a
	 * write to a READONLY slot after a hit on it. */
	vcpu_read(&f, 5 * PAGE + 16, 4, 0, 4);
	vcpu_read(&f, 5 * PAGE + 100, 3, 0, 3);
	vcpu_read(&f, 6 * PAGE + 200, 16, 0, 16);
	vcpu_write(&f, 6 * PAGE + 300, 5, 0, 0, 5);
	vcpu_write(&f, 7 * PAGE, 4, MEMSLOT_ACCESS_MARK_DIRTY, 0, 4);
	vcpu_write(&f, 7 * PAGE + 500, 16, MEMSLOT_ACCESS_MARK_DIRTY, 0, 16);
	assert_int_equal(nmarks, 4);
	assert_int_equal(marks[2].id, 1);
	assert_int_equal(marks[2].first, 3);
	assert_int_equal(marks[2].npages, 1);
	assert_int_equal(marks[2].byte, f.ref[(4 + 3) * PAGE]);
	assert_int_equal(marks[3].first, 3);
	vcpu_read(&f, 13 * PAGE, 8, 0, 8);
	vcpu_write(&f, 13 * PAGE + 8, 8, 0, -EROFS, 0);
	fixture_close(&f);
}

static void test_vcpu_gfn_to_hva(void **state)
{
	struct fixture f;
	uint64_t hva = 0;

	(void)state;
	fixed_open(&f);
	memslot_read_lock(f.vm);
	assert_ptr_equal(memslot_vcpu_vm(f.vcpu), f.vm);
	assert_int_equal(memslot_vcpu_gfn_to_hva(f.vcpu, 0, 9, true, &hva), 0);
	assert_int_equal(hva, hva_of(&f, 21));
	assert_int_equal(memslot_vcpu_view_gfn_to_hva(f.vcpu, view0(&f), 13,
						      false, &hva), 0);
	assert_int_equal(hva, hva_of(&f, 31));
	assert_int_equal(memslot_vcpu_view_gfn_to_hva(f.vcpu, view0(&f), 13,
						      true, &hva), -EROFS);
	assert_int_equal(memslot_vcpu_gfn_to_hva(f.vcpu, 0, 16, false, &hva),
			 -ENOENT);
	assert_int_equal(memslot_vcpu_gfn_to_hva(f.vcpu, 1, 0, false, &hva),
			 -ENOENT);
	memslot_read_unlock(f.vm);
	fixture_close(&f);
}

/* A cached slot that moves: the vCPU path must not use the old place. */
static void test_vcpu_after_move(void **state)
{
	struct fixture f;
	struct memslot_region r = {
		.slot = 4,
		.guest_phys_addr = 50 * PAGE,
		.memory_size = 4 * PAGE,
	};

	(void)state;
	fixed_open(&f);
	vcpu_read(&f, 18 * PAGE + 4, 4, 0, 4);
	r.userspace_addr = hva_of(&f, 40);
	assert_int_equal(memslot_set_region(f.vm, &r, NULL), 0);
	for (int p = 0; p < 4; p++) {
		f.m.back[18 + p] = -1;
		f.m.back[50 + p] = 40 + p;
	}
	vcpu_read(&f, 18 * PAGE + 4, 4, -EFAULT, 0);
	vcpu_read(&f, 50 * PAGE + 4, 4, 0, 4);
	fixture_close(&f);
}

/* ---- random layouts against the model ---------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(uint64_t n)
{
	return tc_rng_xorshift(&rng_state) % n;
}

/* Up to 8 slots at random gfns (some touching), random backing pages
 * (aliases and hva-contiguous neighbours happen), some READONLY. */
static void random_layout(struct fixture *f)
{
	uint64_t gfn = rnd(3);
	uint32_t id = 0;

	while (gfn < GUEST_PAGES && id < 8) {
		struct slotdef d = { id++, gfn, 1 + rnd(8), 0, 0 };

		if (d.gfn + d.npages > GUEST_PAGES)
			d.npages = GUEST_PAGES - d.gfn;
		d.back_page = rnd(3) ? rnd(BACK_PAGES - d.npages + 1)
				     : (id > 1 ? (uint64_t)f->m.back[gfn - 1] + 1
					       : 0);
		if (d.back_page + d.npages > BACK_PAGES)
			d.back_page = 0;
		d.flags = rnd(5) ? 0 : MEMSLOT_MEM_READONLY;
		assert_int_equal(add_slot(f, 0, &d), 0);
		gfn += d.npages + (rnd(3) ? 0 : rnd(3));
	}
}

static void random_range(uint64_t *gpa, size_t *len)
{
	switch (rnd(4)) {
	case 0:
		*gpa = rnd(GUEST_BYTES);
		*len = 1 + rnd(8);
		break;
	case 1:
		*gpa = rnd(GUEST_PAGES) * PAGE;
		*len = (1 + rnd(12)) * PAGE;
		break;
	default:
		*gpa = rnd(GUEST_BYTES + PAGE);
		*len = rnd(20 * PAGE);
	}
}

static void random_map(struct fixture *f, uint64_t gpa, size_t len,
		       bool write)
{
	struct memslot_segment segs[6], exp[6];
	size_t nsegs, mapped, mn, mm;
	int want = model_map(f, gpa, len, write, exp, 6, &mn, &mm);

	int ret;

	memslot_read_lock(f->vm);
	ret = memslot_view_map(view0(f), gpa, len, write, segs, 6, &nsegs,
			       &mapped);
	memslot_read_unlock(f->vm);
	assert_int_equal(ret, want);
	assert_int_equal(nsegs, mn);
	assert_int_equal(mapped, mm);
	assert_int_equal(memcmp(segs, exp, nsegs * sizeof(*segs)), 0);
}

static void random_ops(struct fixture *f)
{
	uint64_t gpa;
	size_t len, done;

	for (int i = 0; i < 24; i++) {
		bool write = rnd(2);

		random_range(&gpa, &len);
		nmarks = 0;
		if (rnd(4) == 0)
			random_map(f, gpa, len, write);
		else if (write)
			do_write(f, gpa, len, (unsigned int)rnd(2), &done);
		else
			do_read(f, gpa, len, &done);
	}
}

static void test_random(void **state)
{
	(void)state;
	for (int round = 0; round < 100; round++) {
		struct fixture f;

		fixture_open(&f, 1);
		random_layout(&f);
		random_ops(&f);
		fixture_close(&f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_within_and_across),
		cmocka_unit_test(test_read_stops_at_hole),
		cmocka_unit_test(test_write_across),
		cmocka_unit_test(test_write_readonly_and_hole),
		cmocka_unit_test(test_wrap_and_empty),
		cmocka_unit_test(test_bad_flags),
		cmocka_unit_test(test_empty_view),
		cmocka_unit_test(test_guest_calls),
		cmocka_unit_test(test_map_merges),
		cmocka_unit_test(test_map_limits),
		cmocka_unit_test(test_map_then_write),
		cmocka_unit_test(test_dirty_marks),
		cmocka_unit_test(test_invalid_slot),
		cmocka_unit_test(test_vcpu_access),
		cmocka_unit_test(test_vcpu_gfn_to_hva),
		cmocka_unit_test(test_vcpu_after_move),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests_name("access", tests, NULL, NULL);
}
