/* SPDX-License-Identifier: MIT */
/*
 * The reference model: every rule of shared/kvm-semantics.md written out as
 * directly as possible.  Speed does not matter; each function scans the
 * whole array so that its correctness can be checked by reading it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "refmodel.h"

#define REF_USER_FLAGS (MEMSLOT_MEM_LOG_DIRTY_PAGES | MEMSLOT_MEM_READONLY)

int ref_model_init(struct ref_model *m, const struct memslot_config *cfg)
{
	memset(m, 0, sizeof(*m));
	m->as = calloc(cfg->nr_as, sizeof(*m->as));
	if (!m->as)
		return -ENOMEM;
	m->nr_as = cfg->nr_as;
	for (unsigned int i = 0; i < m->nr_as; i++)
		m->as[i].generation = i;
	return 0;
}

static unsigned char *dirty_new(const struct ref_model *m, uint64_t npages)
{
	unsigned char *d = calloc(npages ? npages : 1, 1);

	if (d && (m->manual & MEMSLOT_DIRTY_LOG_INITIALLY_SET))
		memset(d, 1, npages);
	return d;
}

void ref_model_free(struct ref_model *m)
{
	if (m->as) {
		for (unsigned int i = 0; i < m->nr_as; i++) {
			for (size_t k = 0; k < m->as[i].nslots; k++)
				free(m->as[i].slots[k].dirty);
			free(m->as[i].slots);
		}
	}
	free(m->as);
	memset(m, 0, sizeof(*m));
}

int ref_model_copy(struct ref_model *dst, const struct ref_model *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->as = calloc(src->nr_as, sizeof(*dst->as));
	if (!dst->as)
		return -ENOMEM;
	dst->nr_as = src->nr_as;
	dst->last_change = src->last_change;
	dst->deferred = src->deferred;
	dst->manual = src->manual;
	for (unsigned int i = 0; i < src->nr_as; i++) {
		const struct ref_as *s = &src->as[i];
		struct ref_as *d = &dst->as[i];

		d->generation = s->generation;
		if (!s->nslots)
			continue;
		d->slots = malloc(s->nslots * sizeof(*d->slots));
		if (!d->slots) {
			ref_model_free(dst);
			return -ENOMEM;
		}
		memcpy(d->slots, s->slots, s->nslots * sizeof(*d->slots));
		d->nslots = d->cap = s->nslots;
		for (size_t k = 0; k < s->nslots; k++) {
			const struct ref_slot *o = &s->slots[k];

			if (!o->dirty)
				continue;
			d->slots[k].dirty = malloc(o->npages);
			if (!d->slots[k].dirty) {
				for (size_t j = k; j < s->nslots; j++)
					d->slots[j].dirty = NULL;
				ref_model_free(dst);
				return -ENOMEM;
			}
			memcpy(d->slots[k].dirty, o->dirty, o->npages);
		}
	}
	return 0;
}

void ref_region_split(const struct memslot_config *cfg, uint32_t slot,
		      unsigned int *as_id, uint32_t *id)
{
	/* Shifting a 32-bit value by 32 is undefined: id_bits 32 means no
	 * address-space bits at all. */
	if (cfg->id_bits >= 32) {
		*as_id = 0;
		*id = slot;
		return;
	}
	*as_id = slot >> cfg->id_bits;
	*id = slot & ((1u << cfg->id_bits) - 1);
}

static struct ref_slot *find_mut(const struct ref_model *m,
				 unsigned int as_id, uint32_t id)
{
	if (as_id >= m->nr_as)
		return NULL;
	for (size_t i = 0; i < m->as[as_id].nslots; i++) {
		if (m->as[as_id].slots[i].id == id)
			return &m->as[as_id].slots[i];
	}
	return NULL;
}

const struct ref_slot *ref_find(const struct ref_model *m, unsigned int as_id,
				uint32_t id)
{
	return find_mut(m, as_id, id);
}

uint64_t ref_total_pages(const struct ref_model *m, unsigned int as_id)
{
	uint64_t sum = 0;

	if (as_id >= m->nr_as)
		return 0;
	for (size_t i = 0; i < m->as[as_id].nslots; i++)
		sum += m->as[as_id].slots[i].npages;
	return sum;
}

/* ---- validation --------------------------------------------------------- */

/* A request with its slot argument decoded. */
struct ref_req {
	const struct memslot_region *r;
	unsigned int as_id;
	uint32_t id;
	uint64_t base_gfn;
	uint64_t npages;
};

static bool flags_combo_bad(const struct memslot_config *cfg, uint32_t flags)
{
	if ((flags & MEMSLOT_MEM_READONLY) && !cfg->readonly)
		return true;
	return (flags & MEMSLOT_MEM_GUEST_MEMFD) &&
	       (flags & (MEMSLOT_MEM_LOG_DIRTY_PAGES | MEMSLOT_MEM_READONLY));
}

static bool hva_bad(const struct memslot_config *cfg,
		    const struct memslot_region *r)
{
	uint64_t page_mask = (1ull << cfg->page_shift) - 1;

	if (r->userspace_addr & page_mask)
		return true;
	if (r->userspace_addr & cfg->hva_tag_mask)
		return true;
	return !(r->memory_size <= cfg->hva_limit &&
		 r->userspace_addr <= cfg->hva_limit - r->memory_size);
}

/* Rules 1-10: the checks that look at the request alone.  @want_as is the
 * address space a transaction is bound to, or -1: naming another one is a
 * rule of the transaction call (reported as rule 8), checked once the
 * request has passed every check memslot_set_region() would make alone. */
static enum memslot_rule check_request(const struct memslot_config *cfg,
				       const struct ref_req *q, bool internal,
				       long want_as)
{
	const struct memslot_region *r = q->r;
	uint64_t page_mask = (1ull << cfg->page_shift) - 1;
	uint32_t known = REF_USER_FLAGS;

	if (cfg->guest_memfd)
		known |= MEMSLOT_MEM_GUEST_MEMFD;
	if (r->flags & ~known)
		return MEMSLOT_RULE_FLAGS_UNKNOWN;
	if (!internal && q->id >= cfg->user_slots)
		return MEMSLOT_RULE_ID_USER;
	if (flags_combo_bad(cfg, r->flags))
		return MEMSLOT_RULE_FLAGS_COMBO;
	if (r->memory_size & page_mask)
		return MEMSLOT_RULE_SIZE_ALIGN;
	if (r->guest_phys_addr & page_mask)
		return MEMSLOT_RULE_GPA_ALIGN;
	if (hva_bad(cfg, r))
		return MEMSLOT_RULE_HVA;
	if ((r->flags & MEMSLOT_MEM_GUEST_MEMFD) &&
	    ((r->guest_memfd_offset & page_mask) ||
	     r->guest_memfd_offset + r->memory_size < r->guest_memfd_offset))
		return MEMSLOT_RULE_GMEM_OFFSET;
	if (q->as_id >= cfg->nr_as || q->id >= cfg->total_slots)
		return MEMSLOT_RULE_AS_ID;
	/* A sum of exactly 2^64 comes out as 0, below any nonzero gpa. */
	if (r->guest_phys_addr + r->memory_size < r->guest_phys_addr)
		return MEMSLOT_RULE_GPA_WRAP;
	/* Internal ids (>= user_slots) are exempt, as KVM's private slots. */
	if (q->id < cfg->user_slots && q->npages > cfg->max_pages)
		return MEMSLOT_RULE_TOO_LARGE;
	if (want_as >= 0 && q->as_id != (unsigned long)want_as)
		return MEMSLOT_RULE_AS_ID;
	return MEMSLOT_RULE_OK;
}

static bool ranges_meet(uint64_t a_base, uint64_t a_npages, uint64_t b_base,
			uint64_t b_npages)
{
	/* Compare last gfns: base + npages never wraps, but stay obvious. */
	return a_base <= b_base + (b_npages - 1) &&
	       b_base <= a_base + (a_npages - 1);
}

static bool overlaps_other(const struct ref_model *m, const struct ref_req *q)
{
	const struct ref_as *as = &m->as[q->as_id];

	for (size_t i = 0; i < as->nslots; i++) {
		const struct ref_slot *s = &as->slots[i];

		if (s->id != q->id &&
		    ranges_meet(s->base_gfn, s->npages, q->base_gfn, q->npages))
			return true;
	}
	return false;
}

/* Rules 13-15 on an existing slot; sets the change kind. */
static enum memslot_rule check_modify(const struct ref_slot *old,
				      const struct ref_req *q,
				      enum memslot_change *change)
{
	const struct memslot_region *r = q->r;
	uint32_t fixed = MEMSLOT_MEM_READONLY | MEMSLOT_MEM_GUEST_MEMFD;

	/* guest_memfd slots are immutable: even the same request again */
	if (r->flags & MEMSLOT_MEM_GUEST_MEMFD)
		return MEMSLOT_RULE_GMEM_IMMUTABLE;
	if (r->userspace_addr != old->hva || q->npages != old->npages ||
	    ((r->flags ^ old->flags) & fixed))
		return MEMSLOT_RULE_MODIFY;
	if (q->base_gfn != old->base_gfn)
		*change = MEMSLOT_CHANGE_MOVE;
	else if (r->flags != old->flags)
		*change = MEMSLOT_CHANGE_FLAGS_ONLY;
	else
		return MEMSLOT_RULE_NOOP;
	return MEMSLOT_RULE_OK;
}

/* Rules 11-16: the checks against the current layout. */
static enum memslot_rule check_layout(const struct ref_model *m,
				      const struct ref_req *q,
				      enum memslot_change *change)
{
	const struct ref_slot *old = ref_find(m, q->as_id, q->id);
	enum memslot_rule rule;

	*change = MEMSLOT_CHANGE_NONE;
	if (q->r->memory_size == 0) {
		if (!old)
			return MEMSLOT_RULE_DELETE_MISSING;
		*change = MEMSLOT_CHANGE_DELETE;
		return MEMSLOT_RULE_OK;
	}
	if (!old) {
		uint64_t total = ref_total_pages(m, q->as_id);

		if (total + q->npages < total)
			return MEMSLOT_RULE_PAGES_OVERFLOW;
		*change = MEMSLOT_CHANGE_CREATE;
	} else {
		rule = check_modify(old, q, change);
		if (rule != MEMSLOT_RULE_OK)
			return rule;
	}
	if (*change == MEMSLOT_CHANGE_FLAGS_ONLY)
		return MEMSLOT_RULE_OK;
	if (overlaps_other(m, q))
		return MEMSLOT_RULE_OVERLAP;
	return MEMSLOT_RULE_OK;
}

/* Rule 17, the arch's prepare step: after every other check. */
static bool beyond_max_gfn(const struct memslot_config *cfg,
			   uint64_t base_gfn, uint64_t npages)
{
	return base_gfn + (npages - 1) > cfg->max_gfn;
}

/* ---- applying a change -------------------------------------------------- */

static int append_slot(struct ref_as *as, const struct ref_slot *s)
{
	if (as->nslots == as->cap) {
		size_t cap = as->cap ? as->cap * 2 : 16;
		struct ref_slot *n = realloc(as->slots, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		as->slots = n;
		as->cap = cap;
	}
	as->slots[as->nslots++] = *s;
	return 0;
}

static int apply(struct ref_model *m, const struct ref_req *q,
		 enum memslot_change change)
{
	struct ref_as *as = &m->as[q->as_id];
	struct ref_slot *old = find_mut(m, q->as_id, q->id);
	struct ref_slot s = {
		.as_id = q->as_id, .id = q->id, .base_gfn = q->base_gfn,
		.npages = q->npages, .hva = q->r->userspace_addr,
		.flags = q->r->flags, .user_data = q->r->user_data,
	};

	bool log = q->r->flags & MEMSLOT_MEM_LOG_DIRTY_PAGES;
	if (q->r->flags & MEMSLOT_MEM_GUEST_MEMFD) {
		s.gmem_offset = q->r->guest_memfd_offset;
		s.gmem_fd = q->r->guest_memfd;
	}

	switch (change) {
	case MEMSLOT_CHANGE_CREATE:
		if (log && !(s.dirty = dirty_new(m, s.npages)))
			return -ENOMEM;
		if (append_slot(as, &s)) {
			free(s.dirty);
			return -ENOMEM;
		}
		return 0;
	case MEMSLOT_CHANGE_DELETE:
		free(old->dirty);
		*old = as->slots[--as->nslots];
		return 0;
	default:
		/* MOVE and FLAGS_ONLY keep the old slot's user data, and its
		 * bitmap when logging stays on. */
		if (log && !old->dirty && !(old->dirty = dirty_new(m, old->npages)))
			return -ENOMEM;
		if (!log) {
			free(old->dirty);
			old->dirty = NULL;
		}
		old->base_gfn = q->base_gfn;
		old->flags = q->r->flags;
		return 0;
	}
}

static uint64_t generation_step(const struct ref_model *m,
				enum memslot_change change)
{
	if (change == MEMSLOT_CHANGE_DELETE || change == MEMSLOT_CHANGE_MOVE)
		return 2ull * m->nr_as;
	return m->nr_as;
}

static int rule_errno(enum memslot_rule rule)
{
	if (rule == MEMSLOT_RULE_OK || rule == MEMSLOT_RULE_NOOP)
		return 0;
	return rule == MEMSLOT_RULE_OVERLAP ? -EEXIST : -EINVAL;
}

/* One request; @want_as as for check_request().  In a batch (@batch)
 * rule 17 waits for the whole batch (ref_set_regions()). */
static int set_one(struct ref_model *m, const struct memslot_config *cfg,
		   const struct memslot_region *region, bool internal,
		   long want_as, bool batch, enum memslot_rule *rule)
{
	struct ref_req q = { .r = region };
	enum memslot_change change = MEMSLOT_CHANGE_NONE;
	enum memslot_rule verdict;
	int err;

	ref_region_split(cfg, region->slot, &q.as_id, &q.id);
	q.base_gfn = region->guest_phys_addr >> cfg->page_shift;
	q.npages = region->memory_size >> cfg->page_shift;
	m->last_change = MEMSLOT_CHANGE_NONE;
	verdict = check_request(cfg, &q, internal, want_as);
	if (verdict == MEMSLOT_RULE_OK)
		verdict = check_layout(m, &q, &change);
	if (verdict == MEMSLOT_RULE_OK && !batch &&
	    (change == MEMSLOT_CHANGE_CREATE || change == MEMSLOT_CHANGE_MOVE) &&
	    beyond_max_gfn(cfg, q.base_gfn, q.npages))
		verdict = MEMSLOT_RULE_MAX_GFN;
	/* The max-gfn check runs after a MOVE's INVALID swap, whose revert
	 * is a second swap: the generation advances although nothing moved
	 * (deferred changes have no INVALID phase). */
	if (verdict == MEMSLOT_RULE_MAX_GFN && change == MEMSLOT_CHANGE_MOVE &&
	    !m->deferred)
		m->as[q.as_id].generation += 2ull * m->nr_as;
	if (verdict == MEMSLOT_RULE_OK) {
		err = apply(m, &q, change);
		if (err)
			verdict = MEMSLOT_RULE_NOMEM;
	}
	if (rule)
		*rule = verdict;
	if (verdict == MEMSLOT_RULE_NOMEM)
		return -ENOMEM;
	if (verdict != MEMSLOT_RULE_OK)
		return rule_errno(verdict);
	m->as[q.as_id].generation += generation_step(m, change);
	m->last_change = change;
	return 0;
}

int ref_set_region(struct ref_model *m, const struct memslot_config *cfg,
		   const struct memslot_region *region, bool internal,
		   enum memslot_rule *rule)
{
	return set_one(m, cfg, region, internal, -1, false, rule);
}

/* ---- transactions ------------------------------------------------------- */

/* Whether @b is still the slot @a with at most other log-dirty bits: a
 * slot that KVM could only reach by a delete and a create (other size,
 * hva or READONLY bit, or a new backing object: another guest_memfd
 * binding, or one added or dropped) counts as replaced. */
static bool same_place(const struct ref_slot *a, const struct ref_slot *b)
{
	uint32_t fixed = MEMSLOT_MEM_READONLY | MEMSLOT_MEM_GUEST_MEMFD;

	return a->base_gfn == b->base_gfn && a->npages == b->npages &&
	       a->hva == b->hva && a->user_data == b->user_data &&
	       a->gmem_fd == b->gmem_fd && a->gmem_offset == b->gmem_offset &&
	       !((a->flags ^ b->flags) & fixed);
}

/*
 * The generation step of a committed transaction, from the layouts of
 * @as_id before and after: two swaps when a slot lost its place (deleted,
 * moved, or replaced by a different one), one when slots only appeared or
 * changed flags, none when the net change is empty.
 */
static uint64_t txn_step(const struct ref_model *before,
			 const struct ref_model *after, unsigned int as_id)
{
	const struct ref_as *b = &before->as[as_id], *a = &after->as[as_id];
	bool changed = false;

	for (size_t i = 0; i < b->nslots; i++) {
		const struct ref_slot *o = &b->slots[i];
		const struct ref_slot *n = ref_find(after, as_id, o->id);

		if (!n || !same_place(o, n))
			return 2ull * before->nr_as;
		changed |= n->flags != o->flags;
	}
	for (size_t i = 0; i < a->nslots; i++)
		changed |= !ref_find(before, as_id, a->slots[i].id);
	return changed ? before->nr_as : 0;
}

/* Whether the slot of id @id enters the gfn index: created, moved, or
 * replaced by a different one. */
static const struct ref_slot *entering(const struct ref_model *before,
				       const struct ref_model *after,
				       unsigned int as_id, uint32_t id)
{
	const struct ref_slot *o = ref_find(before, as_id, id);
	const struct ref_slot *n = ref_find(after, as_id, id);

	if (!n || (o && o->base_gfn == n->base_gfn && same_place(o, n)))
		return NULL;
	return n;
}

/* Ids a batch changed, in the order of their first staged request (the
 * library's change records), with the last staged request on each. */
struct touched {
	uint32_t id;
	size_t op;
};

static void touch(struct touched *t, size_t *nt, uint32_t id, size_t op)
{
	for (size_t i = 0; i < *nt; i++) {
		if (t[i].id == id) {
			t[i].op = op;
			return;
		}
	}
	t[(*nt)++] = (struct touched){ id, op };
}

/*
 * Rule 17 over a validated batch, as the library's prepare stage: the net
 * changes in the order their ids were first staged; the request reported
 * is the last one staged on the failing id.  Return: true if it fails.
 */
static bool batch_max_gfn(const struct ref_model *before,
			  const struct ref_model *after,
			  const struct memslot_config *cfg,
			  const struct touched *t, size_t nt,
			  unsigned int as_id, size_t *failed)
{
	const struct ref_slot *s;

	for (size_t i = 0; i < nt; i++) {
		s = entering(before, after, as_id, t[i].id);
		if (s && beyond_max_gfn(cfg, s->base_gfn, s->npages)) {
			*failed = t[i].op;
			return true;
		}
	}
	return false;
}

/* A transaction's bitmaps follow its net change: a slot that logged
 * before and after, with the same size, hva, READONLY bit and user data,
 * keeps the bits it had, whatever the requests did in between. */
static int net_bitmaps(const struct ref_model *before, struct ref_model *after,
		       unsigned int as_id)
{
	struct ref_as *as = &after->as[as_id];

	for (size_t k = 0; k < as->nslots; k++) {
		struct ref_slot *s = &as->slots[k];
		const struct ref_slot *o = ref_find(before, as_id, s->id);

		if (!o || !o->dirty || !s->dirty || o->npages != s->npages ||
		    o->hva != s->hva || o->user_data != s->user_data ||
		    ((o->flags ^ s->flags) & MEMSLOT_MEM_READONLY))
			continue;
		memcpy(s->dirty, o->dirty, o->npages);
	}
	return 0;
}

int ref_set_regions(struct ref_model *m, const struct memslot_config *cfg,
		    const struct memslot_region *regions, size_t n,
		    size_t *failed, enum memslot_rule *rule)
{
	struct ref_model copy;
	struct touched *t;
	unsigned int as_id = 0, req_as;
	uint32_t id;
	size_t nt = 0;
	int ret = 0;

	*failed = 0;
	*rule = MEMSLOT_RULE_OK;
	if (!n)
		return 0;
	if (ref_model_copy(&copy, m))
		return -ENOMEM;
	ref_region_split(cfg, regions[0].slot, &as_id, &id);
	t = calloc(n, sizeof(*t));
	if (!t) {
		ref_model_free(&copy);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n && !ret; i++) {
		ret = set_one(&copy, cfg, &regions[i], false, i ? (long)as_id : -1,
			      n > 1, rule);
		*failed = i;
		ref_region_split(cfg, regions[i].slot, &req_as, &id);
		if (!ret && copy.last_change != MEMSLOT_CHANGE_NONE)
			touch(t, &nt, id, i);
	}
	if (!ret && n > 1 &&
	    batch_max_gfn(m, &copy, cfg, t, nt, as_id, failed)) {
		*rule = MEMSLOT_RULE_MAX_GFN;
		ret = -EINVAL;
		/* An INVALID phase ran and was reverted: two swaps. */
		if (!m->deferred && txn_step(m, &copy, as_id) == 2ull * m->nr_as)
			m->as[as_id].generation += 2ull * m->nr_as;
	}
	free(t);
	if (ret) {
		ref_model_free(&copy);
		return ret;
	}
	*failed = 0;
	*rule = MEMSLOT_RULE_OK;
	if (net_bitmaps(m, &copy, as_id)) {
		ref_model_free(&copy);
		return -ENOMEM;
	}
	for (unsigned int a = 0; a < m->nr_as; a++)
		copy.as[a].generation = m->as[a].generation +
					(a == as_id ? txn_step(m, &copy, a) : 0);
	copy.last_change = MEMSLOT_CHANGE_NONE;
	ref_model_free(m);
	*m = copy;
	return 0;
}

/* ---- lookups ------------------------------------------------------------ */

static bool contains(const struct ref_slot *s, uint64_t gfn)
{
	return gfn >= s->base_gfn && gfn - s->base_gfn < s->npages;
}

const struct ref_slot *ref_search(const struct ref_model *m,
				  unsigned int as_id, uint64_t gfn,
				  bool approx)
{
	const struct ref_slot *below = NULL, *lowest = NULL;

	if (as_id >= m->nr_as)
		return NULL;
	for (size_t i = 0; i < m->as[as_id].nslots; i++) {
		const struct ref_slot *s = &m->as[as_id].slots[i];

		if (contains(s, gfn))
			return s;
		if (s->base_gfn < gfn &&
		    (!below || s->base_gfn > below->base_gfn))
			below = s;
		if (!lowest || s->base_gfn < lowest->base_gfn)
			lowest = s;
	}
	if (!approx)
		return NULL;
	return below ? below : lowest;
}

/* Put @s into @out, the @kept lowest-based slots so far in ascending
 * order, if it is among the @max lowest.  Return: the new count kept. */
static size_t keep_lowest(const struct ref_slot **out, size_t kept,
			  size_t max, const struct ref_slot *s)
{
	size_t i = kept < max ? kept : max;

	if (i == max && (!max || out[max - 1]->base_gfn <= s->base_gfn))
		return kept;
	if (i == max)
		i--;
	for (; i > 0 && out[i - 1]->base_gfn > s->base_gfn; i--)
		out[i] = out[i - 1];
	out[i] = s;
	return kept < max ? kept + 1 : max;
}

size_t ref_gfn_range(const struct ref_model *m, unsigned int as_id,
		     uint64_t start, uint64_t end,
		     const struct ref_slot **out, size_t max)
{
	size_t n = 0, kept = 0;

	if (as_id >= m->nr_as || start >= end)
		return 0;
	for (size_t i = 0; i < m->as[as_id].nslots; i++) {
		const struct ref_slot *s = &m->as[as_id].slots[i];

		if (!ranges_meet(s->base_gfn, s->npages, start, end - start))
			continue;
		/* The first @max in gfn order, as the library walks them:
		 * not the first @max of the model's array. */
		kept = keep_lowest(out, kept, max, s);
		n++;
	}
	return n;
}

static struct ref_hva_hit hva_hit(const struct ref_slot *s,
				  const struct memslot_config *cfg,
				  uint64_t start, uint64_t end)
{
	uint64_t page = 1ull << cfg->page_shift;
	uint64_t slot_end = s->hva + (s->npages << cfg->page_shift);
	struct ref_hva_hit h = { .as_id = s->as_id, .id = s->id };

	h.hva_start = start > s->hva ? start : s->hva;
	h.hva_end = end < slot_end ? end : slot_end;
	h.gfn_start = s->base_gfn + ((h.hva_start - s->hva) >> cfg->page_shift);
	/* A partly covered last page counts. */
	h.gfn_end = s->base_gfn +
		    ((h.hva_end - s->hva + page - 1) >> cfg->page_shift);
	return h;
}

size_t ref_hva_range(const struct ref_model *m,
		     const struct memslot_config *cfg, uint64_t start,
		     uint64_t end, struct ref_hva_hit *out, size_t max)
{
	size_t n = 0;

	if (start >= end)
		return 0;
	for (unsigned int a = 0; a < m->nr_as; a++) {
		for (size_t i = 0; i < m->as[a].nslots; i++) {
			const struct ref_slot *s = &m->as[a].slots[i];
			uint64_t slot_end = s->hva + (s->npages << cfg->page_shift);

			if (s->hva >= end || start >= slot_end)
				continue;
			if (n < max)
				out[n] = hva_hit(s, cfg, start, end);
			n++;
		}
	}
	return n;
}

int ref_gfn_to_hva(const struct ref_model *m, const struct memslot_config *cfg,
		   unsigned int as_id, uint64_t gfn, bool write,
		   uint64_t *hva)
{
	const struct ref_slot *s = ref_search(m, as_id, gfn, false);

	if (!s)
		return -ENOENT;
	if (write && (s->flags & MEMSLOT_MEM_READONLY))
		return -EROFS;
	*hva = s->hva + ((gfn - s->base_gfn) << cfg->page_shift);
	return 0;
}

/* ---- dirty logging ----------------------------------------------------- */

int ref_enable_manual_protect(struct ref_model *m, uint64_t flags)
{
	uint64_t ok = MEMSLOT_DIRTY_LOG_MANUAL_PROTECT_ENABLE;

	if (flags & MEMSLOT_DIRTY_LOG_MANUAL_PROTECT_ENABLE)
		ok |= MEMSLOT_DIRTY_LOG_INITIALLY_SET;
	if (flags & ~ok)
		return -EINVAL;
	m->manual = flags;
	return 0;
}

void ref_mark(struct ref_model *m, unsigned int as_id, uint64_t gfn)
{
	const struct ref_slot *s = ref_search(m, as_id, gfn, false);

	if (s && s->dirty)
		s->dirty[gfn - s->base_gfn] = 1;
}

/* The slot a dirty-log call names, or the errno KVM gives first. */
static int log_slot(struct ref_model *m, const struct memslot_config *cfg,
		    uint32_t slot, struct ref_slot **out)
{
	unsigned int as_id;
	uint32_t id;

	ref_region_split(cfg, slot, &as_id, &id);
	if (as_id >= m->nr_as || id >= cfg->user_slots)
		return -EINVAL;
	*out = find_mut(m, as_id, id);
	return *out && (*out)->dirty ? 0 : -ENOENT;
}

int ref_get_dirty_log(struct ref_model *m, const struct memslot_config *cfg,
		      uint32_t slot, uint64_t *bitmap)
{
	struct ref_slot *s;
	int r = log_slot(m, cfg, slot, &s);

	if (r)
		return r;
	if (!bitmap)
		return -EFAULT;
	memset(bitmap, 0, (s->npages + 63) / 64 * 8);
	for (uint64_t p = 0; p < s->npages; p++) {
		if (s->dirty[p])
			bitmap[p / 64] |= 1ull << (p % 64);
		if (!m->manual)
			s->dirty[p] = 0;
	}
	return 0;
}

int ref_clear_dirty_log(struct ref_model *m, const struct memslot_config *cfg,
			uint32_t slot, uint64_t first_page, uint64_t num_pages,
			const uint64_t *bitmap)
{
	unsigned int as_id;
	uint32_t id;
	struct ref_slot *s;
	int r;

	ref_region_split(cfg, slot, &as_id, &id);
	if (as_id >= m->nr_as || id >= cfg->user_slots || first_page % 64)
		return -EINVAL;
	r = log_slot(m, cfg, slot, &s);
	if (r)
		return r;
	if (first_page > s->npages || num_pages > s->npages - first_page ||
	    (num_pages < s->npages - first_page && num_pages % 64))
		return -EINVAL;
	if (num_pages && !bitmap)
		return -EFAULT;
	for (uint64_t i = 0; i < num_pages; i++) {
		if (bitmap[i / 64] >> (i % 64) & 1)
			s->dirty[first_page + i] = 0;
	}
	return 0;
}
