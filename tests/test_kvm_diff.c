/* SPDX-License-Identifier: MIT */
/*
 * Differential test against the real KVM: the same KVM_SET_USER_MEMORY_REGION
 * requests go to a KVM VM (no vCPUs, so KVM never touches the fake host
 * addresses) and to a libmemslot VM configured from KVM's capabilities, and
 * every verdict (0 or -errno) must agree.  At the end KVM_GET_DIRTY_LOG on
 * every user id tells which slots KVM has with dirty logging, which must be
 * exactly the library's slots with MEMSLOT_MEM_LOG_DIRTY_PAGES.  In the
 * random phase every other request goes to the library through
 * memslot_set_regions_deferred(), so both writer modes meet KVM's verdicts.
 *
 * KVM allocates kernel memory for every page of a slot: a few bytes per
 * 2 MiB with the TDP MMU, but 8 bytes per 4 KiB page (reverse maps) when
 * the TDP MMU is off, i.e. 16 GiB for one slot of 2^31 - 1 pages.  So every
 * request passes a gate first (kvm_safe()): a request KVM could accept may
 * create at most SAFE_PAGES pages, and all slots together stay below
 * PAGES_BUDGET; a larger request is only sent when KVM must reject it
 * before allocating (it overlaps a known slot, or fails a size check).
 * Real slots of 2^30 pages and more are made only when KVM reports the TDP
 * MMU on, at most two at a time, and deleted right away.
 *
 * Environment: MEMSLOT_KVM_DEV (default /dev/kvm), MEMSLOT_KVM_OPS (random
 * operations over all seeds, default 20000), MEMSLOT_KVM_SEED (one seed
 * instead of the built-in list).  Exits 77 (skip) without a usable KVM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/kvm.h>

#include <memslot/memslot.h>

#include "common.h"

#define PAGE TC_PAGE
#define SMALL_IDS 48		/* ids the random phase mostly uses */
#define HUGE_ID0 200		/* ids reserved for huge requests */
#define HUGE_IDS 2
#define GUARD_ID 300		/* a 1-page slot huge requests overlap */
#define GUARD_GFN (1ull << 33)
#define HUGE_GFN (1ull << 32)	/* where real huge slots go */
#define SMALL_GFNS 2048		/* small slots live in [0, SMALL_GFNS) */
#define WIDE_GFNS (1ull << 22)	/* bigger ones in [0, WIDE_GFNS) */
#define SAFE_PAGES (1ull << 20)	/* largest slot KVM may really create */
#define PAGES_BUDGET (1ull << 22)	/* pages of all such slots together */
#define LOG_MAX_PAGES SAFE_PAGES	/* LOG_DIRTY only on slots up to this */
#define HVA_LIMIT 0x7ffffffff000ull
#define MAX_GFN ((1ull << 40) - 1)
#define MAX_PAGES ((1ull << 31) - 1)
#define MAX_REPORTS 20

/* What KVM holds for one (address space, id): the shadow of its slot. */
struct kvm_slot {
	uint64_t gfn;
	uint64_t npages;	/* 0: no slot */
};

/* One KVM VM and the library VM that mirrors it. */
struct pair {
	int vm_fd;
	struct memslot_vm *vm;
	struct memslot_config cfg;
	struct kvm_slot *shadow;	/* nr_as * user_slots entries */
	uint64_t small_pages;		/* pages of KVM's slots up to SAFE */
	unsigned int huge_alive;	/* KVM's slots above SAFE_PAGES */
	uint64_t rng;
	unsigned long ops;
	unsigned long mismatches;
	unsigned long ok;		/* requests both accepted */
	unsigned long skipped;		/* requests the gate held back */
	unsigned long deferred;		/* requests sent in deferred mode */
	int last_kvm;
	enum memslot_rule last_rule;
};

static const char *kvm_path(void)
{
	const char *p = getenv("MEMSLOT_KVM_DEV");

	return p && *p ? p : "/dev/kvm";
}

static int kvm_fd = -1;

static uint64_t below(struct pair *p, uint64_t n)
{
	return tc_rng_below(&p->rng, n);
}

static int kvm_cap(int fd, long cap)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

/*
 * Whether a slot of 2^31 pages costs KVM little memory: only with the TDP
 * MMU on, which x86 KVM shows in this read-only parameter.  Anything else
 * (file missing, "N") counts as expensive.
 */
static bool huge_slots_cheap(void)
{
	FILE *f = fopen("/sys/module/kvm/parameters/tdp_mmu", "r");
	int c = f ? fgetc(f) : EOF;

	if (f)
		fclose(f);
	return c == 'Y';
}

static bool cheap_huge;

static void pair_open(struct pair *p, uint64_t seed)
{
	int nr_as, r;

	memset(p, 0, sizeof(*p));
	p->rng = tc_rng_seed(seed);
	p->vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	assert_true(p->vm_fd >= 0);
	memslot_config_init_x86_64(&p->cfg);
	p->cfg.user_slots = (uint32_t)kvm_cap(p->vm_fd, KVM_CAP_NR_MEMSLOTS);
	nr_as = kvm_cap(p->vm_fd, KVM_CAP_MULTI_ADDRESS_SPACE);
	p->cfg.nr_as = nr_as > 1 ? (unsigned int)nr_as : 1;
	p->cfg.readonly = kvm_cap(p->vm_fd, KVM_CAP_READONLY_MEM) > 0;
	p->cfg.rcu = memslot_rcu_none();
	r = memslot_vm_create(&p->cfg, &p->vm);
	assert_int_equal(r, 0);
	p->shadow = calloc((size_t)p->cfg.nr_as * p->cfg.user_slots,
			   sizeof(*p->shadow));
	assert_non_null(p->shadow);
}

static void pair_close(struct pair *p)
{
	memslot_vm_destroy(p->vm);
	close(p->vm_fd);
	free(p->shadow);
	if (p->skipped)
		printf("  %lu requests held back by the memory gate\n",
		       p->skipped);
}

static int kvm_set(struct pair *p, const struct memslot_region *r)
{
	struct kvm_userspace_memory_region k = {
		.slot = r->slot,
		.flags = r->flags,
		.guest_phys_addr = r->guest_phys_addr,
		.memory_size = r->memory_size,
		.userspace_addr = r->userspace_addr,
	};

	return ioctl(p->vm_fd, KVM_SET_USER_MEMORY_REGION, &k) ? -errno : 0;
}

/* KVM's slot for the request's (as, id), or NULL when out of range. */
static struct kvm_slot *shadow_of(struct pair *p, uint32_t slot)
{
	unsigned int as_id = slot >> 16;
	uint32_t id = slot & 0xffff;

	if (as_id >= p->cfg.nr_as || id >= p->cfg.user_slots)
		return NULL;
	return &p->shadow[(size_t)as_id * p->cfg.user_slots + id];
}

/* Follow what KVM did with an accepted request. */
static void shadow_update(struct pair *p, const struct memslot_region *r)
{
	struct kvm_slot *k = shadow_of(p, r->slot);

	if (k->npages > SAFE_PAGES)
		p->huge_alive--;
	else
		p->small_pages -= k->npages;
	k->npages = r->memory_size / PAGE;
	k->gfn = r->guest_phys_addr / PAGE;
	if (k->npages > SAFE_PAGES)
		p->huge_alive++;
	else
		p->small_pages += k->npages;
}

/* A check KVM makes before it allocates anything fails for @r. */
static bool kvm_must_reject(struct pair *p, const struct memslot_region *r)
{
	uint64_t size = r->memory_size;

	if (r->flags & ~(uint32_t)(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY))
		return true;
	if ((size | r->guest_phys_addr | r->userspace_addr) % PAGE)
		return true;
	if (size / PAGE > MAX_PAGES)
		return true;
	return r->guest_phys_addr + size < r->guest_phys_addr ||
	       !shadow_of(p, r->slot);
}

/* Some slot KVM has in @r's address space, other than @r's id, meets @r's
 * gfn range: KVM answers -EEXIST before allocating. */
static bool kvm_overlaps(struct pair *p, const struct memslot_region *r)
{
	unsigned int as_id = r->slot >> 16;
	uint64_t start = r->guest_phys_addr / PAGE;
	uint64_t end = start + r->memory_size / PAGE;

	for (uint32_t id = 0; id < p->cfg.user_slots; id++) {
		const struct kvm_slot *k =
			&p->shadow[(size_t)as_id * p->cfg.user_slots + id];

		if (id != (r->slot & 0xffff) && k->npages &&
		    k->gfn < end && start < k->gfn + k->npages)
			return true;
	}
	return false;
}

/*
 * The memory gate: may @r go to KVM?  Deletes, requests KVM must reject,
 * and changes of an existing slot (same page count, or rejected) always
 * may; a create may if it is small and within the budget, or huge while
 * huge slots are cheap and fewer than two exist, or if it overlaps a slot
 * KVM has (then KVM fails it with -EEXIST before allocating).
 */
static bool kvm_safe(struct pair *p, const struct memslot_region *r)
{
	uint64_t npages = r->memory_size / PAGE;

	if (!r->memory_size || kvm_must_reject(p, r) ||
	    shadow_of(p, r->slot)->npages)
		return true;
	if (npages <= SAFE_PAGES && p->small_pages + npages <= PAGES_BUDGET)
		return true;
	if (npages > SAFE_PAGES && cheap_huge && p->huge_alive < 2)
		return true;
	return kvm_overlaps(p, r);
}

static void report(struct pair *p, const char *what,
		   const struct memslot_region *r, int lib, int kvm,
		   enum memslot_rule rule)
{
	if (++p->mismatches > MAX_REPORTS)
		return;
	fprintf(stderr,
		"MISMATCH %s op %lu: slot=0x%" PRIx32 " (as %u id %u) flags=0x%"
		PRIx32 " gpa=0x%" PRIx64 " size=0x%" PRIx64 " hva=0x%" PRIx64
		": libmemslot %d (%s, rule %d %s), kvm %d (%s)\n",
		what, p->ops, r->slot, r->slot >> 16, r->slot & 0xffff,
		r->flags, r->guest_phys_addr, r->memory_size,
		r->userspace_addr, lib, lib ? strerror(-lib) : "ok", rule,
		memslot_rule_str(rule), kvm, kvm ? strerror(-kvm) : "ok");
}

/*
 * The library's side of a request: every other one goes through the
 * deferred mode, whose verdict, rule and all-or-nothing must be the
 * blocking mode's, so KVM judges both modes on one VM.
 */
static int lib_set(struct pair *p, const struct memslot_region *r,
		   enum memslot_rule *rule)
{
	struct memslot_txn_result res;
	int ret;

	if (!(p->ops & 1))
		return memslot_set_region(p->vm, r, rule);
	memset(&res, 0, sizeof(res));
	ret = memslot_set_regions_deferred(p->vm, r, 1, &res);
	*rule = res.rule;
	p->deferred++;
	return ret;
}

/*
 * Send @r to both; a mismatch is reported and counted.  A request the
 * memory gate holds back goes to neither.
 * Return: KVM's verdict, or 1 when held back.
 */
static int apply(struct pair *p, const struct memslot_region *r,
		 const char *what)
{
	enum memslot_rule rule = MEMSLOT_RULE_OK;
	int lib, kvm;

	if (!kvm_safe(p, r)) {
		p->skipped++;
		return 1;
	}
	lib = lib_set(p, r, &rule);
	kvm = kvm_set(p, r);
	p->ops++;
	p->last_kvm = kvm;
	p->last_rule = rule;
	if (!kvm)
		shadow_update(p, r);
	if (lib != kvm)
		report(p, what, r, lib, kvm, rule);
	else if (!lib)
		p->ok++;
	return kvm;
}

static struct memslot_region region(unsigned int as_id, uint32_t id,
				    uint32_t flags, uint64_t gpa,
				    uint64_t size, uint64_t hva)
{
	return tc_region(as_id << 16 | id, flags, gpa, size, hva);
}

/* The library's current slot @id of @as_id as a request, or false. */
static bool current(struct pair *p, unsigned int as_id, uint32_t id,
		    struct memslot_region *r)
{
	const struct memslot_slot *s = memslot_id_to_slot(p->vm, as_id, id);

	if (s)
		memslot_slot_region(p->vm, s, r);
	return s != NULL;
}

/* Flags for a slot of @npages: LOG_DIRTY only where KVM's bitmap is small. */
static uint32_t rand_flags(struct pair *p, uint64_t npages)
{
	uint32_t f = 0;

	if (npages <= LOG_MAX_PAGES && below(p, 2))
		f |= MEMSLOT_MEM_LOG_DIRTY_PAGES;
	if (p->cfg.readonly && below(p, 4) == 0)
		f |= MEMSLOT_MEM_READONLY;
	return f;
}

static uint64_t rand_hva(struct pair *p)
{
	return below(p, 1ull << 24) * PAGE;
}

/*
 * A page count: mostly up to 256, some up to 2^16, a few up to SAFE_PAGES,
 * and small again once KVM's slots approach the page budget.
 */
static uint64_t rand_npages(struct pair *p)
{
	uint64_t kind = below(p, 32), n;

	if (kind == 0)
		n = 1 + below(p, SAFE_PAGES);
	else if (kind < 4)
		n = 1 + below(p, 1ull << 16);
	else
		n = 1 + below(p, below(p, 4) ? 16 : 256);
	if (p->small_pages + n > PAGES_BUDGET)
		n = 1 + below(p, 16);
	return n;
}

/* A slot request at a random id and place (creates, overlaps): small
 * slots crowd [0, SMALL_GFNS), bigger ones spread over WIDE_GFNS. */
static struct memslot_region rand_small(struct pair *p)
{
	uint64_t npages = rand_npages(p);
	uint64_t gfns = npages > 256 && below(p, 4) ? WIDE_GFNS : SMALL_GFNS;
	unsigned int as_id = (unsigned int)below(p, p->cfg.nr_as);

	return region(as_id, (uint32_t)below(p, SMALL_IDS),
		      rand_flags(p, npages), below(p, gfns) * PAGE,
		      npages * PAGE, rand_hva(p));
}

/* An existing slot of the library, or a random small request. */
static struct memslot_region rand_existing(struct pair *p, bool *found)
{
	struct memslot_region r = rand_small(p);

	*found = current(p, r.slot >> 16, r.slot & 0xffff, &r);
	return r;
}

static void op_create(struct pair *p)
{
	struct memslot_region r = rand_small(p);

	apply(p, &r, "create");
}

static void op_delete(struct pair *p)
{
	bool found;
	struct memslot_region r = rand_existing(p, &found);

	r.memory_size = 0;
	if (below(p, 2)) {	/* a delete ignores gpa, hva and flags */
		r.guest_phys_addr = below(p, 1ull << 20) * PAGE;
		r.userspace_addr = rand_hva(p);
		r.flags = (uint32_t)below(p, 4) & (p->cfg.readonly ? 3 : 1);
	}
	apply(p, &r, found ? "delete" : "delete-missing");
}

static void op_move(struct pair *p)
{
	bool found;
	struct memslot_region r = rand_existing(p, &found);
	uint64_t npages = r.memory_size / PAGE;
	int64_t step = (int64_t)below(p, 2 * npages + 1) - (int64_t)npages;

	/* near the old place, so a move onto its own range happens often */
	if (below(p, 2) && (int64_t)(r.guest_phys_addr / PAGE) + step >= 0)
		r.guest_phys_addr += (uint64_t)step * PAGE;
	else
		r.guest_phys_addr = below(p, SMALL_GFNS) * PAGE;
	r.flags = (r.flags & MEMSLOT_MEM_READONLY) |
		  (rand_flags(p, npages) & MEMSLOT_MEM_LOG_DIRTY_PAGES);
	apply(p, &r, "move");
}

static void op_flags(struct pair *p)
{
	bool found;
	struct memslot_region r = rand_existing(p, &found);

	if (r.memory_size / PAGE <= LOG_MAX_PAGES)
		r.flags ^= MEMSLOT_MEM_LOG_DIRTY_PAGES;
	if (below(p, 8) == 0)	/* toggling READONLY is refused (rule 14) */
		r.flags ^= MEMSLOT_MEM_READONLY;
	apply(p, &r, "flags");
}

static void op_noop(struct pair *p)
{
	bool found;
	struct memslot_region r = rand_existing(p, &found);

	apply(p, &r, "noop");
}

static void op_modify_bad(struct pair *p)
{
	bool found;
	struct memslot_region r = rand_existing(p, &found);

	switch (below(p, 3)) {
	case 0:
		r.userspace_addr += PAGE * (1 + below(p, 8));
		break;
	case 1:
		r.memory_size += PAGE * (below(p, 2) ? 1 : -1ull);
		break;
	default:
		r.memory_size *= 2;
	}
	if (!r.memory_size)
		r.memory_size = PAGE;
	apply(p, &r, "modify");
}

static void op_misalign(struct pair *p)
{
	struct memslot_region r = rand_small(p);
	uint64_t off = 1 + below(p, PAGE - 1);

	switch (below(p, 3)) {
	case 0:
		r.memory_size += below(p, 2) ? off : (1ull << 63);
		break;
	case 1:
		r.guest_phys_addr += off;
		break;
	default:
		r.userspace_addr += off;
	}
	apply(p, &r, "misalign");
}

static void op_bad_flags(struct pair *p)
{
	struct memslot_region r = rand_small(p);

	r.flags |= 1u << below(p, 32);
	apply(p, &r, "flag-bit");
}

static void op_bad_id(struct pair *p)
{
	static const uint32_t ids[] = { 32763, 32764, 32765, 32766, 32767,
					32768, 65534, 65535 };
	struct memslot_region r = rand_small(p);
	uint32_t id = below(p, 2) ? ids[below(p, 8)] : (uint32_t)below(p, 65536);
	unsigned int as_id = (unsigned int)below(p, p->cfg.nr_as + 2);

	if (below(p, 4) == 0)
		as_id = (unsigned int)below(p, 65536);
	if (below(p, 4) == 0)
		r.memory_size = 0;
	if (id < p->cfg.user_slots && id >= SMALL_IDS && r.memory_size) {
		/* keep the slot count modest: valid far ids only probe */
		r.memory_size = 0;
	}
	r.slot = as_id << 16 | id;
	apply(p, &r, "id");
}

/* A 1-page slot at GUARD_GFN in @as_id, which huge requests overlap so
 * that KVM rejects them before allocating.  Return: it is there. */
static bool ensure_guard(struct pair *p, unsigned int as_id)
{
	struct memslot_region r = region(as_id, GUARD_ID,
					 MEMSLOT_MEM_LOG_DIRTY_PAGES,
					 GUARD_GFN * PAGE, PAGE, 0);

	if (!shadow_of(p, r.slot)->npages)
		apply(p, &r, "guard");
	return shadow_of(p, r.slot)->gfn == GUARD_GFN;
}

static uint64_t rand_huge_npages(struct pair *p)
{
	static const uint64_t sizes[] = {
		1ull << 30, MAX_PAGES - 1, MAX_PAGES, MAX_PAGES + 1,
		1ull << 32, 1ull << 40,
	};

	return sizes[below(p, sizeof(sizes) / sizeof(sizes[0]))];
}

/*
 * 2^31 - 1 pages is the largest user slot, 2^31 one too many.  Where huge
 * slots are cheap for KVM one is really created and deleted at once;
 * otherwise the request overlaps the guard (or names an existing slot),
 * so an accepted size shows as -EEXIST (or rule 14), a refused one as
 * -EINVAL from rule 10.
 */
static void op_huge(struct pair *p)
{
	unsigned int as_id = (unsigned int)below(p, p->cfg.nr_as);
	uint32_t id = HUGE_ID0 + (uint32_t)below(p, HUGE_IDS);
	uint64_t npages = rand_huge_npages(p);
	uint64_t gfn = HUGE_GFN + below(p, 4) * (1ull << 31);
	uint32_t flags = p->cfg.readonly && below(p, 2) ? MEMSLOT_MEM_READONLY
							 : 0;
	struct memslot_region r;

	if (!cheap_huge) {
		if (!ensure_guard(p, as_id))
			return;
		gfn = GUARD_GFN - below(p, npages < GUARD_GFN ? npages : 1);
		if (below(p, 4) == 0)	/* an existing small slot's id */
			id = (uint32_t)below(p, SMALL_IDS);
	}
	r = region(as_id, id, flags, gfn * PAGE, npages * PAGE,
		   below(p, 16) * (1ull << 40));
	if (apply(p, &r, "huge") == 0) {
		r.memory_size = 0;
		apply(p, &r, "huge delete");
	}
}

static void op_wrap(struct pair *p)
{
	struct memslot_region r = rand_small(p);
	uint64_t room = below(p, 3) * PAGE;

	/* gpa + size lands on 2^64 exactly (wraps), or just past it */
	r.guest_phys_addr = 0 - r.memory_size + (below(p, 2) ? 0 : room);
	if (below(p, 2))
		r.guest_phys_addr = 0 - r.memory_size - room;
	apply(p, &r, "wrap");
}

static void op_hva_limit(struct pair *p)
{
	struct memslot_region r = rand_small(p);
	int64_t d = (int64_t)below(p, 5) - 2;

	r.userspace_addr = HVA_LIMIT - r.memory_size + (uint64_t)d * PAGE;
	if (below(p, 4) == 0)
		r.userspace_addr = HVA_LIMIT + (uint64_t)d * PAGE;
	if (below(p, 8) == 0)
		r.userspace_addr = 0;
	apply(p, &r, "hva-limit");
}

static void op_max_gfn(struct pair *p)
{
	bool found = false;
	struct memslot_region r = below(p, 2) ? rand_existing(p, &found)
					      : rand_small(p);
	uint64_t npages = r.memory_size / PAGE;
	int64_t d = (int64_t)below(p, 5) - 2;

	/* last gfn = MAX_GFN + d: a create, or a move of an existing slot */
	r.guest_phys_addr = (MAX_GFN + 1 - npages + (uint64_t)d) * PAGE;
	if (below(p, 8) == 0)
		r.guest_phys_addr = (1ull << 52) + below(p, 3) * PAGE;
	apply(p, &r, found ? "max-gfn-move" : "max-gfn");
}

static const struct {
	void (*fn)(struct pair *p);
	unsigned int weight;
} ops[] = {
	{ op_create, 30 }, { op_delete, 18 }, { op_move, 12 },
	{ op_flags, 8 }, { op_noop, 4 }, { op_modify_bad, 5 },
	{ op_misalign, 4 }, { op_bad_flags, 4 }, { op_bad_id, 4 },
	{ op_huge, 2 }, { op_wrap, 3 }, { op_hva_limit, 3 },
	{ op_max_gfn, 3 },
};

static void random_op(struct pair *p)
{
	unsigned int total = 0, pick;

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		total += ops[i].weight;
	pick = (unsigned int)below(p, total);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (pick < ops[i].weight) {
			ops[i].fn(p);
			return;
		}
		pick -= ops[i].weight;
	}
}

/* One bitmap buffer big enough for any slot that logs (LOG_MAX_PAGES). */
static void *bitmap_buffer(void)
{
	static uint64_t buf[LOG_MAX_PAGES / 64 + 1];

	return buf;
}

/* KVM_GET_DIRTY_LOG on every user id agrees with the library's flags. */
static unsigned long check_dirty_logs(struct pair *p)
{
	unsigned long logging = 0;

	for (unsigned int as_id = 0; as_id < p->cfg.nr_as; as_id++) {
		for (uint32_t id = 0; id < p->cfg.user_slots; id++) {
			const struct memslot_slot *s =
				memslot_id_to_slot(p->vm, as_id, id);
			bool log = s && (memslot_slot_flags(s) &
					 MEMSLOT_MEM_LOG_DIRTY_PAGES);
			struct kvm_dirty_log d = {
				.slot = as_id << 16 | id,
				.dirty_bitmap = bitmap_buffer(),
			};
			int kvm = ioctl(p->vm_fd, KVM_GET_DIRTY_LOG, &d) ? -errno
									  : 0;

			logging += log;
			if (kvm != (log ? 0 : -ENOENT)) {
				fprintf(stderr,
					"MISMATCH dirty log as %u id %u: library %s, kvm %d\n",
					as_id, id, log ? "logs" : "does not log",
					kvm);
				p->mismatches++;
			}
		}
	}
	return logging;
}

static unsigned long env_ul(const char *name, unsigned long def)
{
	const char *v = getenv(name);

	return v && *v ? strtoul(v, NULL, 0) : def;
}

static void run_seed(uint64_t seed, unsigned long nops)
{
	struct pair p;
	unsigned long logging;

	pair_open(&p, seed);
	for (unsigned long i = 0; i < nops; i++)
		random_op(&p);
	logging = check_dirty_logs(&p);
	printf("seed %" PRIu64 ": %lu requests (%lu deferred, %lu accepted by both), %lu slots logging at the end, %" PRIu64 " pages in KVM, %lu mismatches (nr_as %u, user_slots %u, readonly %d)\n",
	       seed, p.ops, p.deferred, p.ok, logging, p.small_pages,
	       p.mismatches,
	       p.cfg.nr_as, p.cfg.user_slots, p.cfg.readonly);
	pair_close(&p);
	assert_int_equal(p.mismatches, 0);
}

static void test_random(void **state)
{
	static const uint64_t seeds[] = { 1, 2, 3, 0xdeadbeef, 20240611 };
	size_t nseeds = sizeof(seeds) / sizeof(seeds[0]);
	unsigned long total = env_ul("MEMSLOT_KVM_OPS", 20000);
	unsigned long one = env_ul("MEMSLOT_KVM_SEED", 0);

	(void)state;
	if (one) {
		run_seed(one, total);
		return;
	}
	for (size_t i = 0; i < nseeds; i++)
		run_seed(seeds[i], (total + nseeds - 1) / nseeds);
}

/* Every flag bit on a create, a flags change and a delete. */
static void test_flag_bits(void **state)
{
	struct pair p;

	(void)state;
	pair_open(&p, 77);
	for (unsigned int bit = 0; bit < 32; bit++) {
		struct memslot_region r = region(0, 1, 1u << bit, 0, 16 * PAGE,
						 0);

		apply(&p, &r, "flag-bit create");
		r.flags = 0;
		apply(&p, &r, "flag-bit base");
		r.flags = 1u << bit;
		apply(&p, &r, "flag-bit change");
		r.memory_size = 0;
		apply(&p, &r, "flag-bit delete");
		r.flags = 0;
		apply(&p, &r, "flag-bit cleanup");
	}
	check_dirty_logs(&p);
	pair_close(&p);
	assert_int_equal(p.mismatches, 0);
}

/* Hand-picked edges: limits of size, hva, gpa, ids and address spaces. */
static void test_edges(void **state)
{
	const uint64_t top = (MAX_GFN + 1) * PAGE;
	struct memslot_region rs[] = {
		region(0, 0, 0, 0, PAGE, HVA_LIMIT - PAGE),
		region(0, 0, 0, 0, 0, 0),
		region(0, 0, 0, 0, PAGE, HVA_LIMIT),
		region(0, 0, 0, 0, 2 * PAGE, HVA_LIMIT - PAGE),
		region(0, 0, 0, 0, PAGE, -PAGE),
		region(0, 1, 0, top - PAGE, PAGE, 0),		/* last gfn */
		region(0, 2, 0, top, PAGE, 0),			/* beyond */
		region(0, 1, 0, top - 2 * PAGE, PAGE, 0),	/* move down */
		region(0, 1, 0, top, PAGE, 0),			/* move out */
		region(0, 1, 0, 0, 0, 0),
		region(0, 3, 0, -PAGE, PAGE, 0),		/* sum 2^64 */
		region(0, 3, 0, -2 * PAGE, PAGE, 0),
		region(0, 3, 0, 1ull << 63, 1ull << 63, 0),
		region(0, 32763, 0, 0, PAGE, 0),
		region(0, 32763, 0, 0, 0, 0),
		region(0, 32764, 0, 0, PAGE, 0),
		region(0, 32767, 0, 0, 0, 0),
		region(1, 5, 0, 0, PAGE, 0),
		region(1, 5, 0, 0, 0, 0),
		region(2, 5, 0, 0, PAGE, 0),
		region(2, 5, 0, 0, 0, 0),
		region(0xffff, 0xffff, 0, 0, PAGE, 0),
		region(0, 9, 0, 0, 0, 0),			/* missing */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]); i++) {
		struct pair p;

		/* each edge alone and then all in a row on one VM */
		pair_open(&p, i);
		apply(&p, &rs[i], "edge");
		pair_close(&p);
		assert_int_equal(p.mismatches, 0);
	}
	{
		struct pair p;

		pair_open(&p, 99);
		for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]); i++)
			apply(&p, &rs[i], "edge-seq");
		check_dirty_logs(&p);
		pair_close(&p);
		assert_int_equal(p.mismatches, 0);
	}
}

/* @r goes to both; KVM must answer @want and the library name @rule. */
static void huge_case(struct pair *p, struct memslot_region r, int want,
		      enum memslot_rule rule)
{
	assert_int_equal(apply(p, &r, "huge-size"), want);
	assert_int_equal(p->last_rule, rule);
}

/*
 * Size limits: 2^31 - 1 pages passes rule 10 and 2^31 fails it.  The sizes
 * are checked on creates over the guard slot, so a size KVM accepts shows
 * as -EEXIST (rule 16) without KVM allocating metadata for it.  A real
 * create of the largest slot is made only where it is cheap for KVM.
 */
static void test_huge(void **state)
{
	const uint64_t g = GUARD_GFN * PAGE, max = MAX_PAGES * PAGE;
	struct pair p;

	(void)state;
	pair_open(&p, 11);
	assert_true(ensure_guard(&p, 0));
	huge_case(&p, region(0, 1, 0, g - max + PAGE, max, 0), -EEXIST,
		  MEMSLOT_RULE_OVERLAP);
	huge_case(&p, region(0, 1, 0, g, max + PAGE, 0), -EINVAL,
		  MEMSLOT_RULE_TOO_LARGE);
	huge_case(&p, region(0, 1, 0, g, PAGE << 30, 0), -EEXIST,
		  MEMSLOT_RULE_OVERLAP);
	huge_case(&p, region(0, 1, 0, g, PAGE << 32, 0), -EINVAL,
		  MEMSLOT_RULE_TOO_LARGE);
	/* the hva limit with the largest slot */
	huge_case(&p, region(0, 1, 0, g, max, HVA_LIMIT - max), -EEXIST,
		  MEMSLOT_RULE_OVERLAP);
	huge_case(&p, region(0, 1, 0, g, max, HVA_LIMIT - max + PAGE), -EINVAL,
		  MEMSLOT_RULE_HVA);
	/* growing the guard itself: rule 14 for a legal size, 10 beyond */
	huge_case(&p, region(0, GUARD_ID, 0, g, max, 0), -EINVAL,
		  MEMSLOT_RULE_MODIFY);
	huge_case(&p, region(0, GUARD_ID, 0, g, max + PAGE, 0), -EINVAL,
		  MEMSLOT_RULE_TOO_LARGE);
	if (cheap_huge) {
		huge_case(&p, region(0, 2, 0, HUGE_GFN * PAGE, max, 0), 0,
			  MEMSLOT_RULE_OK);
		huge_case(&p, region(0, 2, 0, 0, 0, 0), 0, MEMSLOT_RULE_OK);
	} else {
		printf("real create of 2^31 - 1 pages skipped: KVM's TDP MMU is off, the slot would cost 16 GiB of kernel memory\n");
	}
	check_dirty_logs(&p);
	pair_close(&p);
	assert_int_equal(p.mismatches, 0);
}

/* Every user id of address space 0 in use, then one more. */
static void test_fill(void **state)
{
	struct pair p;
	struct memslot_region r;
	uint32_t id;

	(void)state;
	pair_open(&p, 5);
	for (id = 0; id < p.cfg.user_slots; id++) {
		r = region(0, id, id % 7 == 0 ? MEMSLOT_MEM_LOG_DIRTY_PAGES : 0,
			   (uint64_t)id * 2 * PAGE, PAGE, (uint64_t)id * PAGE);
		apply(&p, &r, "fill");
	}
	assert_int_equal(p.ok, p.cfg.user_slots);
	r = region(0, id, 0, (uint64_t)id * 2 * PAGE, PAGE, 0);
	assert_int_equal(apply(&p, &r, "fill one more"), -EINVAL);
	assert_int_equal(memslot_lowest_free_id(p.vm, 0, &id), -ENOSPC);
	r = region(0, 0, 0, PAGE, PAGE, 0);	/* the gap after slot 0 */
	apply(&p, &r, "fill move");
	printf("filled %lu slots, %lu logging\n", p.ok, check_dirty_logs(&p));
	pair_close(&p);
	assert_int_equal(p.mismatches, 0);
}

/* ---- KVM_SET_USER_MEMORY_REGION2 with a real guest_memfd --------------- */

/*
 * Debian 12's kernel headers predate these, so the test carries the UAPI
 * layouts and numbers itself (include/uapi/linux/kvm.h of Linux 6.8 on).
 */
struct kvm_region2 {
	uint32_t slot;
	uint32_t flags;
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t guest_memfd_offset;
	uint32_t guest_memfd;
	uint32_t pad1;
	uint64_t pad2[14];
};

struct kvm_gmem_create {
	uint64_t size;
	uint64_t flags;
	uint64_t reserved[6];
};

#define SET_REGION2 _IOW(KVMIO, 0x49, struct kvm_region2)
#define CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct kvm_gmem_create)
#define CAP_USER_MEMORY2 231
#define CAP_GUEST_MEMFD 234
#define CAP_VM_TYPES 235
#define X86_SW_PROTECTED_VM 1
#define GMEM_PAGES 16		/* the guest_memfd file: 64 KiB */

struct gmem_pair {
	int vm_fd;
	int gmem_fd;
	struct memslot_vm *vm;
	unsigned long mismatches;
};

static int kvm_set2(struct gmem_pair *g, const struct memslot_region *r)
{
	struct kvm_region2 k = {
		.slot = r->slot,
		.flags = r->flags,
		.guest_phys_addr = r->guest_phys_addr,
		.memory_size = r->memory_size,
		.userspace_addr = r->userspace_addr,
		.guest_memfd_offset = r->guest_memfd_offset,
		.guest_memfd = r->guest_memfd,
	};

	return ioctl(g->vm_fd, SET_REGION2, &k) ? -errno : 0;
}

/* Send @r to both; the verdicts must agree and match @want. */
static void gmem_apply(struct gmem_pair *g, const struct memslot_region *r,
		       int want, const char *what)
{
	enum memslot_rule rule = MEMSLOT_RULE_COUNT;
	int kvm = kvm_set2(g, r);
	int lib = memslot_set_region(g->vm, r, &rule);

	printf("  %-34s kvm %4d  library %4d (%s)\n", what, kvm, lib,
	       memslot_rule_str(rule));
	if (kvm != lib || kvm != want)
		g->mismatches++;
}

/* Why the guest_memfd case cannot run here, or NULL when it can. */
static const char *gmem_unavailable(struct gmem_pair *g)
{
	struct kvm_gmem_create c = { .size = GMEM_PAGES * PAGE };
	int types = kvm_cap(kvm_fd, CAP_VM_TYPES);

	if (kvm_cap(kvm_fd, CAP_USER_MEMORY2) <= 0)
		return "KVM_CAP_USER_MEMORY2 is not supported";
	if (!(types & (1 << X86_SW_PROTECTED_VM)))
		return "KVM_X86_SW_PROTECTED_VM is not among KVM_CAP_VM_TYPES";
	g->vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, X86_SW_PROTECTED_VM);
	if (g->vm_fd < 0)
		return "KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM) failed";
	if (kvm_cap(g->vm_fd, CAP_GUEST_MEMFD) <= 0)
		return "KVM_CAP_GUEST_MEMFD is not supported on that VM";
	g->gmem_fd = ioctl(g->vm_fd, CREATE_GUEST_MEMFD, &c);
	if (g->gmem_fd < 0)
		return "KVM_CREATE_GUEST_MEMFD failed";
	return NULL;
}

static struct memslot_region gmem_req(uint32_t id, uint32_t flags,
				      uint64_t gfn, uint64_t npages, int fd,
				      uint64_t off)
{
	struct memslot_region r = region(0, id, flags, gfn * PAGE,
					 npages * PAGE, 0x10000000ull);

	r.guest_memfd = (uint32_t)fd;
	r.guest_memfd_offset = off;
	return r;
}

/*
 * guest_memfd slots are immutable: moving one (with or without the flag),
 * dropping the flag, repeating its request, and adding the flag to a plain
 * slot are all refused; offsets are checked; plain create/delete works.
 */
static void test_guest_memfd(void **state)
{
	const uint32_t gm = MEMSLOT_MEM_GUEST_MEMFD;
	struct gmem_pair g = { .vm_fd = -1, .gmem_fd = -1 };
	struct memslot_config cfg;
	struct memslot_region r;
	const char *why;

	(void)state;
	why = gmem_unavailable(&g);
	if (why) {
		printf("SKIP guest_memfd case: %s\n", why);
		if (g.vm_fd >= 0)
			close(g.vm_fd);
		skip();
	}
	memslot_config_init_x86_64(&cfg);
	cfg.user_slots = (uint32_t)kvm_cap(g.vm_fd, KVM_CAP_NR_MEMSLOTS);
	cfg.readonly = kvm_cap(g.vm_fd, KVM_CAP_READONLY_MEM) > 0;
	cfg.guest_memfd = true;
	cfg.rcu = memslot_rcu_none();
	assert_int_equal(memslot_vm_create(&cfg, &g.vm), 0);

	r = gmem_req(1, gm, 0x100, 4, g.gmem_fd, 0);
	gmem_apply(&g, &r, 0, "create GUEST_MEMFD slot");
	gmem_apply(&g, &r, -EINVAL, "same request again");
	r = gmem_req(1, gm, 0x180, 4, g.gmem_fd, 0);
	gmem_apply(&g, &r, -EINVAL, "move with GUEST_MEMFD");
	r = gmem_req(1, 0, 0x180, 4, g.gmem_fd, 0);
	gmem_apply(&g, &r, -EINVAL, "move without GUEST_MEMFD");
	r = gmem_req(1, 0, 0x100, 4, g.gmem_fd, 0);
	gmem_apply(&g, &r, -EINVAL, "flags-only: drop GUEST_MEMFD");
	r = gmem_req(2, 0, 0x200, 4, -1, 0);
	gmem_apply(&g, &r, 0, "create plain slot");
	r = gmem_req(2, gm, 0x200, 4, g.gmem_fd, 8 * PAGE);
	gmem_apply(&g, &r, -EINVAL, "flags-only: add GUEST_MEMFD");
	r = gmem_req(3, gm, 0x300, 4, g.gmem_fd, PAGE + 1);
	gmem_apply(&g, &r, -EINVAL, "offset not page aligned");
	r = gmem_req(3, gm, 0x300, 4, g.gmem_fd, 0 - 2 * PAGE);
	gmem_apply(&g, &r, -EINVAL, "offset + size wraps");
	r = gmem_req(1, 0, 0, 0, -1, 0);
	gmem_apply(&g, &r, 0, "delete GUEST_MEMFD slot");
	r = gmem_req(2, 0, 0, 0, -1, 0);
	gmem_apply(&g, &r, 0, "delete plain slot");

	memslot_vm_destroy(g.vm);
	close(g.gmem_fd);
	close(g.vm_fd);
	assert_int_equal(g.mismatches, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_edges),
		cmocka_unit_test(test_flag_bits),
		cmocka_unit_test(test_huge),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_fill),
		cmocka_unit_test(test_guest_memfd),
	};
	int vm_fd;

	kvm_fd = open(kvm_path(), O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		printf("SKIP: cannot open %s: %s\n", kvm_path(), strerror(errno));
		return 77;
	}
	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0) {
		printf("SKIP: KVM_CREATE_VM on %s failed: %s\n", kvm_path(),
		       strerror(errno));
		return 77;
	}
	close(vm_fd);
	cheap_huge = huge_slots_cheap();
	printf("KVM TDP MMU %s: huge slots are %s\n", cheap_huge ? "on" : "off",
	       cheap_huge ? "created for real" : "only checked against a guard");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
