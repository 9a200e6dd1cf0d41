/* SPDX-License-Identifier: MIT */
/*
 * Slot changes: KVM_SET_USER_MEMORY_REGION validation and the change engine.
 *
 * A request list (one request for memslot_set_region(), several for a
 * transaction) goes through three stages:
 *  1. validate: each request is checked, in KVM's order, against the layout
 *     the requests before it produce.  The writer's set is not touched; a
 *     small overlay (per-id state and the ranges of new slots) stands in for
 *     the earlier requests.  Requests collapse into one net change per id.
 *  2. reserve: every allocation the rest needs (slot objects, INVALID
 *     copies, index nodes, id-table growth, the id map) happens here, so
 *     nothing after this point can fail for lack of memory.
 *  3. apply: as KVM's kvm_set_memslot(): DELETE and MOVE first publish
 *     INVALID copies and call the flush hook; rule 17 and the prepare hooks
 *     run; then the final layout is published.  Each publish builds a new
 *     layout copy on write from the active one (set.h) and stores it with
 *     one pointer; blocking mode then waits for a grace period and frees
 *     what only the old layout used, deferred mode publishes the final
 *     layout at once and hands the old one to the reclaim thread.
 */
#include <errno.h>
#include <string.h>

#include "vm.h"

/* One request, decoded. */
struct req {
	unsigned int as_id;
	uint32_t id;
	uint32_t flags;
	uint64_t base_gfn;
	uint64_t npages;
	uint64_t hva;
	uint64_t size;
	void *user_data;
	uint64_t gmem_offset;
	uint32_t gmem_fd;
};

/*
 * A net change that is none of KVM's kinds: requests on one id that delete
 * and create it again with another size, hva, READONLY bit or user data.
 * It is carried out, hooked and reported as a DELETE followed by a CREATE.
 */
#define CHANGE_RECREATE (MEMSLOT_CHANGE_FLAGS_ONLY + 1)

/* The net effect of the requests on one id. */
struct change {
	uint32_t id;
	int kind;			/* enum memslot_change or RECREATE */
	size_t op;			/* last request that touched the id */
	struct memslot_slot *old;	/* in both sets now, or NULL */
	struct memslot_slot *cur;	/* wanted state; == old if unchanged */
	struct memslot_slot *invalid;	/* INVALID copy of old */
};

/* Changes ahead of the one visited whose new slot a pass loads early. */
#define CUR_AHEAD 16

/* Layout headers a change may publish: INVALID, then final or revert. */
#define MAX_DRAFTS 2

struct batch {
	struct memslot_vm *vm;
	struct memslot_set *cur;	/* the active layout when validated */
	unsigned int as_id;
	bool internal;
	bool deferred;			/* publish at once, reclaim later */
	bool overlay;			/* several requests: use byid/ranges */
	struct change *ch;
	size_t nch;
	struct bpt byid;		/* id -> struct change */
	struct bpt ranges;		/* base gfn -> new slot objects */
	struct bpt_pool tmp;		/* nodes of the two trees above */
	uint64_t total_pages;
	uint64_t used_user_ids;
	bool any_invalid;
	struct memslot_set *draft[MAX_DRAFTS];	/* reserved headers */
	unsigned int ndrafts;			/* of which used */
	struct retire *retire;			/* deferred mode's record */
	bool queued;				/* the record went to the thread */
	void **bulk;			/* room for the bulk-inserted slots, */
	void *scratch;			/* and for sorting them */
	size_t nbulk;			/* inserts done as one rebuild, or 0 */
};

/*
 * A big batch's new slot objects lie wherever the allocator put them, so a
 * pass that reads them waits for a miss per change unless the loads start
 * early.  A delete's NULL is prefetched too: a prefetch never faults.
 * Always inline: gcc 12 splits the test out, takes the part that only
 * prefetches for a function without effects, and drops its calls.
 */
static inline __attribute__((always_inline)) void
cur_ahead(const struct batch *b, size_t i)
{
	if (i + CUR_AHEAD < b->nch)
		slot_prefetch(b->ch[i + CUR_AHEAD].cur);
}

static uint32_t allowed_flags(const struct memslot_config *cfg)
{
	uint32_t f = MEMSLOT_MEM_LOG_DIRTY_PAGES | MEMSLOT_MEM_READONLY;

	return cfg->guest_memfd ? f | MEMSLOT_MEM_GUEST_MEMFD : f;
}

static bool flags_combo_ok(const struct memslot_config *cfg, uint32_t flags)
{
	if ((flags & MEMSLOT_MEM_READONLY) && !cfg->readonly)
		return false;
	if (!(flags & MEMSLOT_MEM_GUEST_MEMFD))
		return true;
	return !(flags & (MEMSLOT_MEM_LOG_DIRTY_PAGES | MEMSLOT_MEM_READONLY));
}

/* access_ok(): [hva, hva + size) must not wrap and must end at the limit
 * or below. */
static bool hva_ok(const struct memslot_config *cfg, uint64_t hva,
		   uint64_t size)
{
	uint64_t mask = (1ull << cfg->page_shift) - 1;

	if ((hva & mask) || (hva & cfg->hva_tag_mask))
		return false;
	return size <= cfg->hva_limit && hva <= cfg->hva_limit - size;
}

static void decode(const struct memslot_config *cfg,
		   const struct memslot_region *r, struct req *q)
{
	uint64_t slot = r->slot;

	q->id = cfg->id_bits >= 32 ? r->slot
				   : (uint32_t)(slot & ((1ull << cfg->id_bits) - 1));
	q->as_id = cfg->id_bits >= 32 ? 0 : (unsigned int)(slot >> cfg->id_bits);
	q->flags = r->flags;
	q->size = r->memory_size;
	q->base_gfn = r->guest_phys_addr >> cfg->page_shift;
	q->npages = r->memory_size >> cfg->page_shift;
	q->hva = r->userspace_addr;
	q->user_data = r->user_data;
	/* KVM reads the guest_memfd fields only with the flag set. */
	if (r->flags & MEMSLOT_MEM_GUEST_MEMFD) {
		q->gmem_offset = r->guest_memfd_offset;
		q->gmem_fd = r->guest_memfd;
	} else {
		q->gmem_offset = 0;
		q->gmem_fd = 0;
	}
}

/* The guest_memfd range: page aligned, and offset + size must not wrap. */
static bool gmem_offset_ok(const struct memslot_region *r, uint64_t mask)
{
	if (!(r->flags & MEMSLOT_MEM_GUEST_MEMFD))
		return true;
	return !(r->guest_memfd_offset & mask) &&
	       r->guest_memfd_offset + r->memory_size >= r->guest_memfd_offset;
}

/* Rules 1-10: checks on the request alone, in KVM's order. */
static enum memslot_rule check_fields(const struct memslot_config *cfg,
				      const struct memslot_region *r,
				      const struct req *q, bool internal)
{
	uint64_t mask = (1ull << cfg->page_shift) - 1;

	if (r->flags & ~allowed_flags(cfg))
		return MEMSLOT_RULE_FLAGS_UNKNOWN;
	if (!internal && q->id >= cfg->user_slots)
		return MEMSLOT_RULE_ID_USER;
	if (!flags_combo_ok(cfg, r->flags))
		return MEMSLOT_RULE_FLAGS_COMBO;
	if (r->memory_size & mask)
		return MEMSLOT_RULE_SIZE_ALIGN;
	if (r->guest_phys_addr & mask)
		return MEMSLOT_RULE_GPA_ALIGN;
	if (!hva_ok(cfg, r->userspace_addr, r->memory_size))
		return MEMSLOT_RULE_HVA;
	if (!gmem_offset_ok(r, mask))
		return MEMSLOT_RULE_GMEM_OFFSET;
	if (q->as_id >= cfg->nr_as || q->id >= cfg->total_slots)
		return MEMSLOT_RULE_AS_ID;
	if (r->guest_phys_addr + r->memory_size < r->guest_phys_addr)
		return MEMSLOT_RULE_GPA_WRAP;
	if (q->id < cfg->user_slots && q->npages > cfg->max_pages)
		return MEMSLOT_RULE_TOO_LARGE;
	return MEMSLOT_RULE_OK;
}

/* The change record of @id in a multi-request batch, or NULL. */
static struct change *staged(const struct batch *b, uint32_t id)
{
	struct change *c;

	if (!b->overlay)
		return NULL;
	c = bpt_find_le(&b->byid, id);
	return c && c->id == id ? c : NULL;
}

/* The slot @id has after the requests so far. */
static struct memslot_slot *current_slot(const struct batch *b, uint32_t id)
{
	struct change *c = staged(b, id);

	return c ? c->cur : set_find_id(b->cur, id);
}

static bool meets(const struct memslot_slot *s, uint64_t start, uint64_t end)
{
	return s->base_gfn < end && slot_end_gfn(s) > start;
}

/* Rule 16 across the set and the slots earlier requests created. */
static bool overlaps(const struct batch *b, uint32_t id, uint64_t start,
		     uint64_t end)
{
	struct bpt_iter it;
	struct memslot_slot *s;

	if (!b->overlay)
		return set_overlaps(b->cur, id, start, end);
	bpt_iter_seek_le(&it, &b->cur->gfn, start);
	while ((s = bpt_iter_next(&it)) && s->base_gfn < end) {
		if (meets(s, start, end) && s->id != id && !staged(b, s->id))
			return true;
	}
	bpt_iter_seek_le(&it, &b->ranges, start);
	while ((s = bpt_iter_next(&it)) && s->base_gfn < end) {
		if (meets(s, start, end) && s->id != id)
			return true;
	}
	return false;
}

/* Flags a modify may not toggle. */
#define FIXED_FLAGS (MEMSLOT_MEM_READONLY | MEMSLOT_MEM_GUEST_MEMFD)

/* Rules 11-16: checks against the current layout; sets *@kind. */
static enum memslot_rule check_layout(const struct batch *b,
				      const struct req *q,
				      const struct memslot_slot *cur,
				      enum memslot_change *kind)
{
	if (!q->size) {
		*kind = MEMSLOT_CHANGE_DELETE;
		return cur ? MEMSLOT_RULE_OK : MEMSLOT_RULE_DELETE_MISSING;
	}
	if (!cur) {
		*kind = MEMSLOT_CHANGE_CREATE;
		if (b->total_pages + q->npages < b->total_pages)
			return MEMSLOT_RULE_PAGES_OVERFLOW;
	} else {
		/* A guest_memfd binding is fixed: such a slot can only be
		 * deleted, and no slot gains or loses the flag. */
		if (q->flags & MEMSLOT_MEM_GUEST_MEMFD)
			return MEMSLOT_RULE_GMEM_IMMUTABLE;
		if (q->hva != cur->hva || q->npages != cur->npages ||
		    ((q->flags ^ cur->flags) & FIXED_FLAGS))
			return MEMSLOT_RULE_MODIFY;
		if (q->base_gfn != cur->base_gfn)
			*kind = MEMSLOT_CHANGE_MOVE;
		else if (q->flags != cur->flags)
			*kind = MEMSLOT_CHANGE_FLAGS_ONLY;
		else
			return MEMSLOT_RULE_NOOP;
	}
	if ((*kind == MEMSLOT_CHANGE_CREATE || *kind == MEMSLOT_CHANGE_MOVE) &&
	    overlaps(b, q->id, q->base_gfn, q->base_gfn + q->npages))
		return MEMSLOT_RULE_OVERLAP;
	return MEMSLOT_RULE_OK;
}

/* A zeroed slot object, from the spares (spares.h) or new. */
static struct memslot_slot *slot_alloc(struct memslot_vm *vm)
{
	struct memslot_slot *s = spares_take(&vm->spares, SPARES_SLOT);

	if (s)
		memset(s, 0, sizeof(*s));
	return s;
}

static struct memslot_slot *slot_new(struct batch *b, const struct req *q,
				     const struct memslot_slot *cur)
{
	struct memslot_slot *s = slot_alloc(b->vm);

	if (!s)
		return NULL;
	s->base_gfn = q->base_gfn;
	s->npages = q->npages;
	s->hva = q->hva;
	s->flags = q->flags;
	s->id = q->id;
	s->as_id = q->as_id;
	s->page_shift = b->vm->page_shift;
	/* A modified slot keeps its backing, so it keeps its user data. */
	s->user_data = cur ? cur->user_data : q->user_data;
	s->gmem_offset = q->gmem_offset;
	s->gmem_fd = q->gmem_fd;
	return s;
}

/* @s (may be NULL), which no reader can reach, goes back to the spares. */
static void slot_free(struct batch *b, struct memslot_slot *s)
{
	if (s)
		spares_put(&b->vm->spares, SPARES_SLOT, s);
}

/* The change record for @id, made on first use. */
static struct change *change_for(struct batch *b, uint32_t id)
{
	struct change *c = staged(b, id);

	if (c)
		return c;
	if (b->overlay && bpt_pool_reserve(&b->tmp, 1, bpt_insert_wide(&b->byid)))
		return NULL;
	c = &b->ch[b->nch++];
	memset(c, 0, sizeof(*c));
	c->id = id;
	c->old = c->cur = set_find_id(b->cur, id);
	if (b->overlay)
		bpt_insert(&b->byid, &b->tmp, id, c);
	return c;
}

/* Record request @op (already validated) in its change record. */
static int stage(struct batch *b, size_t op, const struct req *q,
		 enum memslot_change kind)
{
	struct change *c = change_for(b, q->id);
	struct memslot_slot *s = NULL;

	if (!c)
		return -ENOMEM;
	if (kind != MEMSLOT_CHANGE_DELETE) {
		s = slot_new(b, q, c->cur);
		if (!s || (b->overlay && bpt_pool_reserve(&b->tmp, 1,
					bpt_insert_wide(&b->ranges)))) {
			slot_free(b, s);
			return -ENOMEM;
		}
	}
	/* Count before c->cur may be freed below: a delete after a staged
	 * move or flags change would otherwise read a freed object. */
	b->total_pages += kind == MEMSLOT_CHANGE_CREATE ? q->npages : 0;
	b->total_pages -= kind == MEMSLOT_CHANGE_DELETE ? c->cur->npages : 0;
	if (c->cur && c->cur != c->old) {
		if (b->overlay)
			bpt_remove(&b->ranges, &b->tmp, c->cur->base_gfn, c->cur);
		slot_free(b, c->cur);
	}
	if (s && b->overlay)
		bpt_insert(&b->ranges, &b->tmp, s->base_gfn, s);
	c->cur = s;
	c->op = op;
	return 0;
}

static int rule_errno(enum memslot_rule rule)
{
	switch (rule) {
	case MEMSLOT_RULE_OK:
	case MEMSLOT_RULE_NOOP:
		return 0;
	case MEMSLOT_RULE_OVERLAP:
		return -EEXIST;
	case MEMSLOT_RULE_NOMEM:
		return -ENOMEM;
	case MEMSLOT_RULE_BUSY:
		return -EBUSY;
	default:
		return -EINVAL;
	}
}

/* The first request names the address space the batch changes. */
static void batch_start(struct batch *b, unsigned int as_id)
{
	/* Checked against nr_as by the caller; clamped all the same, as
	 * every index a caller's number picks. */
	as_id = (unsigned int)memslot_array_index_nospec(as_id,
							 b->vm->nr_as);
	b->as_id = as_id;
	b->cur = atomic_load_explicit(&b->vm->active[as_id],
				      memory_order_relaxed);
	b->total_pages = b->vm->as[as_id].total_pages;
}

/* Stage 1 for one request.  Return: 0 or a negative errno. */
static int validate_one(struct batch *b, size_t op,
			const struct memslot_region *r, enum memslot_rule *rule)
{
	const struct memslot_config *cfg = &b->vm->cfg;
	enum memslot_change kind = MEMSLOT_CHANGE_NONE;
	struct req q;

	decode(cfg, r, &q);
	*rule = check_fields(cfg, r, &q, b->internal);
	if (*rule == MEMSLOT_RULE_OK && op > 0 && q.as_id != b->as_id)
		*rule = MEMSLOT_RULE_AS_ID;	/* one address space per batch */
	if (*rule != MEMSLOT_RULE_OK)
		return rule_errno(*rule);
	if (op == 0)
		batch_start(b, q.as_id);
	/* Rule 17 is the arch's prepare step: apply() checks it, after the
	 * INVALID phase, for a single request and a batch alike. */
	*rule = check_layout(b, &q, current_slot(b, q.id), &kind);
	if (*rule != MEMSLOT_RULE_OK)
		return rule_errno(*rule);
	if (stage(b, op, &q, kind)) {
		*rule = MEMSLOT_RULE_NOMEM;
		return -ENOMEM;
	}
	return 0;
}

/*
 * ---- stage 1 for a batch of creates ----------------------------------
 *
 * Most large transactions create slots and nothing else.  Such a batch is
 * valid iff every request, on its own, is a create that passes rules 1-16
 * against the layout (its id unused, no overlap with the layout's slots,
 * the page count not overflowing), and no two requests share an id or
 * overlap: KVM's verdict on request i depends only on the layout and the
 * requests before it, and these are all creates that passed.  Pairwise
 * checks are cheap once the requests are sorted: intervals sorted by start
 * are disjoint iff neighbours are.  Anything else (a failing request, a
 * delete or modify, a repeated id) goes the general way, which finds the
 * first failing request and its rule.  An allocation failure here fails
 * the batch, as one in the general way's stage 1 does.
 */

/* Request @op is a create that passes alone, as validate_one() would
 * decide it after creates of other ids.  Counts its pages. */
static bool create_alone_ok(struct batch *b, size_t op,
			    const struct memslot_region *r, struct req *q)
{
	const struct memslot_config *cfg = &b->vm->cfg;

	decode(cfg, r, q);
	if (check_fields(cfg, r, q, b->internal) != MEMSLOT_RULE_OK || !q->size)
		return false;
	if (op == 0)
		batch_start(b, q->as_id);
	else if (q->as_id != b->as_id)
		return false;
	if (set_find_id(b->cur, q->id) ||
	    b->total_pages + q->npages < b->total_pages)
		return false;
	b->total_pages += q->npages;
	return !set_overlaps(b->cur, q->id, q->base_gfn,
			     q->base_gfn + q->npages);
}

/* Sorted by start, intervals [key, val) are disjoint iff neighbours are. */
static bool disjoint(struct set_keyed *a, struct set_keyed *tmp, size_t k)
{
	a = set_sort_keyed(a, tmp, k);
	for (size_t i = 1; i < k; i++) {
		if (a[i].key < a[i - 1].val)
			return false;
	}
	return true;
}

/* Whether the @n requests are creates that pass as a batch; @a and @tmp
 * have room for @n records. */
static bool creates_ok(struct batch *b, const struct memslot_region *r,
		       size_t n, struct set_keyed *a, struct set_keyed *tmp)
{
	struct req q;

	for (size_t op = 0; op < n; op++) {
		if (!create_alone_ok(b, op, &r[op], &q))
			return false;
		a[op] = (struct set_keyed){ q.id, (uint64_t)q.id + 1 };
	}
	if (!disjoint(a, tmp, n))
		return false;
	for (size_t op = 0; op < n; op++) {
		decode(&b->vm->cfg, &r[op], &q);
		a[op] = (struct set_keyed){ q.base_gfn, q.base_gfn + q.npages };
	}
	return disjoint(a, tmp, n);
}

/* Stage 1's records for creates that passed: one change per request. */
static int stage_creates(struct batch *b, const struct memslot_region *r,
			 size_t n)
{
	struct req q;

	for (size_t op = 0; op < n; op++) {
		struct change *c = &b->ch[op];

		decode(&b->vm->cfg, &r[op], &q);
		memset(c, 0, sizeof(*c));
		c->id = q.id;
		c->op = op;
		c->cur = slot_new(b, &q, NULL);
		b->nch = op + 1;
		if (!c->cur)
			return -ENOMEM;
	}
	return 0;
}

/* Stage 1 for a batch of creates.  Return: 0 when it staged them,
 * -ENOMEM, or 1 when the general way must decide. */
static int validate_creates(struct batch *b, const struct memslot_region *r,
			    size_t n)
{
	size_t bytes = 2 * n * sizeof(struct set_keyed);
	struct set_keyed *a;
	bool ok;

	/* A delete anywhere: no need to sort anything. */
	for (size_t op = 0; op < n; op++) {
		if (!r[op].memory_size)
			return 1;
	}
	a = mem_malloc(&b->vm->alloc, bytes);
	if (!a)
		return -ENOMEM;
	ok = creates_ok(b, r, n, a, a + n);
	mem_free(&b->vm->alloc, a, bytes);
	return ok ? stage_creates(b, r, n) : 1;
}

static int net_kind(const struct change *c)
{
	const struct memslot_slot *o = c->old, *n = c->cur;

	if (!o)
		return n ? MEMSLOT_CHANGE_CREATE : MEMSLOT_CHANGE_NONE;
	if (!n)
		return MEMSLOT_CHANGE_DELETE;
	if (n->hva != o->hva || n->npages != o->npages ||
	    n->user_data != o->user_data || n->gmem_fd != o->gmem_fd ||
	    n->gmem_offset != o->gmem_offset ||
	    ((n->flags ^ o->flags) & FIXED_FLAGS))
		return CHANGE_RECREATE;
	if (n->base_gfn != o->base_gfn)
		return MEMSLOT_CHANGE_MOVE;
	if (n->flags != o->flags)
		return MEMSLOT_CHANGE_FLAGS_ONLY;
	return MEMSLOT_CHANGE_NONE;
}

/* DELETE, MOVE and RECREATE go through an INVALID copy first. */
static bool needs_invalid(int kind)
{
	return kind == MEMSLOT_CHANGE_DELETE || kind == MEMSLOT_CHANGE_MOVE ||
	       kind == CHANGE_RECREATE;
}

/* The new object enters the gfn (and, if new to the set, hva) index. */
static bool enters_gfn(int kind)
{
	return kind == MEMSLOT_CHANGE_CREATE || kind == MEMSLOT_CHANGE_MOVE ||
	       kind == CHANGE_RECREATE;
}

static bool enters_hva(int kind)
{
	return kind == MEMSLOT_CHANGE_CREATE || kind == CHANGE_RECREATE;
}

/* Collapse the change records to the ids that really change. */
static void settle(struct batch *b)
{
	size_t n = 0;

	for (size_t i = 0; i < b->nch; i++) {
		struct change *c = &b->ch[i];

		c->kind = net_kind(c);
		if (c->kind == MEMSLOT_CHANGE_NONE) {
			if (c->cur != c->old)
				slot_free(b, c->cur);
			continue;
		}
		b->ch[n++] = *c;
	}
	b->nch = n;
}

/* Undo stages 1 and 2 for a batch that will not be applied. */
static void discard(struct batch *b)
{
	for (size_t i = 0; i < b->nch; i++) {
		struct change *c = &b->ch[i];

		if (c->cur != c->old) {
			if (c->cur && dirty_owned_by(c->cur, c->old))
				dirty_free(&b->vm->alloc, c->cur);
			slot_free(b, c->cur);
		}
		slot_free(b, c->invalid);
	}
	b->nch = 0;
}

/* ---- stage 2: reserve ------------------------------------------------ */

static void each_used_id(void *ctx, void (*fn)(struct idmap *, uint64_t),
			 struct idmap *map)
{
	struct memslot_set *set = ctx;
	struct bpt_iter it;
	struct memslot_slot *s;

	bpt_iter_seek_le(&it, &set->gfn, 0);
	while ((s = bpt_iter_next(&it)))
		fn(map, s->id);
}

/* Blocking mode only: deferred mode publishes the final layout at once. */
static int alloc_invalid(struct batch *b)
{
	for (size_t i = 0; i < b->nch && !b->deferred; i++) {
		struct change *c = &b->ch[i];

		if (!needs_invalid(c->kind))
			continue;
		c->invalid = slot_alloc(b->vm);
		if (!c->invalid)
			return -ENOMEM;
		memcpy(c->invalid, c->old, sizeof(*c->invalid));
		c->invalid->flags |= MEMSLOT_INVALID;
		dirty_detach(c->invalid);
		b->any_invalid = true;
	}
	return 0;
}

/*
 * Index nodes every build of this change may take: the INVALID build
 * replaces, the final (or revert) build removes, then inserts, as
 * bpt_nodes_for_inserts() requires, or rebuilds the indexes with the new
 * slots (bulk).  Builds start from layouts of the same shape, so one bound
 * per build holds.
 */
static void count_nodes(const struct batch *b, size_t *plain,
			size_t *wide)
{
	size_t gfn_ins = 0, hva_ins = 0;

	for (size_t i = 0; i < b->nch; i++) {
		gfn_ins += enters_gfn(b->ch[i].kind);
		hva_ins += enters_hva(b->ch[i].kind);
	}
	if (b->any_invalid)
		set_nodes_for(b->cur, b->nch, 0, 0, 0, plain, wide);
	/* New slots (those entering the hva index) come in by a rebuild;
	 * moves still enter the gfn index one by one. */
	if (b->nbulk) {
		gfn_ins -= hva_ins;
		hva_ins = 0;
		set_nodes_for_bulk(b->cur, b->nbulk, plain, wide);
	}
	/* A move edits the gfn index twice (out, then in). */
	set_nodes_for(b->cur, 2 * b->nch, gfn_ins, hva_ins, hva_ins, plain,
		      wide);
}

static size_t bulk_bytes(size_t k)
{
	return k * sizeof(void *) + set_bulk_scratch(k);
}

/* Many new slots: room to sort them for a rebuild of the indexes. */
static int alloc_bulk(struct batch *b)
{
	size_t k = 0;

	for (size_t i = 0; i < b->nch; i++)
		k += enters_hva(b->ch[i].kind);
	if (!set_bulk_pays(b->cur, k))
		return 0;
	b->bulk = mem_malloc(&b->vm->alloc, bulk_bytes(k));
	if (!b->bulk)
		return -ENOMEM;
	b->scratch = b->bulk + k;
	b->nbulk = k;
	return 0;
}

static size_t id_growth(const struct batch *b)
{
	size_t creates = 0, deletes = 0;

	for (size_t i = 0; i < b->nch; i++) {
		creates += b->ch[i].kind == MEMSLOT_CHANGE_CREATE;
		deletes += b->ch[i].kind == MEMSLOT_CHANGE_DELETE;
	}
	return creates > deletes ? creates - deletes : 0;
}

static int alloc_drafts(struct batch *b)
{
	unsigned int n = b->any_invalid ? 2 : 1;

	for (unsigned int i = 0; i < n; i++) {
		b->draft[i] = spares_take(&b->vm->spares, SPARES_SET);
		if (!b->draft[i])
			return -ENOMEM;
	}
	return 0;
}

/* Deferred mode: the record the reclaim thread completes, and the thread. */
static int alloc_retire(struct batch *b)
{
	if (!b->deferred)
		return 0;
	b->retire = retire_alloc(&b->vm->alloc, b->nch, &b->vm->spares);
	if (!b->retire)
		return -ENOMEM;
	return reclaim_start(b->vm);
}

/*
 * Dirty bitmaps, as kvm_prepare_memory_region(): a MOVE or FLAGS_ONLY that
 * keeps logging shares the old bitmap unchanged; any other new state that
 * logs gets a fresh one (all ones in INITIALLY_SET mode).
 */
static int alloc_dirty(struct batch *b)
{
	bool all_set = b->vm->dirty.manual & MEMSLOT_DIRTY_LOG_INITIALLY_SET;

	for (size_t i = 0; i < b->nch; i++) {
		struct change *c = &b->ch[i];
		bool keep = c->kind == MEMSLOT_CHANGE_MOVE ||
			    c->kind == MEMSLOT_CHANGE_FLAGS_ONLY;

		cur_ahead(b, i);
		if (!c->cur || !(c->cur->flags & MEMSLOT_MEM_LOG_DIRTY_PAGES))
			continue;
		if (keep && c->old->dirty)
			dirty_share(c->cur, c->old);
		else if (dirty_alloc(&b->vm->alloc, c->cur, all_set))
			return -ENOMEM;
	}
	return 0;
}

/* Make sure the node pool holds @plain plain and @wide wide nodes, taking
 * them from the spares (nodes a failure leaves there stay spares).
 * Return: 0 or -ENOMEM. */
static int pool_fill(struct memslot_vm *vm, size_t plain, size_t wide)
{
	struct bpt_pool *pool = &vm->pool;
	struct bpt_node *nd;

	while (pool->nplain < plain) {
		nd = spares_take(&vm->spares, SPARES_PLAIN);
		if (!nd)
			return -ENOMEM;
		bpt_pool_add(pool, nd, true);
	}
	while (pool->nwide < wide) {
		nd = spares_take(&vm->spares, SPARES_WIDE);
		if (!nd)
			return -ENOMEM;
		bpt_pool_add(pool, nd, false);
	}
	return 0;
}

/* Stage 2.  Return: 0, -ENOMEM or -EAGAIN, with nothing changed. */
static int reserve(struct batch *b)
{
	struct memslot_as *as = &b->vm->as[b->as_id];
	size_t plain = 0, wide = 0, grow = id_growth(b);
	int r = alloc_dirty(b);

	if (!r)
		r = alloc_invalid(b);
	if (!r)
		r = alloc_drafts(b);
	if (!r)
		r = alloc_bulk(b);
	if (!r) {
		count_nodes(b, &plain, &wide);
		r = pool_fill(b->vm, plain, wide);
	}
	if (!r)
		r = alloc_retire(b);
	/* Last: the id map keeps its growth, so nothing may fail after it.
	 * (A reclaim thread started above stays: it is the VM's, not the
	 * batch's, and the next deferred change would start it anyway.) */
	return r ? r : idmap_reserve(&as->ids, b->used_user_ids + grow,
				     each_used_id, b->cur);
}

/* ---- stage 3: apply --------------------------------------------------- */

/* The object of @c the sets hold before the final edit. */
static struct memslot_slot *held(const struct change *c)
{
	return c->invalid ? c->invalid : c->old;
}

static void edit_invalidate(struct batch *b, struct memslot_set *set)
{
	for (size_t i = 0; i < b->nch; i++) {
		if (b->ch[i].invalid)
			set_replace(set, &b->vm->pool, b->ch[i].old,
				    b->ch[i].invalid);
	}
}

static void edit_revert(struct batch *b, struct memslot_set *set)
{
	for (size_t i = 0; i < b->nch; i++) {
		if (b->ch[i].invalid)
			set_replace(set, &b->vm->pool, b->ch[i].invalid,
				    b->ch[i].old);
	}
}

/* Take out what the final layout drops from the gfn index. */
static void final_removals(struct batch *b, struct memslot_set *set)
{
	for (size_t i = 0; i < b->nch; i++) {
		struct change *c = &b->ch[i];

		if (c->kind == MEMSLOT_CHANGE_DELETE || c->kind == CHANGE_RECREATE)
			set_remove(set, &b->vm->pool, held(c), c->cur);
		else if (c->kind == MEMSLOT_CHANGE_MOVE)
			set_move_out(set, &b->vm->pool, held(c));
	}
}

/*
 * Removals first, then insertions: the final layout has no overlap, so the
 * gfn index never holds two slots at one base gfn, and the node bound of
 * bpt_nodes_for_inserts() holds.
 */
static void edit_final(struct batch *b, struct memslot_set *set)
{
	size_t k = 0;

	final_removals(b, set);
	for (size_t i = 0; i < b->nch; i++) {
		struct change *c = &b->ch[i];

		if (c->kind == MEMSLOT_CHANGE_FLAGS_ONLY)
			set_replace(set, &b->vm->pool, held(c), c->cur);
		else if (c->kind == MEMSLOT_CHANGE_MOVE)
			set_move_in(set, &b->vm->pool, held(c), c->cur);
		else if (c->kind != MEMSLOT_CHANGE_DELETE && b->nbulk)
			b->bulk[k++] = c->cur;
		else if (c->kind != MEMSLOT_CHANGE_DELETE)
			set_insert(set, &b->vm->pool, c->cur);
	}
	if (k)
		set_insert_bulk(set, &b->vm->pool, b->bulk, k, b->scratch);
}

/* A new layout: the active one, copied on write and edited. */
static struct memslot_set *build(struct batch *b,
				 void (*edit)(struct batch *,
					      struct memslot_set *))
{
	struct memslot_set *next = b->draft[b->ndrafts++];

	set_copy(next, atomic_load_explicit(&b->vm->active[b->as_id],
					    memory_order_relaxed));
	bpt_pool_new_epoch(&b->vm->pool);
	edit(b, next);
	set_cache_settle(next);
	return next;
}

/* KVM's swap: publish, wait for readers of the old layout, free what only
 * it used. */
static void swap_with(struct batch *b,
		      void (*edit)(struct batch *, struct memslot_set *))
{
	struct memslot_vm *vm = b->vm;
	struct memslot_set *prev =
		vm_publish(vm, b->as_id, build(b, edit), vm->nr_as, NULL);

	bpt_pool_reclaim(&vm->pool);
	spares_put(&vm->spares, SPARES_SET, prev);
}

/* The hook events of @c: a RECREATE is a DELETE, then a CREATE. */
struct event {
	const struct memslot_slot *old;
	const struct memslot_slot *new_slot;
	enum memslot_change kind;
};

static unsigned int events_of(const struct change *c, struct event ev[2])
{
	if (c->kind != CHANGE_RECREATE) {
		ev[0] = (struct event){ c->old, c->cur, c->kind };
		return 1;
	}
	ev[0] = (struct event){ c->old, NULL, MEMSLOT_CHANGE_DELETE };
	ev[1] = (struct event){ NULL, c->cur, MEMSLOT_CHANGE_CREATE };
	return 2;
}

static void flush_all(struct batch *b)
{
	for (size_t i = 0; i < b->nch; i++) {
		if (b->ch[i].invalid)
			listeners_flush(&b->vm->listeners, b->vm, b->ch[i].old,
					LISTENERS_ALL);
	}
}

/* Abort, newest first, the first @nev events of change @i and every
 * event of the changes before it. */
static void abort_prepared(struct batch *b, size_t i, unsigned int nev)
{
	struct event ev[2];

	for (;;) {
		events_of(&b->ch[i], ev);
		while (nev-- > 0)
			listeners_abort(&b->vm->listeners, b->vm, ev[nev].old,
					ev[nev].new_slot, ev[nev].kind);
		if (i-- == 0)
			return;
		nev = events_of(&b->ch[i], ev);
	}
}

/* The library's own arch check (rule 17), then the listeners. */
static int prepare_one(struct batch *b, size_t i, enum memslot_rule *rule)
{
	const struct change *c = &b->ch[i];
	struct event ev[2];
	unsigned int n = events_of(c, ev);
	int r = 0;

	if (enters_gfn(c->kind) && slot_end_gfn(c->cur) - 1 > b->vm->cfg.max_gfn) {
		*rule = MEMSLOT_RULE_MAX_GFN;
		abort_prepared(b, i, 0);
		return -EINVAL;
	}
	for (unsigned int e = 0; e < n && !r; e++) {
		r = listeners_prepare(&b->vm->listeners, b->vm, ev[e].old,
				      ev[e].new_slot, ev[e].kind);
		if (r) {
			*rule = MEMSLOT_RULE_PREPARE;
			abort_prepared(b, i, e);
		}
	}
	return r;
}

static int prepare_all(struct batch *b, size_t *failed,
		       enum memslot_rule *rule)
{
	for (size_t i = 0; i < b->nch; i++) {
		int r;

		cur_ahead(b, i);
		r = prepare_one(b, i, rule);
		if (r) {
			*failed = b->ch[i].op;
			return r;
		}
	}
	return 0;
}

static void commit_all(struct batch *b)
{
	struct event ev[2];

	for (size_t i = 0; i < b->nch; i++) {
		unsigned int n = events_of(&b->ch[i], ev);

		for (unsigned int e = 0; e < n; e++)
			listeners_commit(&b->vm->listeners, b->vm, ev[e].old,
					 ev[e].new_slot, ev[e].kind);
	}
}

/* Counters and the id map follow the published layout. */
static void account(struct batch *b)
{
	struct memslot_as *as = &b->vm->as[b->as_id];
	uint32_t user_slots = b->vm->cfg.user_slots;

	as->total_pages = b->total_pages;
	for (size_t i = 0; i < b->nch; i++) {
		const struct change *c = &b->ch[i];
		bool user = c->id < user_slots;

		if (c->kind == MEMSLOT_CHANGE_CREATE) {
			as->used_ids++;
			as->used_user_ids += user;
			idmap_set(&as->ids, c->id);
		} else if (c->kind == MEMSLOT_CHANGE_DELETE) {
			as->used_ids--;
			as->used_user_ids -= user;
			idmap_clear(&as->ids, c->id);
		}
	}
}

static int kind_rank(int kind)
{
	switch (kind) {
	case MEMSLOT_CHANGE_DELETE:
		return 0;
	case MEMSLOT_CHANGE_FLAGS_ONLY:
		return 1;
	case MEMSLOT_CHANGE_MOVE:
		return 2;
	default:
		return 3;
	}
}

static void report_one(const struct batch *b, struct memslot_change_info *info,
		       enum memslot_change kind, const struct memslot_slot *old,
		       const struct memslot_slot *cur)
{
	memset(info, 0, sizeof(*info));
	info->change = kind;
	if (old)
		memslot_slot_region(b->vm, old, &info->old_region);
	if (cur)
		memslot_slot_region(b->vm, cur, &info->new_region);
}

/* The changes of @rank, as the caller sees them: a RECREATE is a DELETE
 * (rank 0) and a CREATE (rank 3).  Entries from @k up to @max are free. */
static size_t report_rank(const struct batch *b, struct memslot_change_info *out,
			  size_t max, int rank, size_t k)
{
	for (size_t i = 0; i < b->nch && k < max; i++) {
		const struct change *c = &b->ch[i];
		bool re = c->kind == CHANGE_RECREATE;

		if (re && rank == 0)
			report_one(b, &out[k++], MEMSLOT_CHANGE_DELETE, c->old,
				   NULL);
		else if (re && rank == 3)
			report_one(b, &out[k++], MEMSLOT_CHANGE_CREATE, NULL,
				   c->cur);
		else if (!re && kind_rank(c->kind) == rank)
			report_one(b, &out[k++], c->kind, c->old, c->cur);
	}
	return k;
}

/* Fill the caller's change list, in the order KVM ioctls can replay.  A
 * NULL list holds nothing, whatever max_changes says. */
static void report(const struct batch *b, struct memslot_txn_result *res)
{
	size_t max = res->changes ? res->max_changes : 0;
	size_t k = 0;

	res->nchanges = 0;
	for (size_t i = 0; i < b->nch; i++)
		res->nchanges += b->ch[i].kind == CHANGE_RECREATE ? 2 : 1;
	for (int rank = 0; rank < 4; rank++)
		k = report_rank(b, res->changes, max, rank, k);
}

/* Blocking mode: both publishes waited for readers, so the old objects
 * are unreachable now. */
static void release_old(struct batch *b)
{
	for (size_t i = 0; i < b->nch; i++) {
		slot_free(b, b->ch[i].invalid);
		if (b->ch[i].old != b->ch[i].cur) {
			if (b->ch[i].old &&
			    dirty_owned_by(b->ch[i].old, b->ch[i].cur))
				dirty_free(&b->vm->alloc, b->ch[i].old);
			slot_free(b, b->ch[i].old);
		}
	}
	b->nch = 0;
}

/* Blocking mode, as kvm_set_memslot().  Return: 0 or the prepare error. */
static int apply_blocking(struct batch *b, struct memslot_txn_result *res)
{
	int r;

	if (b->any_invalid) {
		swap_with(b, edit_invalidate);
		flush_all(b);
	}
	r = prepare_all(b, &res->failed, &res->rule);
	if (r) {
		if (b->any_invalid)
			swap_with(b, edit_revert);
		return r;
	}
	swap_with(b, edit_final);
	commit_all(b);
	account(b);
	report(b, res);
	release_old(b);
	return 0;
}

/* Deferred mode: the old objects go to the reclaim thread, which flushes
 * the ones a blocking change would have made INVALID.  Filled before the
 * publish, which also makes the old slots reachable by invalidations. */
static struct retire *retire_fill(struct batch *b)
{
	struct retire *rt = b->retire;

	rt->nodes = bpt_pool_detach_retired(&b->vm->pool);
	for (size_t i = 0; i < b->nch; i++) {
		struct change *c = &b->ch[i];

		if (c->old && c->old != c->cur)
			rt->slots[rt->nslots++] = (struct retire_slot){
				c->old, needs_invalid(c->kind),
				dirty_owned_by(c->old, c->cur) };
	}
	return rt;
}

/* The generation step a blocking change would take, in one publish. */
static uint64_t deferred_step(const struct batch *b)
{
	for (size_t i = 0; i < b->nch; i++) {
		if (needs_invalid(b->ch[i].kind))
			return 2ull * b->vm->nr_as;
	}
	return b->vm->nr_as;
}

static int apply_deferred(struct batch *b, struct memslot_txn_result *res)
{
	struct memslot_set *next;
	struct retire *rt;
	int r = prepare_all(b, &res->failed, &res->rule);

	if (r)
		return r;
	next = build(b, edit_final);
	rt = retire_fill(b);
	rt->set = vm_publish(b->vm, b->as_id, next, deferred_step(b), rt);
	commit_all(b);
	account(b);
	report(b, res);
	/* The objects belong to the record now. */
	b->nch = 0;
	b->retire = NULL;
	b->queued = true;
	res->ticket = reclaim_queue(&b->vm->reclaim, rt);
	return 0;
}

/* ---- entry points ------------------------------------------------------ */

static int batch_begin(struct batch *b, struct memslot_vm *vm, size_t n,
		       bool internal, struct change *one)
{
	memset(b, 0, sizeof(*b));
	b->vm = vm;
	b->internal = internal;
	b->overlay = n > 1;
	bpt_init(&b->byid, NULL);
	bpt_init(&b->ranges, NULL);
	bpt_pool_init(&b->tmp, &vm->alloc);
	b->ch = n > 1 ? mem_malloc(&vm->alloc, n * sizeof(*b->ch)) : one;
	return b->ch ? 0 : -ENOMEM;
}

/*
 * The writer of a deferred change frees nothing: nodes beyond POOL_KEEP
 * leave the pool for the spares, whose surplus goes to the reclaim thread
 * this call queued work for (it frees it on that pass).  Other calls
 * free both surpluses here.
 */
static void pool_settle(struct batch *b)
{
	struct memslot_vm *vm = b->vm;
	struct bpt_node *nd;

	if (!b->queued)
		bpt_pool_trim(&vm->pool, POOL_KEEP);
	while ((nd = bpt_pool_take(&vm->pool, true, POOL_KEEP)))
		spares_put(&vm->spares, SPARES_PLAIN, nd);
	while ((nd = bpt_pool_take(&vm->pool, false, POOL_KEEP)))
		spares_put(&vm->spares, SPARES_WIDE, nd);
	spares_settle(&vm->spares, b->queued);
}

static void batch_end(struct batch *b, size_t n)
{
	discard(b);
	bpt_clear(&b->byid, &b->tmp);
	bpt_clear(&b->ranges, &b->tmp);
	bpt_pool_trim(&b->tmp, 0);
	if (n > 1)
		mem_free(&b->vm->alloc, b->ch, n * sizeof(*b->ch));
	for (unsigned int i = b->ndrafts; i < MAX_DRAFTS; i++) {
		if (b->draft[i])
			spares_put(&b->vm->spares, SPARES_SET, b->draft[i]);
	}
	retire_free(&b->vm->alloc, b->retire, &b->vm->spares);
	if (b->bulk)
		mem_free(&b->vm->alloc, b->bulk, bulk_bytes(b->nbulk));
	pool_settle(b);
}

static int validate_all(struct batch *b, const struct memslot_region *r,
			size_t n, size_t *failed, enum memslot_rule *rule)
{
	int err = n > 1 ? validate_creates(b, r, n) : 1;

	if (err <= 0) {
		*rule = err ? MEMSLOT_RULE_NOMEM : MEMSLOT_RULE_OK;
		*failed = err ? n : 0;
		return err;
	}
	for (size_t op = 0; op < n; op++) {
		err = validate_one(b, op, &r[op], rule);
		if (err) {
			/* out of memory is the batch's failure, not op's */
			*failed = err == -ENOMEM ? n : op;
			return err;
		}
	}
	return 0;
}

/* Stages 1 and 2, with the writer lock held. */
static int prepare_batch(struct batch *b, const struct memslot_region *r,
			 size_t n, struct memslot_txn_result *res)
{
	int err = validate_all(b, r, n, &res->failed, &res->rule);

	if (err)
		return err;
	b->used_user_ids = b->vm->as[b->as_id].used_user_ids;
	settle(b);
	if (!b->nch)
		return 0;
	err = reserve(b);
	if (err) {
		res->rule = MEMSLOT_RULE_NOMEM;
		res->failed = n;
	}
	return err;
}

int vm_set_regions(struct memslot_vm *vm, const struct memslot_region *r,
		   size_t n, bool internal, bool deferred,
		   struct memslot_txn_result *res)
{
	struct change one;
	struct batch b;
	int err;

	res->failed = 0;
	res->rule = MEMSLOT_RULE_OK;
	res->nchanges = 0;
	res->ticket = 0;
	err = vm_writer_lock(vm);
	if (err) {
		res->rule = MEMSLOT_RULE_BUSY;
		return err;
	}
	err = batch_begin(&b, vm, n, internal, &one);
	b.deferred = deferred;
	if (err) {
		/* the batch's own bookkeeping: no request is to blame */
		res->rule = MEMSLOT_RULE_NOMEM;
		res->failed = n;
	}
	if (!err)
		err = prepare_batch(&b, r, n, res);
	if (!err && b.nch)
		err = deferred ? apply_deferred(&b, res) : apply_blocking(&b, res);
	if (!err && n > 1)
		res->rule = MEMSLOT_RULE_OK;
	if (b.ch)
		batch_end(&b, n);
	vm_writer_unlock(vm);
	return err;
}

static int set_region_common(struct memslot_vm *vm,
			     const struct memslot_region *region,
			     bool internal, enum memslot_rule *rule)
{
	struct memslot_txn_result res = { 0 };
	int r;

	if (!vm || !region)
		return -EINVAL;
	r = vm_set_regions(vm, region, 1, internal, false, &res);
	if (rule)
		*rule = res.rule;
	return r;
}

int memslot_set_region(struct memslot_vm *vm,
		       const struct memslot_region *region,
		       enum memslot_rule *rule)
{
	return set_region_common(vm, region, false, rule);
}

int memslot_set_internal_region(struct memslot_vm *vm,
				const struct memslot_region *region,
				enum memslot_rule *rule)
{
	return set_region_common(vm, region, true, rule);
}

static int set_regions_common(struct memslot_vm *vm,
			      const struct memslot_region *regions, size_t n,
			      bool deferred, struct memslot_txn_result *res)
{
	struct memslot_txn_result local = { 0 };
	int r;

	if (!res)
		res = &local;
	if (!vm || (!regions && n)) {
		res->rule = MEMSLOT_RULE_COUNT;
		return -EINVAL;
	}
	if (!n) {
		res->rule = MEMSLOT_RULE_OK;
		res->nchanges = 0;
		res->ticket = 0;
		return 0;
	}
	r = vm_set_regions(vm, regions, n, false, deferred, res);
	/* A transaction reports OK on success, even if it changed nothing. */
	if (!r)
		res->rule = MEMSLOT_RULE_OK;
	return r;
}

int memslot_set_regions(struct memslot_vm *vm,
			const struct memslot_region *regions, size_t n,
			struct memslot_txn_result *res)
{
	return set_regions_common(vm, regions, n, false, res);
}

int memslot_set_regions_deferred(struct memslot_vm *vm,
				 const struct memslot_region *regions,
				 size_t n, struct memslot_txn_result *res)
{
	return set_regions_common(vm, regions, n, true, res);
}
