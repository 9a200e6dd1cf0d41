/* SPDX-License-Identifier: MIT */
/*
 * kvm_vmm: a small VMM on /dev/kvm whose memory map lives in libmemslot.
 *
 * Guest memory is many small slots (509 by default, up to KVM's 32764),
 * each one to three pages of one anonymous mapping, laid out in reverse
 * order so that no two guest-neighbours are host-neighbours.  Every slot
 * change is made in libmemslot first, as a transaction, and then replayed
 * to KVM from the transaction's change list, so KVM only ever learns the
 * layout from the library.
 *
 * A tiny guest (kvm_guest.S, 32-bit protected mode, no paging) runs a plan
 * the VMM wrote for it: it fills ranges across slots with a pattern, asks
 * a "DMA device" (this program, through the access API) to write ranges
 * it then checks or to check ranges it wrote, and probes two BARs that
 * the VMM creates, moves and deletes at sync points: where no BAR is, the
 * guest must take an MMIO exit, never read or write stale memory.
 *
 * At the end every byte of guest RAM is read back through libmemslot and
 * compared with what the plan says, and for every slot KVM's dirty log
 * (the guest's writes) merged into libmemslot's (the device's writes)
 * must be exactly the pages the plan wrote.
 *
 * Usage: kvm_vmm [--quick] [SLOTS]
 * Exit status: 0 all checks passed, 1 a check failed, 77 no usable KVM.
 * Environment: MEMSLOT_KVM_DEV (default /dev/kvm).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <memslot/access.h>
#include <memslot/memslot.h>

#include "kvm_guest.h"

#define PAGE_SHIFT 12
#define PAGE_SIZE (1u << PAGE_SHIFT)

/* Guest RAM slots start here, above the largest boot slot. */
#define DATA_GPA 0x10000000u
#define MAX_SLOT_PAGES 3

/*
 * BARs live in a window of four positions far from RAM, and far below
 * 0xfee00000 and 0xfffbc000, where KVM may put its own private slots
 * (APIC access page, real-mode identity map) on Intel.
 */
#define NR_BARS 2
#define BAR_POSITIONS 4
#define BAR_WINDOW_GPA 0xC0000000u
#define BAR_STRIDE 0x100000u
#define BAR_PAGES 4
#define BAR_SIZE (BAR_PAGES * PAGE_SIZE)

/* Three pages for Intel's real-mode TSS, never used by this guest. */
#define TSS_GPA 0xfffbd000u

/* Creates per libmemslot transaction when the slots are built. */
#define TXN_BATCH 1024

/* DMA requests the plan aims for, whatever the slot count. */
#define DMA_TARGET 200

#define MAX_ARGS 8
#define NONE (-1)

/*
 * Where each BAR is after each sync step (a position, or NONE).  Step 0
 * is the layout the guest starts with.  The steps cover a move, a create,
 * two moves in one transaction, a delete, a create, a delete plus a move
 * into the place it frees (KVM accepts that only if the delete comes
 * first, as the change list orders it), a move plus a create, and both
 * deletes at once.  No step moves a BAR into a place another one leaves
 * by moving: KVM would need those moves in a certain order, and cycles
 * of them broken through a free place, which the change list leaves to
 * the VMM.
 */
static const int bar_steps[][NR_BARS] = {
	{ 0, NONE },
	{ 1, NONE },
	{ 1, 0 },
	{ 2, 3 },
	{ NONE, 3 },
	{ NONE, 1 },
	{ 3, 1 },
	{ 1, NONE },
	{ 0, 2 },
	{ NONE, NONE },
};

#define NR_STEPS (sizeof(bar_steps) / sizeof(bar_steps[0]) - 1)

struct guest_op {
	uint32_t kind;
	uint32_t gpa;
	uint32_t len;
	uint32_t arg;
};

/* The ops the guest will run, and which of them the VMM will see. */
struct plan {
	struct guest_op *ops;
	bool *exits;
	size_t nops;
	size_t cap;
	size_t cursor;		/* first op not yet matched to an exit */
};

struct counters {
	uint64_t guest_pages;	/* pages the guest wrote */
	uint64_t dev_pages;	/* pages the device wrote */
	uint64_t dma_requests;
	uint64_t dma_bytes;
	uint64_t guest_bytes;
	uint64_t bar_creates;
	uint64_t bar_moves;
	uint64_t bar_deletes;
	uint64_t mmio_exits;
	uint64_t io_exits;
	uint64_t kvm_dirty;
	uint64_t vmm_dirty;
	uint64_t dirty;
};

struct vmm {
	int kvm_fd;
	int vm_fd;
	int vcpu_fd;
	struct kvm_run *run;
	struct memslot_vm *vm;
	bool quick;
	uint32_t nslots;	/* boot + data + BAR slots */
	uint32_t ndata;
	uint64_t *first_page;	/* data slot k: pages first_page[k]..[k+1] */
	uint64_t data_pages;
	uint8_t *data_mem;
	uint8_t *boot_mem;
	uint64_t boot_bytes;
	uint8_t *bar_mem[NR_BARS];
	uint8_t *guest_wrote;	/* per data page: the guest wrote it */
	uint8_t *dev_wrote;	/* per data page: the device wrote it */
	struct plan plan;
	uint32_t args[MAX_ARGS];
	unsigned int nargs;
	uint64_t rng;
	uint8_t *buf;		/* DMA and check buffer */
	struct counters n;
};

/* The guest's code, assembled from kvm_guest.S. */
extern const unsigned char kvm_guest_code[];
extern const unsigned char kvm_guest_code_end[];

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("kvm_vmm: FAIL: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("SKIP: ", stdout);
	vprintf(fmt, ap);
	putchar('\n');
	va_end(ap);
	exit(77);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (!p)
		die("out of memory");
	return p;
}

static uint8_t *map_anon(uint64_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		die("mmap of %" PRIu64 " bytes: %s", bytes, strerror(errno));
	return p;
}

static uint32_t rnd(struct vmm *v)
{
	v->rng ^= v->rng >> 12;
	v->rng ^= v->rng << 25;
	v->rng ^= v->rng >> 27;
	return (uint32_t)((v->rng * 2685821657736338717ull) >> 32);
}

/* The byte the guest and the device agree on for @gpa and @seed. */
static uint8_t pattern(uint32_t gpa, uint32_t seed)
{
	return (uint8_t)(((gpa ^ seed) * (uint32_t)GUEST_PATTERN_MUL) >> 24);
}

static void pattern_fill(uint8_t *buf, uint32_t gpa, uint32_t len,
			 uint32_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		buf[i] = pattern(gpa + i, seed);
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- KVM setup ------------------------------------------------------- */

static const char *kvm_path(void)
{
	const char *p = getenv("MEMSLOT_KVM_DEV");

	return p && *p ? p : "/dev/kvm";
}

static int kvm_cap(int fd, long cap)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

/* Open KVM and create the VM; any reason KVM is not usable is a skip. */
static void kvm_open(struct vmm *v)
{
	v->kvm_fd = open(kvm_path(), O_RDWR | O_CLOEXEC);
	if (v->kvm_fd < 0) {
		if (errno == ENOENT || errno == EACCES || errno == ENODEV ||
		    errno == ENXIO || errno == EPERM)
			skip("cannot open %s: %s", kvm_path(), strerror(errno));
		die("open %s: %s", kvm_path(), strerror(errno));
	}
	if (ioctl(v->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		skip("%s is not a KVM device of API version %d", kvm_path(),
		     KVM_API_VERSION);
	do
		v->vm_fd = ioctl(v->kvm_fd, KVM_CREATE_VM, 0);
	while (v->vm_fd < 0 && errno == EINTR);
	if (v->vm_fd < 0)
		skip("KVM_CREATE_VM on %s failed: %s", kvm_path(),
		     strerror(errno));
	if (!kvm_cap(v->vm_fd, KVM_CAP_USER_MEMORY))
		skip("%s lacks KVM_CAP_USER_MEMORY", kvm_path());
	/* Intel without unrestricted guest wants it before any vCPU. */
	if (ioctl(v->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)TSS_GPA) < 0)
		die("KVM_SET_TSS_ADDR: %s", strerror(errno));
}

/* Flat 4 GiB segment: base 0, limit 4 GiB - 1, 32-bit, page granular. */
static void flat_segment(struct kvm_segment *s, uint16_t selector,
			 uint8_t type)
{
	memset(s, 0, sizeof(*s));
	s->limit = 0xffffffff;
	s->selector = selector;
	s->type = type;
	s->present = 1;
	s->db = 1;
	s->s = 1;
	s->g = 1;
}

/*
 * Enter 32-bit protected mode directly: KVM takes the hidden segment
 * state from here, so the guest needs no GDT as long as it never loads a
 * segment register.  No IDT either: any exception is a triple fault,
 * which KVM reports as KVM_EXIT_SHUTDOWN.
 */
static void vcpu_set_protected_mode(struct vmm *v)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(v->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		die("KVM_GET_SREGS: %s", strerror(errno));
	flat_segment(&sregs.cs, 0x08, 11);	/* code, execute/read, accessed */
	flat_segment(&sregs.ds, 0x10, 3);	/* data, read/write, accessed */
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	/* PE on; caching on (CD and NW off), as firmware would leave it. */
	sregs.cr0 = (sregs.cr0 | 1u) & ~((1u << 30) | (1u << 29));
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(v->vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		die("KVM_SET_SREGS: %s", strerror(errno));

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;	/* bit 1 is always set; interrupts off */
	regs.rip = GUEST_CODE_GPA;
	regs.rsp = GUEST_STACK_TOP;
	regs.rsi = GUEST_PLAN_GPA;
	if (ioctl(v->vcpu_fd, KVM_SET_REGS, &regs) < 0)
		die("KVM_SET_REGS: %s", strerror(errno));
}

static void vcpu_create(struct vmm *v)
{
	int size;
	void *run;

	v->vcpu_fd = ioctl(v->vm_fd, KVM_CREATE_VCPU, 0);
	if (v->vcpu_fd < 0)
		die("KVM_CREATE_VCPU: %s", strerror(errno));
	size = ioctl(v->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (size < (int)sizeof(struct kvm_run))
		die("KVM_GET_VCPU_MMAP_SIZE: %d", size);
	run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   v->vcpu_fd, 0);
	if (run == MAP_FAILED)
		die("mmap of kvm_run: %s", strerror(errno));
	v->run = run;
	vcpu_set_protected_mode(v);
}

/* ---- libmemslot, and mirroring its changes to KVM -------------------- */

/* Returns the user slots the library allows: KVM's count, or fewer. */
static uint32_t library_create(struct vmm *v, uint32_t user_slots)
{
	struct memslot_config cfg;
	int ret;

	memslot_config_init_x86_64(&cfg);
	if (user_slots < cfg.user_slots)
		cfg.user_slots = user_slots;
	ret = memslot_vm_create(&cfg, &v->vm);
	if (ret)
		die("memslot_vm_create: %s", memslot_strerror(ret));
	/* This thread looks slots up (DMA, MMIO exits): it is a reader. */
	memslot_thread_register(v->vm);
	return cfg.user_slots;
}

static uint32_t kvm_flags(uint32_t flags)
{
	uint32_t k = 0;

	if (flags & MEMSLOT_MEM_LOG_DIRTY_PAGES)
		k |= KVM_MEM_LOG_DIRTY_PAGES;
	if (flags & MEMSLOT_MEM_READONLY)
		k |= KVM_MEM_READONLY;
	return k;
}

static const char *change_name(enum memslot_change c)
{
	static const char *const names[] = {
		"none", "create", "delete", "move", "flags",
	};

	return (unsigned int)c < 5 ? names[c] : "?";
}

/*
 * One net change, as KVM_SET_USER_MEMORY_REGION: a delete is the old
 * region with size 0; create, move and flags changes are the new region
 * (KVM tells a move from a create by the slot id it already has).
 */
static void kvm_apply_change(struct vmm *v, const struct memslot_change_info *c)
{
	bool del = c->change == MEMSLOT_CHANGE_DELETE;
	const struct memslot_region *r = del ? &c->old_region : &c->new_region;
	struct kvm_userspace_memory_region k = {
		.slot = r->slot,
		.flags = kvm_flags(r->flags),
		.guest_phys_addr = r->guest_phys_addr,
		.memory_size = del ? 0 : r->memory_size,
		.userspace_addr = r->userspace_addr,
	};

	if (ioctl(v->vm_fd, KVM_SET_USER_MEMORY_REGION, &k) < 0)
		die("KVM_SET_USER_MEMORY_REGION (%s of slot %" PRIu32
		    " at %#" PRIx64 "): %s", change_name(c->change), r->slot,
		    r->guest_phys_addr, strerror(errno));
}

/*
 * Apply @n requests to libmemslot as one transaction, then replay its
 * change list on KVM in the list's order (deletes first, then flag
 * changes, moves and creates), so a slot that moves into a place another
 * one leaves finds it free in KVM too.
 */
static void apply_txn(struct vmm *v, const struct memslot_region *req,
		      size_t n)
{
	struct memslot_change_info *changes;
	struct memslot_txn_result res = { .max_changes = n };
	int ret;

	if (!n)
		return;
	changes = xcalloc(n, sizeof(*changes));
	res.changes = changes;
	ret = memslot_set_regions(v->vm, req, n, &res);
	if (ret)
		die("memslot_set_regions: request %zu of %zu: %s (%s)",
		    res.failed, n, memslot_strerror(ret),
		    memslot_rule_str(res.rule));
	if (res.nchanges > n)
		die("%zu changes from %zu requests", res.nchanges, n);
	for (size_t i = 0; i < res.nchanges; i++)
		kvm_apply_change(v, &changes[i]);
	free(changes);
}

/* ---- the slot layout ------------------------------------------------- */

static uint32_t data_slot_id(uint32_t k)
{
	return 1 + k;
}

static uint32_t bar_slot_id(const struct vmm *v, int bar)
{
	return 1 + v->ndata + (uint32_t)bar;
}

static uint32_t bar_gpa(int pos)
{
	return BAR_WINDOW_GPA + (uint32_t)pos * BAR_STRIDE;
}

/*
 * Data slot k holds 1..MAX_SLOT_PAGES pages; slots follow each other in
 * guest-physical order with no hole, so ranges cross slot boundaries.
 */
static void layout_data(struct vmm *v)
{
	v->first_page = xcalloc(v->ndata + 1, sizeof(*v->first_page));
	for (uint32_t k = 0; k < v->ndata; k++) {
		uint32_t h = (k + 1) * 0x9E3779B1u;

		v->first_page[k + 1] = v->first_page[k] + 1 +
				       (h >> 16) % MAX_SLOT_PAGES;
	}
	v->data_pages = v->first_page[v->ndata];
	v->data_mem = map_anon(v->data_pages << PAGE_SHIFT);
	v->guest_wrote = xcalloc(v->data_pages, 1);
	v->dev_wrote = xcalloc(v->data_pages, 1);
}

/* Slot k's memory sits at the mirrored place of the one mapping. */
static uint8_t *data_slot_hva(const struct vmm *v, uint32_t k)
{
	uint64_t from_end = v->data_pages - v->first_page[k + 1];

	return v->data_mem + (from_end << PAGE_SHIFT);
}

static struct memslot_region data_region(const struct vmm *v, uint32_t k)
{
	uint64_t npages = v->first_page[k + 1] - v->first_page[k];

	return (struct memslot_region){
		.slot = data_slot_id(k),
		.flags = MEMSLOT_MEM_LOG_DIRTY_PAGES,
		.guest_phys_addr = DATA_GPA + (v->first_page[k] << PAGE_SHIFT),
		.memory_size = npages << PAGE_SHIFT,
		.userspace_addr = (uintptr_t)data_slot_hva(v, k),
	};
}

/* A BAR at @pos, or (NONE) the request that deletes it. */
static struct memslot_region bar_region(const struct vmm *v, int bar, int pos)
{
	return (struct memslot_region){
		.slot = bar_slot_id(v, bar),
		.guest_phys_addr = pos == NONE ? 0 : bar_gpa(pos),
		.memory_size = pos == NONE ? 0 : BAR_SIZE,
		.userspace_addr = (uintptr_t)v->bar_mem[bar],
	};
}

/* BAR memory holds a pattern by offset, so it reads the same anywhere. */
static uint32_t bar_seed(int bar)
{
	return 0xBA500000u + (uint32_t)bar;
}

static void bar_reset(struct vmm *v, int bar, uint32_t off, uint32_t len)
{
	pattern_fill(v->bar_mem[bar] + off, off, len, bar_seed(bar));
}

static uint32_t bar_dword(const struct vmm *v, int bar, uint32_t off)
{
	uint32_t d;

	memcpy(&d, v->bar_mem[bar] + off, sizeof(d));
	return d;
}

/* The dword at @off of a BAR whose memory nobody has written. */
static uint32_t bar_pattern32(int bar, uint32_t off)
{
	uint8_t b[4];
	uint32_t d;

	pattern_fill(b, off, 4, bar_seed(bar));
	memcpy(&d, b, sizeof(d));
	return d;
}

/* Create the boot slot, every data slot and the BARs of step 0. */
static void slots_create(struct vmm *v)
{
	struct memslot_region *req = xcalloc(TXN_BATCH, sizeof(*req));
	size_t n = 0;

	req[n++] = (struct memslot_region){
		.slot = 0,
		.memory_size = v->boot_bytes,
		.userspace_addr = (uintptr_t)v->boot_mem,
	};
	for (uint32_t k = 0; k < v->ndata; k++) {
		if (n == TXN_BATCH) {
			apply_txn(v, req, n);
			n = 0;
		}
		req[n++] = data_region(v, k);
	}
	apply_txn(v, req, n);
	n = 0;
	for (int b = 0; b < NR_BARS; b++)
		if (bar_steps[0][b] != NONE)
			req[n++] = bar_region(v, b, bar_steps[0][b]);
	apply_txn(v, req, n);
	free(req);
}

/* ---- the plan -------------------------------------------------------- */

static struct guest_op *plan_add(struct plan *p, uint32_t kind, uint32_t gpa,
				 uint32_t len, uint32_t arg, bool exits)
{
	if (p->nops == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 4096;
		p->ops = realloc(p->ops, p->cap * sizeof(*p->ops));
		p->exits = realloc(p->exits, p->cap * sizeof(*p->exits));
		if (!p->ops || !p->exits)
			die("out of memory");
	}
	p->exits[p->nops] = exits;
	p->ops[p->nops] = (struct guest_op){ kind, gpa, len, arg };
	return &p->ops[p->nops++];
}

static int bar_at(unsigned int step, int pos)
{
	for (int b = 0; b < NR_BARS; b++)
		if (bar_steps[step][b] == pos)
			return b;
	return NONE;
}

/* Where round @step probes position @pos: a dword-aligned BAR offset. */
static uint32_t probe_offset(unsigned int step, int pos)
{
	uint32_t page = (step * 7 + (uint32_t)pos * 3) % BAR_PAGES;
	uint32_t byte = (step * 52 + (uint32_t)pos * 12) % (PAGE_SIZE - 8);

	return page * PAGE_SIZE + (byte & ~3u);
}

/* The value round @step stores at @pos: never what the BAR holds. */
static uint32_t probe_value(unsigned int step, int pos)
{
	int bar = bar_at(step, pos);

	if (bar == NONE)
		return 0x5A000000u | step << 8 | (uint32_t)pos;
	return ~bar_pattern32(bar, probe_offset(step, pos) + 4);
}

/*
 * After sync @step, the guest reads one dword of every position and
 * writes the next one: a BAR answers from its memory, an empty position
 * must exit to the VMM.
 */
static void plan_bar_round(struct vmm *v, unsigned int step)
{
	for (int pos = 0; pos < BAR_POSITIONS; pos++) {
		int bar = bar_at(step, pos);
		uint32_t off = probe_offset(step, pos);
		uint32_t gpa = bar_gpa(pos) + off;
		uint32_t want = bar == NONE ? GUEST_MMIO_READ_VALUE
					    : bar_pattern32(bar, off);

		plan_add(&v->plan, GUEST_OP_READ32, gpa, 4, want, bar == NONE);
		plan_add(&v->plan, GUEST_OP_WRITE32, gpa + 4, 4,
			 probe_value(step, pos), bar == NONE);
	}
}

static void mark_pages(uint8_t *set, uint32_t gpa, uint32_t len)
{
	uint64_t first = (gpa - DATA_GPA) >> PAGE_SHIFT;
	uint64_t last = (gpa - DATA_GPA + len - 1) >> PAGE_SHIFT;

	memset(set + first, 1, last - first + 1);
}

/* One range op: who writes it decides which page set it joins. */
static void plan_range(struct vmm *v, uint32_t gpa, uint32_t len,
		       uint32_t dma_every)
{
	uint32_t kind = GUEST_OP_FILL, seed = rnd(v);

	if (rnd(v) % dma_every == 0)
		kind = rnd(v) & 1 ? GUEST_OP_DMA_IN : GUEST_OP_DMA_OUT;
	plan_add(&v->plan, kind, gpa, len, seed, kind != GUEST_OP_FILL);
	mark_pages(kind == GUEST_OP_DMA_IN ? v->dev_wrote : v->guest_wrote,
		   gpa, len);
	if (kind == GUEST_OP_DMA_IN || kind == GUEST_OP_DMA_OUT) {
		v->n.dma_requests++;
		v->n.dma_bytes += len;
	}
	if (kind != GUEST_OP_DMA_IN)
		v->n.guest_bytes += len;
}

/*
 * Ranges over data bytes [@from, @to): up to three pages long, so most
 * cross slots; gaps of up to 512 bytes, or now and then of whole pages,
 * so some pages stay clean.
 *
 * With --quick the ranges are short (2-256 bytes), 8-31 pages apart, and
 * each straddles a page boundary (often a slot's).  The guest's byte loop
 * is what a KVM that emulates this guest (a nested one, say) pays for by
 * the byte, so --quick keeps every kind of crossing at a few percent of
 * the bytes.
 */
static uint64_t next_range(struct vmm *v, uint64_t at, uint32_t *len)
{
	uint32_t gap;

	if (v->quick) {
		uint64_t page = (at >> PAGE_SHIFT) + 8 + rnd(v) % 24;

		*len = 2 + rnd(v) % 255;
		return (page << PAGE_SHIFT) - (1 + rnd(v) % (*len - 1));
	}
	gap = rnd(v) % 8 ? rnd(v) % 512 : PAGE_SIZE * (1 + rnd(v) % 3);
	*len = 1 + rnd(v) % (MAX_SLOT_PAGES * PAGE_SIZE);
	return at + gap;
}

static void plan_data(struct vmm *v, uint64_t from, uint64_t to,
		      uint32_t dma_every)
{
	uint64_t at = from;

	for (;;) {
		uint32_t len;
		uint64_t start = next_range(v, at, &len);

		if (start + len > to)
			break;
		plan_range(v, DATA_GPA + (uint32_t)start, len, dma_every);
		at = start + len;
	}
}

static void plan_build(struct vmm *v)
{
	uint64_t bytes = v->data_pages << PAGE_SHIFT;
	uint64_t chunk = bytes / (NR_STEPS + 1);
	/* About two pages per range, or twenty with --quick's gaps. */
	uint64_t est_ops = v->data_pages / (v->quick ? 20 : 2);
	uint32_t dma_every = (uint32_t)(est_ops / DMA_TARGET) + 1;

	plan_bar_round(v, 0);
	for (unsigned int step = 1; step <= NR_STEPS; step++) {
		plan_data(v, (step - 1) * chunk, step * chunk, dma_every);
		plan_add(&v->plan, GUEST_OP_SYNC, step, 0, 0, true);
		plan_bar_round(v, step);
	}
	plan_data(v, NR_STEPS * chunk, bytes, dma_every);
	/* One more sync checks the last round's BAR stores. */
	plan_add(&v->plan, GUEST_OP_SYNC, NR_STEPS + 1, 0, 0, true);
	plan_add(&v->plan, GUEST_OP_END, 0, 0, 0, false);
	for (uint64_t i = 0; i < v->data_pages; i++) {
		v->n.guest_pages += v->guest_wrote[i];
		v->n.dev_pages += v->dev_wrote[i];
	}
}

/* The boot slot: code at GUEST_CODE_GPA, stack below, then the plan. */
static void boot_image(struct vmm *v)
{
	size_t code = (size_t)(kvm_guest_code_end - kvm_guest_code);
	uint64_t plan_bytes = v->plan.nops * sizeof(struct guest_op);
	uint64_t end = GUEST_PLAN_GPA + plan_bytes;

	v->boot_bytes = (end + PAGE_SIZE - 1) & ~(uint64_t)(PAGE_SIZE - 1);
	if (v->boot_bytes > DATA_GPA)
		die("plan of %zu ops does not fit below RAM", v->plan.nops);
	if (GUEST_CODE_GPA + code > GUEST_STACK_TOP - 1024)
		die("guest code of %zu bytes overlaps its stack", code);
	v->boot_mem = map_anon(v->boot_bytes);
	memcpy(v->boot_mem + GUEST_CODE_GPA, kvm_guest_code, code);
	memcpy(v->boot_mem + GUEST_PLAN_GPA, v->plan.ops, plan_bytes);
}

/* ---- exits ----------------------------------------------------------- */

static const char *op_name(uint32_t kind)
{
	static const char *const names[] = {
		"end", "fill", "dma-in", "dma-out", "sync", "read32", "write32",
	};

	return kind < 7 ? names[kind] : "?";
}

/*
 * The guest runs the plan in order, so its exits come in plan order:
 * each one must be the next op the plan marked as exiting.
 */
static const struct guest_op *next_exit(struct vmm *v, const char *what)
{
	struct plan *p = &v->plan;

	while (p->cursor < p->nops && !p->exits[p->cursor])
		p->cursor++;
	if (p->cursor == p->nops)
		die("the guest made a %s exit after its last expected one",
		    what);
	return &p->ops[p->cursor++];
}

static void expect_op(const struct guest_op *op, uint32_t kind,
		      const char *what, uint32_t gpa)
{
	if (op->kind != kind || op->gpa != gpa)
		die("guest exit: %s at %#" PRIx32 ", but the plan expects %s at %#"
		    PRIx32, what, gpa, op_name(op->kind), op->gpa);
}

/* The device writes the pattern through libmemslot, marking it dirty. */
static void dma_to_guest(struct vmm *v, uint32_t gpa, uint32_t len,
			 uint32_t seed)
{
	struct memslot_view *view;
	size_t done = 0;
	int ret;

	pattern_fill(v->buf, gpa, len, seed);
	memslot_read_lock(v->vm);
	view = memslot_view_get(v->vm, 0);
	ret = memslot_view_write(view, gpa, v->buf, len,
				 MEMSLOT_ACCESS_MARK_DIRTY, &done);
	memslot_read_unlock(v->vm);
	if (ret || done != len)
		die("DMA write of %" PRIu32 " bytes at %#" PRIx32 ": %s after %zu",
		    len, gpa, memslot_strerror(ret), done);
}

/* Compare @len bytes at @gpa in @buf with the pattern; report a miss. */
static void check_bytes(const uint8_t *buf, uint32_t gpa, uint32_t len,
			uint32_t seed, bool zero, const char *who)
{
	uint64_t bad = 0, first = 0;

	for (uint32_t i = 0; i < len; i++) {
		uint8_t want = zero ? 0 : pattern(gpa + i, seed);

		if (buf[i] != want && !bad++)
			first = i;
	}
	if (bad)
		die("%s: %" PRIu64 " of %" PRIu32 " bytes at %#" PRIx32
		    " differ; first at %#" PRIx64 ": %#x, want %#x", who, bad,
		    len, gpa, gpa + first, buf[first],
		    zero ? 0 : pattern(gpa + (uint32_t)first, seed));
}

static void guest_read(struct vmm *v, uint32_t gpa, uint32_t len)
{
	size_t done = 0;
	int ret;

	memslot_read_lock(v->vm);
	ret = memslot_guest_read(v->vm, 0, gpa, v->buf, len, &done);
	memslot_read_unlock(v->vm);
	if (ret || done != len)
		die("read of %" PRIu32 " bytes at %#" PRIx32 ": %s after %zu",
		    len, gpa, memslot_strerror(ret), done);
}

/* The device reads what the guest wrote and checks every byte. */
static void dma_from_guest(struct vmm *v, uint32_t gpa, uint32_t len,
			   uint32_t seed)
{
	guest_read(v, gpa, len);
	check_bytes(v->buf, gpa, len, seed, false, "DMA read of guest data");
}

static void serve_dma(struct vmm *v, uint32_t cmd)
{
	uint32_t kind = cmd == GUEST_CMD_DMA_TO_GUEST ? GUEST_OP_DMA_IN
						      : GUEST_OP_DMA_OUT;
	const struct guest_op *op;

	if (v->nargs != 3)
		die("DMA command with %u arguments", v->nargs);
	op = next_exit(v, "DMA");
	expect_op(op, kind, op_name(kind), v->args[0]);
	if (op->len != v->args[1] || op->arg != v->args[2])
		die("DMA request at %#" PRIx32 ": length %" PRIu32 " seed %#"
		    PRIx32 ", the plan says %" PRIu32 " and %#" PRIx32,
		    op->gpa, v->args[1], v->args[2], op->len, op->arg);
	if (kind == GUEST_OP_DMA_IN)
		dma_to_guest(v, op->gpa, op->len, op->arg);
	else
		dma_from_guest(v, op->gpa, op->len, op->arg);
}

/*
 * The stores of round @step: into a BAR they must have reached its
 * memory (then undone); no other BAR byte may have changed, whatever
 * the guest stored at places the BAR had left.
 */
static void check_bar_stores(struct vmm *v, unsigned int step)
{
	uint8_t *want = xcalloc(BAR_SIZE, 1);

	for (int pos = 0; pos < BAR_POSITIONS; pos++) {
		int bar = bar_at(step, pos);
		uint32_t off = probe_offset(step, pos) + 4;

		if (bar == NONE)
			continue;
		if (bar_dword(v, bar, off) != probe_value(step, pos))
			die("step %u: the guest's store to the BAR at %#" PRIx32
			    " is not in BAR %d's memory", step,
			    bar_gpa(pos) + off, bar);
		bar_reset(v, bar, off, 4);
	}
	for (int bar = 0; bar < NR_BARS; bar++) {
		pattern_fill(want, 0, BAR_SIZE, bar_seed(bar));
		if (memcmp(want, v->bar_mem[bar], BAR_SIZE))
			die("step %u: BAR %d's memory changed behind its back",
			    step, bar);
	}
	free(want);
}

static void count_bar_change(struct vmm *v, int from, int to)
{
	if (from == NONE)
		v->n.bar_creates++;
	else if (to == NONE)
		v->n.bar_deletes++;
	else
		v->n.bar_moves++;
}

/*
 * Move, create or delete the BARs as step @step says, in one transaction.
 * The library checks each request against the layout the ones before it
 * leave, so deletes go first: a BAR may then move into a place another
 * one leaves in the same step.
 */
static void bar_step(struct vmm *v, unsigned int step)
{
	struct memslot_region req[NR_BARS];
	size_t n = 0;

	for (int pass = 0; pass < 2; pass++) {
		for (int b = 0; b < NR_BARS; b++) {
			int from = bar_steps[step - 1][b];
			int to = bar_steps[step][b];

			if (from == to || (to == NONE) != (pass == 0))
				continue;
			req[n++] = bar_region(v, b, to);
			count_bar_change(v, from, to);
		}
	}
	apply_txn(v, req, n);
}

static void serve_sync(struct vmm *v)
{
	const struct guest_op *op;
	uint32_t step;

	if (v->nargs != 1)
		die("sync command with %u arguments", v->nargs);
	step = v->args[0];
	op = next_exit(v, "sync");
	expect_op(op, GUEST_OP_SYNC, "sync", step);
	check_bar_stores(v, step - 1);
	if (step <= NR_STEPS)
		bar_step(v, step);
}

static void guest_failed(struct vmm *v)
{
	if (v->nargs != 4)
		die("guest failure report with %u arguments", v->nargs);
	die("the guest read %#" PRIx32 " at gpa %#" PRIx32 " where it wanted %#"
	    PRIx32 " (plan op %" PRIu32 ", %s)", v->args[1], v->args[0],
	    v->args[2], v->args[3],
	    v->args[3] < v->plan.nops ? op_name(v->plan.ops[v->args[3]].kind)
				      : "?");
}

/* A command from the guest; returns true when the plan is done. */
static bool serve_command(struct vmm *v, uint32_t cmd)
{
	bool done = false;

	switch (cmd) {
	case GUEST_CMD_DMA_TO_GUEST:
	case GUEST_CMD_DMA_FROM_GUEST:
		serve_dma(v, cmd);
		break;
	case GUEST_CMD_SYNC:
		serve_sync(v);
		break;
	case GUEST_CMD_FAIL:
		guest_failed(v);
		break;
	case GUEST_CMD_DONE:
		while (v->plan.cursor < v->plan.nops)
			if (v->plan.exits[v->plan.cursor++])
				die("the guest finished before plan op %zu (%s)",
				    v->plan.cursor - 1,
				    op_name(v->plan.ops[v->plan.cursor - 1].kind));
		done = true;
		break;
	default:
		die("unknown guest command %" PRIu32, cmd);
	}
	v->nargs = 0;
	return done;
}

static bool handle_io(struct vmm *v)
{
	struct kvm_run *run = v->run;
	uint32_t value;

	v->n.io_exits++;
	if (run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4 ||
	    run->io.count != 1)
		die("unexpected port access: port %#x, size %u, count %u, %s",
		    run->io.port, run->io.size, run->io.count,
		    run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in");
	memcpy(&value, (const char *)run + run->io.data_offset, 4);
	if (run->io.port == GUEST_PORT_CMD)
		return serve_command(v, value);
	if (run->io.port != GUEST_PORT_ARG)
		die("write to unknown port %#x", run->io.port);
	if (v->nargs == MAX_ARGS)
		die("more than %d arguments pushed", MAX_ARGS);
	v->args[v->nargs++] = value;
	return false;
}

/*
 * An access KVM could not resolve to memory.  As a VMM would, look the
 * gpa up in libmemslot first: a slot there would mean KVM and the library
 * disagree.  Then it must be the probe the plan expects.
 */
static void handle_mmio(struct vmm *v)
{
	struct kvm_run *run = v->run;
	uint64_t gpa = run->mmio.phys_addr;
	const struct memslot_slot *slot;
	const struct guest_op *op;
	uint32_t value;

	v->n.mmio_exits++;
	memslot_read_lock(v->vm);
	slot = memslot_gfn_to_slot(v->vm, 0, gpa >> PAGE_SHIFT);
	memslot_read_unlock(v->vm);
	if (slot)
		die("MMIO exit at %#" PRIx64 ", where libmemslot has a slot", gpa);
	if (run->mmio.len != 4)
		die("MMIO exit of %u bytes at %#" PRIx64, run->mmio.len, gpa);
	op = next_exit(v, "MMIO");
	expect_op(op, run->mmio.is_write ? GUEST_OP_WRITE32 : GUEST_OP_READ32,
		  run->mmio.is_write ? "MMIO write" : "MMIO read",
		  (uint32_t)gpa);
	if (!run->mmio.is_write) {
		value = GUEST_MMIO_READ_VALUE;
		memcpy(run->mmio.data, &value, 4);
		return;
	}
	memcpy(&value, run->mmio.data, 4);
	if (value != op->arg)
		die("MMIO write of %#" PRIx32 " at %#" PRIx64 ", want %#" PRIx32,
		    value, gpa, op->arg);
}

static void guest_crashed(struct vmm *v, const char *why)
{
	struct kvm_regs regs;

	if (ioctl(v->vcpu_fd, KVM_GET_REGS, &regs) < 0)
		die("%s (and KVM_GET_REGS failed: %s)", why, strerror(errno));
	die("%s: rip %#llx rsi %#llx rdi %#llx rsp %#llx", why, regs.rip,
	    regs.rsi, regs.rdi, regs.rsp);
}

static void run_guest(struct vmm *v)
{
	struct kvm_run *run = v->run;

	for (;;) {
		if (ioctl(v->vcpu_fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("KVM_RUN: %s", strerror(errno));
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (handle_io(v))
				return;
			break;
		case KVM_EXIT_MMIO:
			handle_mmio(v);
			break;
		case KVM_EXIT_HLT:
			guest_crashed(v, "the guest halted before it was done");
			break;
		case KVM_EXIT_SHUTDOWN:
			guest_crashed(v, "the guest triple-faulted");
			break;
		case KVM_EXIT_FAIL_ENTRY:
			die("KVM could not enter the guest: reason %#llx",
			    (unsigned long long)
			    run->fail_entry.hardware_entry_failure_reason);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			die("KVM internal error, suberror %u",
			    run->internal.suberror);
			break;
		default:
			die("unexpected exit reason %u", run->exit_reason);
		}
	}
}

/* ---- final checks ---------------------------------------------------- */

#define CHECK_CHUNK (64 * PAGE_SIZE)

/* [@gpa, @gpa + @len) must hold the pattern of @seed, or zeros. */
static void check_span(struct vmm *v, uint32_t gpa, uint32_t len,
		       uint32_t seed, bool zero)
{
	while (len) {
		uint32_t n = len < CHECK_CHUNK ? len : CHECK_CHUNK;

		guest_read(v, gpa, n);
		check_bytes(v->buf, gpa, n, seed, zero, "guest RAM");
		gpa += n;
		len -= n;
	}
}

/*
 * Read all guest RAM back through libmemslot: each range holds its
 * pattern (written by the guest through KVM's map, or by the device
 * through the library's), every other byte is still zero.
 */
static void check_ram(struct vmm *v)
{
	uint32_t at = DATA_GPA;
	uint32_t end = DATA_GPA + (uint32_t)(v->data_pages << PAGE_SHIFT);

	for (size_t i = 0; i < v->plan.nops; i++) {
		const struct guest_op *op = &v->plan.ops[i];

		if (op->kind != GUEST_OP_FILL && op->kind != GUEST_OP_DMA_IN &&
		    op->kind != GUEST_OP_DMA_OUT)
			continue;
		check_span(v, at, op->gpa - at, 0, true);
		check_span(v, op->gpa, op->len, op->arg, false);
		at = op->gpa + op->len;
	}
	check_span(v, at, end - at, 0, true);
}

static uint64_t page_bits(const uint8_t *set, uint64_t first, uint64_t n)
{
	uint64_t bits = 0;

	for (uint64_t i = 0; i < n; i++)
		bits |= (uint64_t)set[first + i] << i;
	return bits;
}

/* How many slots may differ before the report stops listing them. */
#define MAX_REPORTED 10

/* Bitmaps print in hex (bit i: page i of the slot), counts in decimal. */
static void dirty_mismatch(uint32_t id, const char *what, uint64_t got,
			   uint64_t want, bool count, unsigned int *bad)
{
	if (got == want || (*bad)++ >= MAX_REPORTED)
		return;
	if (count)
		fprintf(stderr, "kvm_vmm: slot %" PRIu32 ": %s %" PRIu64
			", expected %" PRIu64 "\n", id, what, got, want);
	else
		fprintf(stderr, "kvm_vmm: slot %" PRIu32 ": %s %#" PRIx64
			", expected %#" PRIx64 "\n", id, what, got, want);
}

/*
 * Data slot @k.  KVM's log holds every page the guest wrote; it may also
 * hold pages the guest only read after the device wrote them: KVM maps a
 * page writable on a read fault when the host page is writable, and
 * counts it dirty then.  libmemslot's log holds exactly the device's
 * pages.  Merged (KVM's bitmap ORed into the library's, then one
 * harvest) they must be exactly the union.  Slots have at most 3 pages:
 * one bitmap word.
 */
static void check_slot_dirty(struct vmm *v, uint32_t k, unsigned int *bad)
{
	uint32_t id = data_slot_id(k);
	uint64_t first = v->first_page[k];
	uint64_t npages = v->first_page[k + 1] - first;
	uint64_t want_g = page_bits(v->guest_wrote, first, npages);
	uint64_t want_d = page_bits(v->dev_wrote, first, npages);
	uint64_t kbits = 0, ubits = 0, count = 0;
	struct kvm_dirty_log log = { .slot = id, .dirty_bitmap = &kbits };
	int ret;

	if (ioctl(v->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		die("KVM_GET_DIRTY_LOG of slot %" PRIu32 ": %s", id,
		    strerror(errno));
	ret = memslot_dirty_count(v->vm, id, &count);
	if (!ret)
		ret = memslot_dirty_merge(v->vm, id, &kbits);
	if (!ret)
		ret = memslot_get_dirty_log(v->vm, id, &ubits);
	if (ret)
		die("dirty log of slot %" PRIu32 ": %s", id,
		    memslot_strerror(ret));
	dirty_mismatch(id, "guest-written pages missing from KVM's dirty log",
		       want_g & ~kbits, 0, false, bad);
	dirty_mismatch(id, "pages nobody wrote in KVM's dirty log",
		       kbits & ~(want_g | want_d), 0, false, bad);
	dirty_mismatch(id, "dirty pages in libmemslot's log (device writes)",
		       count, (uint64_t)__builtin_popcountll(want_d), true, bad);
	dirty_mismatch(id, "merged dirty log", ubits, want_g | want_d, false,
		       bad);
	v->n.kvm_dirty += (uint64_t)__builtin_popcountll(kbits);
	v->n.vmm_dirty += count;
	v->n.dirty += (uint64_t)__builtin_popcountll(ubits);
}

static void check_dirty(struct vmm *v)
{
	unsigned int bad = 0;

	for (uint32_t k = 0; k < v->ndata; k++)
		check_slot_dirty(v, k, &bad);
	if (bad)
		die("%u dirty-log mismatches", bad);
}

/* ---- main ------------------------------------------------------------ */

static void usage(void)
{
	fprintf(stderr, "usage: kvm_vmm [--quick] [SLOTS]\n"
		"  SLOTS: memory slots to use (default 509; at most what KVM allows)\n"
		"  --quick: short ranges across page boundaries, pages apart (a few percent\n"
		"           of the bytes)\n");
	exit(2);
}

static uint32_t parse_args(struct vmm *v, int argc, char **argv)
{
	unsigned long wanted = 509;

	for (int i = 1; i < argc; i++) {
		char *end;

		if (!strcmp(argv[i], "--quick")) {
			v->quick = true;
			continue;
		}
		errno = 0;
		wanted = strtoul(argv[i], &end, 10);
		if (errno || *end || end == argv[i] || wanted < 4 ||
		    wanted > 1u << 20)
			usage();
	}
	return (uint32_t)wanted;
}

static void setup(struct vmm *v, uint32_t wanted)
{
	uint32_t cap;

	kvm_open(v);
	cap = (uint32_t)kvm_cap(v->vm_fd, KVM_CAP_NR_MEMSLOTS);
	if (cap < 4)
		skip("KVM allows only %" PRIu32 " memory slots", cap);
	cap = library_create(v, cap);
	v->nslots = wanted < cap ? wanted : cap;
	if (v->nslots < wanted)
		printf("KVM allows %" PRIu32 " slots per address space: using %"
		       PRIu32 "\n", cap, v->nslots);
	v->ndata = v->nslots - 1 - NR_BARS;
	v->rng = 0x2545F4914F6CDD1Dull ^ v->nslots;
	v->buf = xcalloc(CHECK_CHUNK, 1);
	layout_data(v);
	for (int b = 0; b < NR_BARS; b++) {
		v->bar_mem[b] = map_anon(BAR_SIZE);
		bar_reset(v, b, 0, BAR_SIZE);
	}
	plan_build(v);
	boot_image(v);
	slots_create(v);
	vcpu_create(v);
}

static void summary(const struct vmm *v, double secs)
{
	const struct counters *n = &v->n;

	printf("kvm_vmm: %" PRIu32 " slots (%" PRIu32 " of RAM, %" PRIu64
	       " pages), all checks passed\n", v->nslots, v->ndata,
	       v->data_pages);
	printf("  guest wrote %" PRIu64 " bytes in %" PRIu64 " pages; "
	       "device DMA %" PRIu64 " requests, %" PRIu64 " bytes, %" PRIu64
	       " pages written\n", n->guest_bytes, n->guest_pages,
	       n->dma_requests, n->dma_bytes, n->dev_pages);
	printf("  BARs: %" PRIu64 " moves, %" PRIu64 " creates, %" PRIu64
	       " deletes; %" PRIu64 " MMIO exits, %" PRIu64 " port exits\n",
	       n->bar_moves, n->bar_creates, n->bar_deletes, n->mmio_exits,
	       n->io_exits);
	printf("  dirty pages: %" PRIu64 " merged from KVM's log, %" PRIu64
	       " (guest writes, and device pages the guest read),\n"
	       "  and libmemslot's, %" PRIu64 "; %.2f s in all\n", n->dirty,
	       n->kvm_dirty, n->vmm_dirty, secs);
}

int main(int argc, char **argv)
{
	static struct vmm v;
	struct timespec t0;
	uint32_t wanted = parse_args(&v, argc, argv);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	setup(&v, wanted);
	run_guest(&v);
	check_ram(&v);
	check_dirty(&v);
	summary(&v, seconds_since(&t0));
	memslot_thread_unregister(v.vm);
	memslot_vm_destroy(v.vm);
	return 0;
}
