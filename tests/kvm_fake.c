/* SPDX-License-Identifier: MIT */
/*
 * A stand-in for /dev/kvm, linked into examples/kvm_vmm.c so that the
 * VMM's whole flow (slot mirroring, the exit protocol, DMA, BAR moves, the
 * RAM and dirty-log checks) runs where KVM does not.
 *
 * The program is linked with -Wl,--wrap=ioctl,--wrap=mmap,--wrap=mmap64
 * and run with MEMSLOT_KVM_DEV=/dev/null: ioctls on a descriptor of
 * /dev/null are served here, everything else goes to the C library.  The
 * fake keeps its own slot table with KVM's rules for what the VMM does
 * (create, move, delete, dirty logging; overlaps refused), and instead of
 * executing kvm_guest.S it runs the guest's plan in C, op by op, with the
 * same exits: port writes for arguments and commands, MMIO exits for
 * accesses no slot covers.  It reads the plan and touches guest memory
 * only through its own slot table, so whatever the VMM failed to mirror
 * shows up as a wrong byte or an unexpected exit.
 *
 * MEMSLOT_FAKE_KVM_BUG makes the fake wrong on purpose, to show that the
 * VMM's checks catch it (those runs must fail):
 *	dirty		KVM_GET_DIRTY_LOG loses one dirty page
 *	stale-bar	a deleted slot stays reachable by the guest
 *	lost-byte	one byte of one guest fill is not written
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <linux/kvm.h>

#include "kvm_guest.h"

#define FAKE_SLOTS 32764
#define FAKE_PAGE 4096ull
#define MAX_FD 4096
#define RUN_SIZE (3 * FAKE_PAGE)
#define MAX_OUTS 8

int __real_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off);
void *__real_mmap64(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off);
void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off);

enum role { ROLE_NONE, ROLE_SYSTEM, ROLE_VM, ROLE_VCPU };

struct fslot {
	uint32_t id;
	uint32_t flags;
	uint64_t gpa;
	uint64_t size;
	uint64_t hva;
	uint64_t *dirty;	/* NULL unless KVM_MEM_LOG_DIRTY_PAGES */
};

/* What the guest is doing between two returns of KVM_RUN. */
enum phase { PH_FETCH, PH_OUTS, PH_AFTER, PH_HALTED };

struct guest {
	uint32_t pc;		/* gpa of the current op */
	uint32_t plan;		/* gpa of the first op */
	bool started;
	enum phase phase;
	uint32_t op[4];		/* kind, gpa, len, arg */
	struct { uint16_t port; uint32_t value; } out[MAX_OUTS];
	unsigned int nout, iout;
	bool check_after;	/* DMA_IN: check the range once served */
	bool mmio_read;		/* READ32: compare the MMIO data */
	bool lost_byte_done;
};

static struct {
	enum role role[MAX_FD];
	struct fslot *by_id[FAKE_SLOTS];
	struct fslot **sorted;	/* by gpa */
	size_t nsorted;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_run *run;
	struct guest g;
	const char *bug;
	bool dirty_bug_done;
	struct fslot *ghost;	/* stale-bar: the deleted slot kept */
} fk;

static bool bug(const char *name)
{
	if (!fk.bug) {
		fk.bug = getenv("MEMSLOT_FAKE_KVM_BUG");
		if (!fk.bug)
			fk.bug = "";
	}
	return !strcmp(fk.bug, name);
}

static void fake_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("kvm_fake: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(3);
}

static int fail(int err)
{
	errno = err;
	return -1;
}

static int new_fd(enum role role)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0 || fd >= MAX_FD)
		fake_die("cannot open /dev/null");
	fk.role[fd] = role;
	return fd;
}

/* A descriptor of /dev/null that the fake did not make is "/dev/kvm". */
static enum role role_of(int fd)
{
	struct stat st;

	if (fd < 0 || fd >= MAX_FD)
		return ROLE_NONE;
	if (fk.role[fd] == ROLE_NONE && !fstat(fd, &st) &&
	    S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3))
		fk.role[fd] = ROLE_SYSTEM;
	return fk.role[fd];
}

/* ---- slots ------------------------------------------------------------ */

/* Index of the first slot ending above @gpa. */
static size_t lower_bound(uint64_t gpa)
{
	size_t lo = 0, hi = fk.nsorted;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct fslot *s = fk.sorted[mid];

		if (s->gpa + s->size <= gpa)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct fslot *find_slot(uint64_t gpa)
{
	size_t i = lower_bound(gpa);

	if (i < fk.nsorted && fk.sorted[i]->gpa <= gpa)
		return fk.sorted[i];
	if (fk.ghost && fk.ghost->gpa <= gpa &&
	    gpa < fk.ghost->gpa + fk.ghost->size)
		return fk.ghost;
	return NULL;
}

static bool overlaps(uint64_t gpa, uint64_t size, const struct fslot *self)
{
	size_t i = lower_bound(gpa);

	for (; i < fk.nsorted && fk.sorted[i]->gpa < gpa + size; i++)
		if (fk.sorted[i] != self)
			return true;
	return false;
}

static void sorted_insert(struct fslot *s)
{
	size_t i = lower_bound(s->gpa);

	memmove(&fk.sorted[i + 1], &fk.sorted[i],
		(fk.nsorted - i) * sizeof(*fk.sorted));
	fk.sorted[i] = s;
	fk.nsorted++;
}

static void sorted_remove(struct fslot *s)
{
	size_t i = lower_bound(s->gpa);

	if (i == fk.nsorted || fk.sorted[i] != s)
		fake_die("slot table out of order");
	memmove(&fk.sorted[i], &fk.sorted[i + 1],
		(fk.nsorted - i - 1) * sizeof(*fk.sorted));
	fk.nsorted--;
}

static uint64_t *bitmap_new(uint64_t size)
{
	uint64_t words = (size / FAKE_PAGE + 63) / 64;
	uint64_t *b = calloc(words ? words : 1, 8);

	if (!b)
		fake_die("out of memory");
	return b;
}

static int slot_delete(struct fslot *s)
{
	sorted_remove(s);
	fk.by_id[s->id] = NULL;
	free(s->dirty);
	if (bug("stale-bar") && !fk.ghost) {
		s->dirty = NULL;
		fk.ghost = s;
		return 0;
	}
	free(s);
	return 0;
}

static int slot_create(const struct kvm_userspace_memory_region *r)
{
	struct fslot *s;

	if (overlaps(r->guest_phys_addr, r->memory_size, NULL))
		return fail(EEXIST);
	s = calloc(1, sizeof(*s));
	if (!s)
		fake_die("out of memory");
	*s = (struct fslot){ r->slot, r->flags, r->guest_phys_addr,
			     r->memory_size, r->userspace_addr, NULL };
	if (r->flags & KVM_MEM_LOG_DIRTY_PAGES)
		s->dirty = bitmap_new(r->memory_size);
	fk.by_id[r->slot] = s;
	sorted_insert(s);
	return 0;
}

/* A move or flags change: KVM keeps the bitmap while logging stays on. */
static int slot_modify(struct fslot *s,
		       const struct kvm_userspace_memory_region *r)
{
	if (r->memory_size != s->size || r->userspace_addr != s->hva)
		return fail(EINVAL);
	if (overlaps(r->guest_phys_addr, r->memory_size, s))
		return fail(EEXIST);
	sorted_remove(s);
	s->gpa = r->guest_phys_addr;
	if (!(r->flags & KVM_MEM_LOG_DIRTY_PAGES)) {
		free(s->dirty);
		s->dirty = NULL;
	} else if (!s->dirty) {
		s->dirty = bitmap_new(s->size);
	}
	s->flags = r->flags;
	sorted_insert(s);
	return 0;
}

static int set_region(const struct kvm_userspace_memory_region *r)
{
	struct fslot *s;

	if (r->slot >= FAKE_SLOTS || r->flags & ~KVM_MEM_LOG_DIRTY_PAGES ||
	    (r->memory_size | r->guest_phys_addr | r->userspace_addr) &
	    (FAKE_PAGE - 1))
		return fail(EINVAL);
	s = fk.by_id[r->slot];
	if (!r->memory_size)
		return s ? slot_delete(s) : fail(EINVAL);
	return s ? slot_modify(s, r) : slot_create(r);
}

static int get_dirty_log(struct kvm_dirty_log *log)
{
	struct fslot *s = log->slot < FAKE_SLOTS ? fk.by_id[log->slot] : NULL;
	uint64_t words;

	if (!s || !s->dirty)
		return fail(ENOENT);
	words = (s->size / FAKE_PAGE + 63) / 64;
	if (bug("dirty") && !fk.dirty_bug_done && s->dirty[0]) {
		s->dirty[0] &= s->dirty[0] - 1;
		fk.dirty_bug_done = true;
	}
	memcpy(log->dirty_bitmap, s->dirty, words * 8);
	memset(s->dirty, 0, words * 8);
	return 0;
}

/* ---- guest memory --------------------------------------------------- */

/*
 * Host address of @gpa for @len bytes inside one slot, or NULL; marks the
 * pages dirty in a logging slot when @write.
 */
static uint8_t *guest_ptr(uint32_t gpa, uint32_t *len, bool write)
{
	struct fslot *s = find_slot(gpa);
	uint64_t room;

	if (!s)
		return NULL;
	room = s->gpa + s->size - gpa;
	if (*len > room)
		*len = (uint32_t)room;
	if (write && s->dirty) {
		uint64_t first = (gpa - s->gpa) / FAKE_PAGE;
		uint64_t last = (gpa - s->gpa + *len - 1) / FAKE_PAGE;

		for (uint64_t p = first; p <= last; p++)
			s->dirty[p / 64] |= 1ull << (p % 64);
	}
	return (uint8_t *)(uintptr_t)(s->hva + (gpa - s->gpa));
}

static uint8_t pattern(uint32_t gpa, uint32_t seed)
{
	return (uint8_t)(((gpa ^ seed) * (uint32_t)GUEST_PATTERN_MUL) >> 24);
}

static void queue_out(uint16_t port, uint32_t value)
{
	struct guest *g = &fk.g;

	if (g->nout == MAX_OUTS)
		fake_die("too many port writes in one op");
	g->out[g->nout].port = port;
	g->out[g->nout++].value = value;
}

static void guest_fail(uint32_t gpa, uint32_t got, uint32_t want)
{
	struct guest *g = &fk.g;

	g->nout = g->iout = 0;
	queue_out(GUEST_PORT_ARG, gpa);
	queue_out(GUEST_PORT_ARG, got);
	queue_out(GUEST_PORT_ARG, want);
	queue_out(GUEST_PORT_ARG, (g->pc - g->plan) / GUEST_OP_SIZE);
	queue_out(GUEST_PORT_CMD, GUEST_CMD_FAIL);
	g->phase = PH_OUTS;
	g->check_after = false;
	g->op[0] = GUEST_OP_END;	/* after the report: halt */
}

/* Fill or check the pattern over a range; a hole is a triple fault. */
static bool guest_range(uint32_t gpa, uint32_t len, uint32_t seed,
			bool write)
{
	while (len) {
		uint32_t n = len;
		/*
		 * KVM maps a page writable on a read fault when the host
		 * page is writable, and logs it dirty then: do so for
		 * checks of even pages, so both cases run.
		 */
		bool mark = write || !(gpa / FAKE_PAGE % 2);
		uint8_t *p = guest_ptr(gpa, &n, mark);

		if (!p)
			fake_die("guest range op hits no slot at %#x", gpa);
		for (uint32_t i = 0; i < n; i++) {
			uint8_t want = pattern(gpa + i, seed);

			if (write && bug("lost-byte") && !fk.g.lost_byte_done) {
				fk.g.lost_byte_done = true;
				continue;
			}
			if (write)
				p[i] = want;
			else if (p[i] != want) {
				guest_fail(gpa + i, p[i], want);
				return false;
			}
		}
		gpa += n;
		len -= n;
	}
	return true;
}

static void queue_range(void)
{
	queue_out(GUEST_PORT_ARG, fk.g.op[1]);
	queue_out(GUEST_PORT_ARG, fk.g.op[2]);
	queue_out(GUEST_PORT_ARG, fk.g.op[3]);
}

/* ---- running the plan ----------------------------------------------- */

static void exit_io(uint16_t port, uint32_t value)
{
	struct kvm_run *run = fk.run;

	run->exit_reason = KVM_EXIT_IO;
	run->io.direction = KVM_EXIT_IO_OUT;
	run->io.size = 4;
	run->io.port = port;
	run->io.count = 1;
	run->io.data_offset = FAKE_PAGE;
	memcpy((char *)run + FAKE_PAGE, &value, 4);
}

static void exit_mmio(uint32_t gpa, bool write, uint32_t value)
{
	struct kvm_run *run = fk.run;

	run->exit_reason = KVM_EXIT_MMIO;
	run->mmio.phys_addr = gpa;
	run->mmio.len = 4;
	run->mmio.is_write = write;
	memset(run->mmio.data, 0, sizeof(run->mmio.data));
	if (write)
		memcpy(run->mmio.data, &value, 4);
}

static void fetch_op(void)
{
	struct guest *g = &fk.g;
	uint32_t len = GUEST_OP_SIZE;
	uint8_t *p = guest_ptr(g->pc, &len, false);

	if (!p || len != GUEST_OP_SIZE)
		fake_die("plan op at %#x is not in a slot", g->pc);
	memcpy(g->op, p, sizeof(g->op));
	g->nout = g->iout = 0;
	g->check_after = g->mmio_read = false;
}

/* A dword access: memory if a slot holds it, else an MMIO exit. */
static bool access32(bool write)
{
	struct guest *g = &fk.g;
	uint32_t len = 4, got;
	uint8_t *p = guest_ptr(g->op[1], &len, write);

	if (!p) {
		exit_mmio(g->op[1], write, g->op[3]);
		g->mmio_read = !write;
		return true;
	}
	if (write) {
		memcpy(p, &g->op[3], 4);
		return false;
	}
	memcpy(&got, p, 4);
	if (got != g->op[3])
		guest_fail(g->op[1], got, g->op[3]);
	return false;
}

/* Start the fetched op; true when it exits right away (MMIO). */
static bool start_op(void)
{
	struct guest *g = &fk.g;
	uint32_t *op = g->op;

	g->phase = PH_OUTS;
	switch (op[0]) {
	case GUEST_OP_END:
		queue_out(GUEST_PORT_CMD, GUEST_CMD_DONE);
		return false;
	case GUEST_OP_FILL:
		guest_range(op[1], op[2], op[3], true);
		return false;
	case GUEST_OP_DMA_IN:
		queue_range();
		queue_out(GUEST_PORT_CMD, GUEST_CMD_DMA_TO_GUEST);
		g->check_after = true;
		return false;
	case GUEST_OP_DMA_OUT:
		guest_range(op[1], op[2], op[3], true);
		queue_range();
		queue_out(GUEST_PORT_CMD, GUEST_CMD_DMA_FROM_GUEST);
		return false;
	case GUEST_OP_SYNC:
		queue_out(GUEST_PORT_ARG, op[1]);
		queue_out(GUEST_PORT_CMD, GUEST_CMD_SYNC);
		return false;
	case GUEST_OP_READ32:
	case GUEST_OP_WRITE32:
		return access32(op[0] == GUEST_OP_WRITE32);
	}
	fake_die("unknown plan op %u", op[0]);
	return false;
}

/* What follows the op's exits; false when the guest stops. */
static bool finish_op(void)
{
	struct guest *g = &fk.g;
	uint32_t got;

	if (g->mmio_read) {
		memcpy(&got, fk.run->mmio.data, 4);
		g->mmio_read = false;
		if (got != g->op[3]) {
			guest_fail(g->op[1], got, g->op[3]);
			return true;
		}
	}
	if (g->check_after) {
		g->check_after = false;
		if (!guest_range(g->op[1], g->op[2], g->op[3], false))
			return true;
	}
	if (g->op[0] == GUEST_OP_END) {
		g->phase = PH_HALTED;
		return false;
	}
	g->pc += GUEST_OP_SIZE;
	g->phase = PH_FETCH;
	return true;
}

static int vcpu_run(void)
{
	struct guest *g = &fk.g;

	if (!fk.run)
		return fail(EINVAL);
	if (!g->started) {
		g->plan = g->pc = (uint32_t)fk.regs.rsi;
		g->started = true;
	}
	for (;;) {
		if (g->phase == PH_HALTED) {
			fk.run->exit_reason = KVM_EXIT_HLT;
			return 0;
		}
		if (g->phase == PH_FETCH) {
			fetch_op();
			if (start_op())
				return 0;
		}
		if (g->phase == PH_OUTS && g->iout < g->nout) {
			exit_io(g->out[g->iout].port, g->out[g->iout].value);
			g->iout++;
			return 0;
		}
		if (!finish_op())
			continue;
	}
}

/* ---- the wrapped calls ---------------------------------------------- */

static int system_ioctl(unsigned long req, unsigned long arg)
{
	switch (req) {
	case KVM_GET_API_VERSION:
		return KVM_API_VERSION;
	case KVM_CREATE_VM:
		return new_fd(ROLE_VM);
	case KVM_GET_VCPU_MMAP_SIZE:
		return (int)RUN_SIZE;
	case KVM_CHECK_EXTENSION:
		if (arg == KVM_CAP_NR_MEMSLOTS)
			return FAKE_SLOTS;
		return arg == KVM_CAP_USER_MEMORY;
	}
	return fail(ENOTTY);
}

static int vm_ioctl(unsigned long req, unsigned long arg)
{
	switch (req) {
	case KVM_CHECK_EXTENSION:
		return system_ioctl(req, arg);
	case KVM_SET_TSS_ADDR:
		return 0;
	case KVM_SET_USER_MEMORY_REGION:
		return set_region((const void *)arg);
	case KVM_GET_DIRTY_LOG:
		return get_dirty_log((void *)arg);
	case KVM_CREATE_VCPU:
		return new_fd(ROLE_VCPU);
	}
	return fail(ENOTTY);
}

static int vcpu_ioctl(unsigned long req, unsigned long arg)
{
	switch (req) {
	case KVM_GET_SREGS:
		memcpy((void *)arg, &fk.sregs, sizeof(fk.sregs));
		return 0;
	case KVM_SET_SREGS:
		memcpy(&fk.sregs, (void *)arg, sizeof(fk.sregs));
		return 0;
	case KVM_GET_REGS:
		memcpy((void *)arg, &fk.regs, sizeof(fk.regs));
		return 0;
	case KVM_SET_REGS:
		memcpy(&fk.regs, (void *)arg, sizeof(fk.regs));
		return 0;
	case KVM_RUN:
		return vcpu_run();
	}
	return fail(ENOTTY);
}

int __wrap_ioctl(int fd, unsigned long req, ...)
{
	unsigned long arg;
	va_list ap;

	va_start(ap, req);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	if (!fk.sorted) {
		fk.sorted = calloc(FAKE_SLOTS + 1, sizeof(*fk.sorted));
		if (!fk.sorted)
			fake_die("out of memory");
	}
	switch (role_of(fd)) {
	case ROLE_SYSTEM:
		return system_ioctl(req, arg);
	case ROLE_VM:
		return vm_ioctl(req, arg);
	case ROLE_VCPU:
		return vcpu_ioctl(req, arg);
	case ROLE_NONE:
		break;
	}
	return __real_ioctl(fd, req, arg);
}

static void *map_run(size_t len)
{
	void *p = __real_mmap(NULL, len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p != MAP_FAILED)
		fk.run = p;
	return p;
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off)
{
	if (role_of(fd) == ROLE_VCPU)
		return map_run(len);
	return __real_mmap(addr, len, prot, flags, fd, off);
}

void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off)
{
	if (role_of(fd) == ROLE_VCPU)
		return map_run(len);
	return __real_mmap64(addr, len, prot, flags, fd, off);
}
