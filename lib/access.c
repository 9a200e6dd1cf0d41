/* SPDX-License-Identifier: MIT */
/*
 * Guest-memory access: copies and zero-copy maps of guest-physical ranges.
 *
 * A walk goes through a range one piece at a time, a piece being the part
 * of the range inside one slot: one lookup and one memcpy per piece, not
 * per page, because a slot's pages are contiguous in the host too.  A walk
 * on a view translates from the gfn index's leaf alone (base, end, and the
 * aux word: hva and the INVALID and READONLY bits), so a piece costs no
 * load from the slot object unless it marks pages dirty: on a cold index
 * that object is a cache miss of its own, as long as the tree walk's
 * slowest level.  A walk through a vCPU translates from the slot its cache
 * holds.  Either way the translation refuses INVALID and (for writes)
 * READONLY slots and clamps the page offset before it forms an address;
 * only the byte offset inside the page, which the page mask already
 * bounds, is added afterwards.
 *
 * Nothing here allocates, locks or stores to shared memory (beyond the
 * guest memory itself): a view walk does one index search per slot-sized
 * piece and has no use for the set-wide last-used cache.
 */
#include <errno.h>
#include <string.h>

#include <memslot/access.h>

#include "dirty.h"
#include "vcpu.h"
#include "vm.h"

enum walk_op { WALK_READ, WALK_WRITE, WALK_MARK };

/*
 * How a walk finds slots: through @vcpu's cache when it is set, otherwise
 * in the gfn index of @cview.
 */
struct walk {
	const struct memslot_view *cview;
	struct memslot_vcpu *vcpu;
	unsigned int shift;
	enum walk_op op;
	bool mark;
	char *buf;	/* the bytes read or written; none to mark only */
};

/* The part of a range inside one slot. */
struct piece {
	const struct memslot_slot *slot;
	uint64_t hva;
	uint64_t len;
};

#define ACCESS_WRITE_FLAGS MEMSLOT_ACCESS_MARK_DIRTY

static void *hva_ptr(uint64_t hva)
{
	return (void *)(uintptr_t)hva;
}

/*
 * 0 to go on; 1 for an empty access (done, nothing touched); -EINVAL for
 * a range that wraps.  As KVM's rule 8 for slots, a range ending exactly at
 * 2^64 wraps too: its sum is 0, below @gpa.
 */
static int range_check(uint64_t gpa, size_t len)
{
	if (!len)
		return 1;
	return gpa + (uint64_t)len <= gpa ? -EINVAL : 0;
}

/* The VM's page size, which every slot shares; the layout keeps a copy
 * so that an access needs no slot to learn it. */
static unsigned int view_page_shift(const struct memslot_view *view)
{
	return ((const struct memslot_set *)view)->page_shift;
}

/* What a translation needs of the slot holding a gfn. */
struct xlate {
	const struct memslot_slot *slot;
	uint64_t base;
	uint64_t end;
	uint64_t aux;	/* set_slot_aux() */
};

static bool walk_find(const struct walk *w, uint64_t gfn, struct xlate *x)
{
	const struct memslot_slot *slot;
	struct bpt_hit h;

	if (!w->vcpu) {
		if (!set_search_hit((const struct memslot_set *)w->cview, gfn,
				    &h))
			return false;
		*x = (struct xlate){ h.val, h.key, h.end, h.aux };
		return true;
	}
	slot = memslot_vcpu_view_gfn_to_slot(w->vcpu, w->cview, gfn);
	if (!slot)
		return false;
	/* The entry now holds the slot found, as the index's cell did. */
	*x = (struct xlate){ slot, w->vcpu->base,
			     w->vcpu->base + w->vcpu->npages, w->vcpu->aux };
	return true;
}

/*
 * The piece of [@gpa, @gpa + @left) in the slot holding @gpa, with the
 * verdicts of memslot_slot_gfn_to_hva(): a hole or an INVALID slot is
 * -EFAULT, a write to a READONLY slot -EROFS.
 */
static int walk_piece(const struct walk *w, uint64_t gpa, uint64_t left,
		      struct piece *p)
{
	uint64_t gfn = gpa >> w->shift;
	uint64_t in_page = gpa & ((1ull << w->shift) - 1);
	uint64_t room;
	struct xlate x;
	int err;

	if (!walk_find(w, gfn, &x))
		return -EFAULT;
	err = set_aux_to_hva(x.base, x.end, x.aux, gfn, w->shift,
			     w->op != WALK_READ, &p->hva);
	if (err)
		return err;
	p->slot = x.slot;
	p->hva += in_page;
	/* Bytes from @gpa to the slot's end; a slot's size fits in u64. */
	room = ((x.end - gfn) << w->shift) - in_page;
	p->len = left < room ? left : room;
	return 0;
}

/* Mark the pages a piece starting at @gpa covers; after its bytes. */
static void piece_mark(const struct piece *p, uint64_t gpa,
		       unsigned int shift)
{
	uint64_t first = gpa >> shift;
	uint64_t last = (gpa + p->len - 1) >> shift;

	slot_mark_dirty(p->slot, first - p->slot->base_gfn, last - first + 1);
}

/* The piece @p of a walk at @gpa, @pos bytes into the range. */
static void piece_do(const struct walk *w, const struct piece *p,
		     uint64_t gpa, size_t pos)
{
	if (w->op == WALK_READ)
		memcpy(w->buf + pos, hva_ptr(p->hva), p->len);
	else if (w->op == WALK_WRITE)
		memcpy(hva_ptr(p->hva), w->buf + pos, p->len);
	if (w->mark)
		piece_mark(p, gpa, w->shift);
}

/* Copy (or mark) piece by piece; stop at the first untranslatable byte. */
static int walk_run(const struct walk *w, uint64_t gpa, size_t len,
		    size_t *done)
{
	struct piece p;
	size_t pos = 0;
	int err = 0;

	while (pos < len) {
		err = walk_piece(w, gpa + pos, len - pos, &p);
		if (err)
			break;
		piece_do(w, &p, gpa + pos, pos);
		pos += (size_t)p.len;
	}
	if (done)
		*done = pos;
	return err;
}

/*
 * The checks every access makes before it touches anything, then the
 * walk.  @w->shift is 0 when the caller knows only the view.
 */
static int walk_start(struct walk *w, uint64_t gpa, size_t len,
		      size_t *done)
{
	int r = range_check(gpa, len);

	if (!w->shift)
		w->shift = view_page_shift(w->cview);
	if (r) {
		if (done)
			*done = 0;
		return r > 0 ? 0 : r;
	}
	return walk_run(w, gpa, len, done);
}

/* A const source travels in the walk's one buffer pointer. */
static char *src_buf(const void *buf)
{
	return (char *)(uintptr_t)buf;
}

static int bad_request(size_t *done)
{
	if (done)
		*done = 0;
	return -EINVAL;
}

/* ---- on a view ------------------------------------------------------- */

int memslot_view_read(struct memslot_view *view, uint64_t gpa, void *buf,
		      size_t len, size_t *done)
{
	struct walk w = { .cview = view, .op = WALK_READ, .buf = buf };

	return walk_start(&w, gpa, len, done);
}

int memslot_view_write(struct memslot_view *view, uint64_t gpa,
		       const void *buf, size_t len, unsigned int flags,
		       size_t *done)
{
	struct walk w = { .cview = view, .op = WALK_WRITE,
			  .buf = src_buf(buf) };

	if (flags & ~ACCESS_WRITE_FLAGS)
		return bad_request(done);
	w.mark = flags & MEMSLOT_ACCESS_MARK_DIRTY;
	return walk_start(&w, gpa, len, done);
}

int memslot_view_mark_dirty(struct memslot_view *view, uint64_t gpa,
			    size_t len)
{
	struct walk w = {
		.cview = view, .op = WALK_MARK, .mark = true,
	};

	return walk_start(&w, gpa, len, NULL);
}

/*
 * Append a piece to the segment list, merging it into the last segment
 * when their host ranges touch.  Return: false when the list is full.
 */
static bool seg_add(struct memslot_segment *segs, size_t max_segs,
		    size_t *n, const struct piece *p)
{
	struct memslot_segment *last = *n ? &segs[*n - 1] : NULL;

	if (last && last->hva + last->len == p->hva) {
		last->len += p->len;
		return true;
	}
	if (*n == max_segs)
		return false;
	segs[*n].hva = p->hva;
	segs[*n].len = p->len;
	++*n;
	return true;
}

static int map_check(uint64_t gpa, size_t len, size_t max_segs)
{
	int r = range_check(gpa, len);

	if (!r && !max_segs)
		return -EINVAL;
	return r;
}

int memslot_view_map(struct memslot_view *view, uint64_t gpa, size_t len,
		     bool write, struct memslot_segment *segs,
		     size_t max_segs, size_t *nsegs, size_t *mapped)
{
	struct walk w = {
		.cview = view, .op = write ? WALK_WRITE : WALK_READ,
	};
	size_t n = 0, pos = 0;
	struct piece p;
	int err = map_check(gpa, len, max_segs);

	w.shift = view_page_shift(view);
	while (!err && pos < len) {
		err = walk_piece(&w, gpa + pos, len - pos, &p);
		if (err || !seg_add(segs, max_segs, &n, &p))
			break;
		pos += (size_t)p.len;
	}
	*nsegs = n;
	*mapped = pos;
	return err > 0 ? 0 : err;
}

/* ---- on the VM ------------------------------------------------------- */

int memslot_guest_read(struct memslot_vm *vm, unsigned int as_id,
		       uint64_t gpa, void *buf, size_t len, size_t *done)
{
	struct walk w = { .shift = vm->page_shift, .op = WALK_READ,
			  .buf = buf };

	if (as_id >= vm->nr_as)
		return bad_request(done);
	w.cview = memslot_view_get(vm, as_id);
	return walk_start(&w, gpa, len, done);
}

int memslot_guest_write(struct memslot_vm *vm, unsigned int as_id,
			uint64_t gpa, const void *buf, size_t len,
			unsigned int flags, size_t *done)
{
	struct walk w = { .shift = vm->page_shift, .op = WALK_WRITE,
			  .buf = src_buf(buf) };

	if (as_id >= vm->nr_as || (flags & ~ACCESS_WRITE_FLAGS))
		return bad_request(done);
	w.cview = memslot_view_get(vm, as_id);
	w.mark = flags & MEMSLOT_ACCESS_MARK_DIRTY;
	return walk_start(&w, gpa, len, done);
}

/* ---- through a vCPU cache ------------------------------------------- */

/*
 * The short path of a vCPU access: all @len bytes in one page of one
 * usable slot, which the vCPU cache's entry holds.  The translation is
 * memslot_slot_gfn_to_hva()'s, inline and from the entry alone
 * (vcpu_entry_to_hva()): this path is a guest's every small access.
 * Return: true, with *@hva the host address of @gpa (the slot is
 * vcpu->slot); or false when the access needs the walk, which also makes every check, reports every
 * error and, on a cache miss, refills the entry.  A miss makes no call
 * here: a call would give every hit a stack frame (six register saves
 * and restores on x86-64), and a walk that looks the slot up costs about
 * what a lookup does.
 */
static inline bool vcpu_one_page(struct memslot_vcpu *vcpu,
				 const struct memslot_view *view,
				 unsigned int shift, uint64_t gpa, size_t len,
				 bool write, uint64_t *hva)
{
	uint64_t in_page = gpa & ((1ull << shift) - 1);
	uint64_t gfn = gpa >> shift;

	/* Unsigned: len 0 wraps and takes the walk, which touches nothing. */
	if ((uint64_t)len - 1 >= (1ull << shift) - in_page)
		return false;
	if (!vcpu_holds_in(vcpu, (const struct memslot_set *)view, gfn) ||
	    vcpu_entry_to_hva(vcpu, gfn, write, hva))
		return false;
	*hva += in_page;
	return true;
}

/*
 * memcpy of a small constant size is a load and a store; the sizes a vCPU
 * uses most get one each, inline.  Return: false for any other size, which
 * copy_out() takes.
 */
static inline bool copy_fixed(void *dst, const void *src, size_t len)
{
	switch (len) {
	case 1:
		memcpy(dst, src, 1);
		return true;
	case 2:
		memcpy(dst, src, 2);
		return true;
	case 4:
		memcpy(dst, src, 4);
		return true;
	case 8:
		memcpy(dst, src, 8);
		return true;
	default:
		return false;
	}
}

/* The rest of a short access of another size: out of line and reached by
 * a tail jump, so that the short paths need no stack frame. */
__attribute__((noinline))
static int copy_out(void *dst, const void *src, size_t len, size_t *done)
{
	memcpy(dst, src, len);
	if (done)
		*done = len;
	return 0;
}

static int vcpu_walk(struct memslot_vcpu *vcpu,
		     const struct memslot_view *view, uint64_t gpa, char *buf,
		     size_t len, bool mark, enum walk_op op, size_t *done)
{
	struct walk w = {
		.cview = view, .vcpu = vcpu, .shift = vcpu->page_shift,
		.op = op, .mark = mark, .buf = buf,
	};

	return walk_start(&w, gpa, len, done);
}

/*
 * The walks of the short paths below, out of line so that those need no
 * stack frame, and with six arguments at most so that a short path
 * reaches them by a tail jump, not a call that would need one.
 */
__attribute__((noinline))
static int vcpu_walk_read(struct memslot_vcpu *vcpu,
			  const struct memslot_view *view, uint64_t gpa,
			  char *buf, size_t len, size_t *done)
{
	return vcpu_walk(vcpu, view, gpa, buf, len, false, WALK_READ, done);
}

__attribute__((noinline))
static int vcpu_walk_write(struct memslot_vcpu *vcpu,
			   const struct memslot_view *view, uint64_t gpa,
			   char *buf, size_t len, size_t *done)
{
	return vcpu_walk(vcpu, view, gpa, buf, len, false, WALK_WRITE, done);
}

__attribute__((noinline))
static int vcpu_walk_write_mark(struct memslot_vcpu *vcpu,
				const struct memslot_view *view, uint64_t gpa,
				char *buf, size_t len, size_t *done)
{
	return vcpu_walk(vcpu, view, gpa, buf, len, true, WALK_WRITE, done);
}

int memslot_vcpu_view_read(struct memslot_vcpu *vcpu,
			   const struct memslot_view *view, uint64_t gpa,
			   void *buf, size_t len, size_t *done)
{
	unsigned int shift = vcpu->page_shift;
	uint64_t hva;

	if (!vcpu_one_page(vcpu, view, shift, gpa, len, false, &hva))
		return vcpu_walk_read(vcpu, view, gpa, buf, len, done);
	if (!copy_fixed(buf, hva_ptr(hva), len))
		return copy_out(buf, hva_ptr(hva), len, done);
	if (done)
		*done = len;
	return 0;
}

/* A short write that marks: out of line (it makes calls) and reached by a
 * tail jump.  The vCPU cache's entry holds the slot written. */
__attribute__((noinline))
static int write_mark_out(const struct memslot_vcpu *vcpu, uint64_t hva,
			  const void *buf, size_t len, uint64_t gfn,
			  size_t *done)
{
	memcpy(hva_ptr(hva), buf, len);
	slot_mark_dirty(vcpu->slot, gfn - vcpu->base, 1);
	if (done)
		*done = len;
	return 0;
}

int memslot_vcpu_view_write(struct memslot_vcpu *vcpu,
			    const struct memslot_view *view, uint64_t gpa,
			    const void *buf, size_t len, unsigned int flags,
			    size_t *done)
{
	unsigned int shift = vcpu->page_shift;
	bool mark = flags & MEMSLOT_ACCESS_MARK_DIRTY;
	uint64_t hva;

	if (flags & ~ACCESS_WRITE_FLAGS)
		return bad_request(done);
	if (!vcpu_one_page(vcpu, view, shift, gpa, len, true, &hva))
		return mark ? vcpu_walk_write_mark(vcpu, view, gpa,
						   src_buf(buf), len, done)
			    : vcpu_walk_write(vcpu, view, gpa, src_buf(buf),
					      len, done);
	if (mark)
		return write_mark_out(vcpu, hva, buf, len, gpa >> shift, done);
	if (!copy_fixed(hva_ptr(hva), buf, len))
		return copy_out(hva_ptr(hva), buf, len, done);
	if (done)
		*done = len;
	return 0;
}
