// SPDX-License-Identifier: MIT
//
// bench_memslots: libmemslot against the slot indexes VMMs use otherwise
// (bench/baselines.h), on the tests of the scalable-memslots and per-vCPU
// cache seeds.  Names: memslots/<test>/<impl>/<slots>.
//
// Layout: N slots of 512 pages (2 MiB) with 4-page gaps, slot i having id
// i and base gfn 16 + i * 516; their hva regions are 2 MiB + 16 KiB apart
// in a shuffled order, so hva order differs from gfn order.
// lookup_vmmlayout uses a second layout, vm-memory's: N one-page slots with
// one-page holes, slot i at gfn 2i.
//
// Built with MEMSLOT_BENCH_VMM (bench/meson.build defines it when cargo and
// Debian's vm-memory crate are there), the lookup_random and
// lookup_vmmlayout tests also time rust-vmm vm-memory's own
// GuestMemory::find_region (impl "vm-memory", bench/vm-memory).
//
// Counters: "ops" is the number of operations one iteration does (the
// time per op is real_time / ops); write tests time the operation itself
// with their own clock, without the inverse operation that restores the
// layout, and report it as "op_ns".  "bytes_per_slot" is the memory an
// index holds divided by N.  Every test checks its results and fails with
// an error message on a mismatch.
//
// The 1M set (<slots> 1048576: lookup_random, create, slot_setup,
// memory_per_slot) runs libmemslot with memslot_config_init_unbounded().
//
// MEMSLOT_BENCH_QUICK=1 in the environment (or --quick) selects a short
// run over 64 and 509 slots, for smoke tests.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <malloc.h>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sys/mman.h>

#include <memslot/access.h>
#include <memslot/memslot.h>

#include "baselines.h"
#include "bench_dirty_peer.h"
#include "bench_writer.h"
#ifdef MEMSLOT_BENCH_VMM
#include "vm-memory/vmmem.h"
#endif

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kSlotPages = 512;
constexpr uint64_t kGapPages = 4;
constexpr uint64_t kStridePages = kSlotPages + kGapPages;
constexpr uint64_t kFirstGfn = 16;
constexpr uint64_t kSlotBytes = kSlotPages * kPage;
constexpr uint64_t kHvaStride = kStridePages * kPage;
constexpr uint64_t kHvaBase = 1ull << 32;
constexpr uint64_t k2M = 2ull << 20;
constexpr uint32_t kMaxIds = 32764;	// user ids of the x86-64 profile
constexpr int kVcpus = 64;
constexpr size_t kSeq = 1 << 16;	// lookup inputs per pattern
constexpr size_t kQueries = 1 << 12;	// random hva range queries
constexpr int kBatch = 256;		// lookups per iteration
constexpr int kHvaBatch = 16;		// random hva queries per iteration

const int kSlotCounts[] = {10, 30, 50, 64, 100, 509, 4096, 32764};
// The 1M set: beyond x86-64's ids, so the indexes run with
// memslot_config_init_unbounded() and the baselines get a 1M id table.
constexpr int kBigSlots = 1 << 20;

// Ids an index needs for @n slots: the x86-64 profile's up to its limit.
uint32_t ids_for(size_t n)
{
	return std::max<uint32_t>(kMaxIds, (uint32_t)n);
}
const int kPageSlotCounts[] = {1, 10, 100, 509, 4096, 32764};

// ---- layout and inputs ------------------------------------------------

struct Layout {
	int n;
	std::vector<base_slot> slots;	// sorted by gfn; slots[i].id == i
	std::vector<uint64_t> rand_gfn, run_gfn;
	std::vector<uint32_t> rand_idx, run_idx;
	std::vector<uint64_t> q4k, q2m;	// random hva range starts
	std::vector<uint64_t> q4k_pages, q2m_pages;

	uint64_t hva_end() const { return kHvaBase + n * kHvaStride; }
};

// Pages of all slots below @hva (an hva in the area, page aligned).
uint64_t pages_below(uint64_t hva)
{
	uint64_t p = hva - kHvaBase;

	return p / kHvaStride * kSlotPages +
	       std::min(p % kHvaStride, kSlotBytes) / kPage;
}

void make_slots(Layout &l, std::mt19937_64 &rng)
{
	std::vector<uint64_t> perm(l.n);

	for (int i = 0; i < l.n; i++)
		perm[i] = i;
	std::shuffle(perm.begin(), perm.end(), rng);
	for (int i = 0; i < l.n; i++) {
		base_slot s{};
		s.base_gfn = kFirstGfn + i * kStridePages;
		s.npages = kSlotPages;
		s.hva = kHvaBase + perm[i] * kHvaStride;
		s.id = i;
		l.slots.push_back(s);
	}
}

void make_lookups(Layout &l, std::mt19937_64 &rng)
{
	for (size_t i = 0; i < kSeq; i++) {
		uint32_t idx = rng() % l.n;

		l.rand_idx.push_back(idx);
		l.rand_gfn.push_back(l.slots[idx].base_gfn + rng() % kSlotPages);
	}
	for (size_t i = 0; i < kSeq; i += 64) {
		uint32_t idx = rng() % l.n;
		uint64_t start = l.slots[idx].base_gfn + rng() % (kSlotPages - 64);

		for (uint64_t k = 0; k < 64; k++) {
			l.run_idx.push_back(idx);
			l.run_gfn.push_back(start + k);
		}
	}
}

void make_queries(Layout &l, std::mt19937_64 &rng, uint64_t len,
		  std::vector<uint64_t> &q, std::vector<uint64_t> &pages)
{
	uint64_t span = (l.hva_end() - kHvaBase - len) / kPage + 1;

	for (size_t i = 0; i < kQueries; i++) {
		uint64_t start = kHvaBase + rng() % span * kPage;

		q.push_back(start);
		pages.push_back(pages_below(start + len) - pages_below(start));
	}
}

const Layout &layout(int n)
{
	static std::map<int, std::unique_ptr<Layout>> cache;
	auto &l = cache[n];

	if (!l) {
		std::mt19937_64 rng(0x6d656d736c6f74ull + n);

		l = std::make_unique<Layout>();
		l->n = n;
		make_slots(*l, rng);
		make_lookups(*l, rng);
		make_queries(*l, rng, kPage, l->q4k, l->q4k_pages);
		make_queries(*l, rng, k2M, l->q2m, l->q2m_pages);
	}
	return *l;
}

// vm-memory's layout (lookup_vmmlayout): N one-page slots with one-page
// holes, slot i (id i) at gfn 2i, and uniformly random gfns over the 2N
// pages, so about half the lookups fall in a hole and must find nothing.
struct PageLayout {
	int n;
	std::vector<base_slot> slots;	// sorted by gfn; slots[i].id == i
	std::vector<uint64_t> gfn;
	std::vector<uint32_t> idx;	// id of the slot holding gfn, n if none
};

const PageLayout &page_layout(int n)
{
	static std::map<int, std::unique_ptr<PageLayout>> cache;
	auto &l = cache[n];

	if (!l) {
		std::mt19937_64 rng(0x766d6d656dull + n);

		l = std::make_unique<PageLayout>();
		l->n = n;
		for (int i = 0; i < n; i++) {
			base_slot s{};
			s.base_gfn = 2 * (uint64_t)i;
			s.npages = 1;
			s.hva = kHvaBase + s.base_gfn * kPage;
			s.id = i;
			l->slots.push_back(s);
		}
		for (size_t i = 0; i < kSeq; i++) {
			uint64_t gfn = rng() % (2 * (uint64_t)n);

			l->gfn.push_back(gfn);
			l->idx.push_back(gfn % 2 ? n : gfn / 2);
		}
	}
	return *l;
}

// ---- implementations -----------------------------------------------------

// The baselines, all with the same members.  They have no read sections,
// no per-vCPU caches and no grace periods.
#define BASELINE_IMPL(NAME)						\
	class Impl_##NAME {						\
	public:								\
		static const char *name() { return #NAME; }		\
		static constexpr bool kGP = false;			\
		explicit Impl_##NAME(uint32_t ids = kMaxIds)		\
			: b_(base_##NAME##_create(ids))			\
		{							\
			if (!b_)					\
				abort();				\
		}							\
		~Impl_##NAME() { base_##NAME##_destroy(b_); }		\
		Impl_##NAME(const Impl_##NAME &) = delete;		\
		Impl_##NAME &operator=(const Impl_##NAME &) = delete;	\
		int load(const base_slot *s, size_t n)			\
		{							\
			return base_##NAME##_load(b_, s, n);		\
		}							\
		/* The records need no conversion: kept as given. */	\
		void stage(const base_slot *s, size_t n)		\
		{							\
			staged_ = s;					\
			nstaged_ = n;					\
		}							\
		int load_staged()					\
		{							\
			return load(staged_, nstaged_);			\
		}							\
		int insert(const base_slot &s)				\
		{							\
			return base_##NAME##_insert(b_, &s);		\
		}							\
		int remove(uint32_t id)					\
		{							\
			return base_##NAME##_remove(b_, id);		\
		}							\
		int move(uint32_t id, uint64_t base)			\
		{							\
			return base_##NAME##_move(b_, id, base);	\
		}							\
		int set_flags(uint32_t id, uint32_t flags)		\
		{							\
			return base_##NAME##_set_flags(b_, id, flags);	\
		}							\
		void read_begin() {}					\
		void read_end() {}					\
		void thread_begin() {}					\
		void thread_end() {}					\
		const void *lookup(uint64_t gfn)			\
		{							\
			return base_##NAME##_lookup(b_, gfn);		\
		}							\
		const void *lookup_vcpu(int, uint64_t gfn)		\
		{							\
			return lookup(gfn);				\
		}							\
		bool gfn_to_hva(uint64_t gfn, uint64_t *hva)		\
		{							\
			const base_slot *s = base_##NAME##_lookup(b_, gfn); \
			if (!s)						\
				return false;				\
			*hva = s->hva + ((gfn - s->base_gfn) << 12);	\
			return true;					\
		}							\
		const void *by_id(uint32_t id)				\
		{							\
			return base_##NAME##_by_id(b_, id);		\
		}							\
		uint64_t hva_pages(uint64_t start, uint64_t end)	\
		{							\
			return base_##NAME##_hva_pages(b_, start, end);	\
		}							\
		size_t bytes() { return base_##NAME##_bytes(b_); }	\
	private:							\
		base_##NAME *b_;					\
		const base_slot *staged_ = nullptr;			\
		size_t nstaged_ = 0;					\
	};

BASELINE_IMPL(array)
BASELINE_IMPL(rbtree)
BASELINE_IMPL(bsearch)

memslot_region to_region(const base_slot &s)
{
	memslot_region r{};

	r.slot = s.id;
	r.flags = s.flags;
	r.guest_phys_addr = s.base_gfn * kPage;
	r.memory_size = s.npages * kPage;
	r.userspace_addr = s.hva;
	r.user_data = s.user_data;
	return r;
}

// liburcu registration is per thread, not per VM: do it once.
void register_reader_once(memslot_vm *vm)
{
	static bool done;

	if (!done)
		memslot_thread_register(vm);
	done = true;
}

enum class Cache { set, vcpu, none };

// libmemslot through its public API.  GP: the default backend (liburcu
// memb, a grace period per swap); otherwise memslot_rcu_none().  Deferred:
// changes go through memslot_set_regions_deferred(), so the writer does
// not wait for the grace period (the VM's reclaim thread does).
template <Cache C, bool GP, bool Deferred = false>
class MemslotImpl {
public:
	static const char *name()
	{
		if (C == Cache::vcpu)
			return "libmemslot-vcpu";
		if (C == Cache::none)
			return "libmemslot-nocache";
		if (Deferred)
			return "libmemslot-deferred";
		return GP ? "libmemslot" : "libmemslot-nogp";
	}
	static constexpr bool kGP = GP;

	explicit MemslotImpl(uint32_t ids = kMaxIds) : regs_(ids)
	{
		memslot_config cfg;

		if (ids > kMaxIds)
			memslot_config_init_unbounded(&cfg);
		else
			memslot_config_init_x86_64(&cfg);
		cfg.rcu = GP ? nullptr : memslot_rcu_none();
		if (memslot_vm_create(&cfg, &vm_))
			abort();
		if (GP)
			register_reader_once(vm_);
		vcpus_.resize(C == Cache::vcpu ? kVcpus : 0);
		for (auto &v : vcpus_)
			if (memslot_vcpu_create(vm_, &v))
				abort();
	}
	~MemslotImpl()
	{
		for (auto v : vcpus_)
			memslot_vcpu_destroy(v);
		memslot_vm_destroy(vm_);
	}
	MemslotImpl(const MemslotImpl &) = delete;
	MemslotImpl &operator=(const MemslotImpl &) = delete;

	memslot_vm *vm() { return vm_; }

	int load(const base_slot *s, size_t n)
	{
		stage(s, n);
		return load_staged();
	}
	// The request array of a load, built apart so that slot_setup can
	// time the transaction alone (the baselines' inserts take the
	// layout's records as they are, with nothing to convert).
	void stage(const base_slot *s, size_t n)
	{
		staged_.resize(n);
		for (size_t i = 0; i < n; i++)
			staged_[i] = regs_[s[i].id] = to_region(s[i]);
	}
	int load_staged()
	{
		int r = memslot_set_regions(vm_, staged_.data(), staged_.size(),
					    nullptr);

		std::vector<memslot_region>().swap(staged_);
		return r;
	}
	int insert(const base_slot &s)
	{
		regs_[s.id] = to_region(s);
		return set(regs_[s.id]);
	}
	int remove(uint32_t id)
	{
		memslot_region r = regs_[id];

		r.memory_size = 0;
		return set(r);
	}
	int move(uint32_t id, uint64_t base)
	{
		memslot_region r = regs_[id];

		r.guest_phys_addr = base * kPage;
		return update(r);
	}
	int set_flags(uint32_t id, uint32_t flags)
	{
		memslot_region r = regs_[id];

		r.flags = flags;
		return update(r);
	}

	void read_begin() { memslot_read_lock(vm_); }
	void read_end() { memslot_read_unlock(vm_); }
	// Registration is counted per thread, so a benchmark thread may
	// register even if it is the one that set the VM up.
	void thread_begin()
	{
		if (GP)
			memslot_thread_register(vm_);
	}
	void thread_end()
	{
		if (GP)
			memslot_thread_unregister(vm_);
	}

	const void *lookup(uint64_t gfn)
	{
		if (C == Cache::vcpu)
			return memslot_vcpu_gfn_to_slot(vcpus_[0], 0, gfn);
		if (C == Cache::none)
			return memslot_search(vm_, 0, gfn, false);
		return memslot_gfn_to_slot(vm_, 0, gfn);
	}
	const void *lookup_vcpu(int v, uint64_t gfn)
	{
		if (C == Cache::vcpu)
			return memslot_vcpu_gfn_to_slot(vcpus_[v], 0, gfn);
		return lookup(gfn);
	}
	bool gfn_to_hva(uint64_t gfn, uint64_t *hva)
	{
		if (C == Cache::set)
			return memslot_gfn_to_hva(vm_, 0, gfn, false, hva) == 0;
		if (C == Cache::vcpu)
			return memslot_vcpu_gfn_to_hva(vcpus_[0], 0, gfn, false,
						       hva) == 0;
		return memslot_slot_gfn_to_hva(
			static_cast<const memslot_slot *>(lookup(gfn)), gfn,
			false, hva) == 0;
	}
	const void *by_id(uint32_t id)
	{
		const void *s;

		memslot_read_lock(vm_);
		s = memslot_id_to_slot(vm_, 0, id);
		memslot_read_unlock(vm_);
		return s;
	}
	uint64_t hva_pages(uint64_t start, uint64_t end)
	{
		memslot_hva_iter it;
		memslot_hva_hit hit;
		uint64_t pages = 0;

		memslot_hva_iter_init(&it, vm_, start, end);
		while (memslot_hva_iter_next(&it, &hit))
			pages += hit.gfn_end - hit.gfn_start;
		return pages;
	}
	size_t bytes()
	{
		memslot_stats st{};

		return memslot_vm_stats(vm_, 0, &st) ? 0 : st.bytes;
	}

private:
	int set(const memslot_region &r)
	{
		if (Deferred)
			return memslot_set_regions_deferred(vm_, &r, 1, nullptr);
		return memslot_set_region(vm_, &r, nullptr);
	}
	int update(const memslot_region &r)
	{
		int err = set(r);

		if (!err)
			regs_[r.slot] = r;
		return err;
	}

	memslot_vm *vm_ = nullptr;
	std::vector<memslot_vcpu *> vcpus_;
	std::vector<memslot_region> regs_;	// what each id was set to
	std::vector<memslot_region> staged_;	// stage()'s requests
};

using Libmemslot = MemslotImpl<Cache::set, true>;
using LibmemslotNogp = MemslotImpl<Cache::set, false>;
using LibmemslotVcpu = MemslotImpl<Cache::vcpu, true>;
using LibmemslotNocache = MemslotImpl<Cache::none, true>;
using LibmemslotDeferred = MemslotImpl<Cache::set, true, true>;

#ifdef MEMSLOT_BENCH_VMM
// rust-vmm vm-memory through bench/vm-memory: a GuestMemoryMmap whose
// regions are anonymous mmaps (GuestMemoryMmap::from_ranges), searched by
// vm-memory's own GuestMemory::find_region.  Lookup tests only: vm-memory
// builds a new GuestMemoryMmap for every change, which the bsearch baseline
// already models.
class VmMemoryImpl {
public:
	static const char *name() { return "vm-memory"; }

	explicit VmMemoryImpl(uint32_t = kMaxIds) {}
	~VmMemoryImpl() { vmmem_destroy(m_); }
	VmMemoryImpl(const VmMemoryImpl &) = delete;
	VmMemoryImpl &operator=(const VmMemoryImpl &) = delete;

	// vm-memory refuses regions that are not sorted by gpa: sort a copy.
	int load(const base_slot *s, size_t n)
	{
		std::vector<base_slot> sorted(s, s + n);
		std::vector<vmmem_range> r(n);

		std::sort(sorted.begin(), sorted.end(),
			  [](const base_slot &a, const base_slot &b) {
				  return a.base_gfn < b.base_gfn;
			  });
		rank_.assign(kMaxIds, SIZE_MAX);
		for (size_t k = 0; k < n; k++) {
			r[k] = {sorted[k].base_gfn * kPage, sorted[k].npages * kPage};
			rank_[sorted[k].id] = k;
		}
		vmmem_destroy(m_);
		m_ = vmmem_create(r.data(), n);
		return m_ && starts_match(r) ? 0 : -EINVAL;
	}
	void read_begin() {}
	void read_end() {}
	const void *lookup(uint64_t gfn)
	{
		return vmmem_find_region(m_, gfn * kPage);
	}
	const void *by_id(uint32_t id)
	{
		if (id >= rank_.size() || rank_[id] == SIZE_MAX)
			return nullptr;
		return vmmem_region(m_, rank_[id]);
	}

private:
	// Region k, as vm-memory lists it, is the k-th range given.
	bool starts_match(const std::vector<vmmem_range> &r)
	{
		for (size_t k = 0; k < r.size(); k++) {
			const void *reg = vmmem_region(m_, k);

			if (!reg || vmmem_region_start(reg) != r[k].gpa)
				return false;
		}
		return true;
	}

	vmmem *m_ = nullptr;
	std::vector<size_t> rank_;	// slot id -> region number
};
#endif

// The harness's floor, not an index: one out-of-line call that finds the
// slot by arithmetic on the layout's fixed stride (bench's layout only, so
// lookup_random alone).  No general lookup through the same loop can cost
// less, so the row bounds what any ratio against a peer can be.
__attribute__((noinline)) const base_slot *
stride_lookup(const std::vector<base_slot> &s, uint64_t gfn)
{
	uint64_t i = (gfn - kFirstGfn) / kStridePages;

	if (i >= s.size() || gfn - s[i].base_gfn >= s[i].npages)
		return nullptr;
	return &s[i];
}

class FloorImpl {
public:
	static const char *name() { return "floor"; }

	explicit FloorImpl(uint32_t = kMaxIds) {}
	FloorImpl(const FloorImpl &) = delete;
	FloorImpl &operator=(const FloorImpl &) = delete;

	// Refuses any layout but bench's: slot i at kFirstGfn + i * stride.
	int load(const base_slot *s, size_t n)
	{
		slots_.assign(s, s + n);
		for (size_t i = 0; i < n; i++)
			if (slots_[i].id != i ||
			    slots_[i].base_gfn != kFirstGfn + i * kStridePages)
				return -EINVAL;
		return 0;
	}
	void read_begin() {}
	void read_end() {}
	const void *lookup(uint64_t gfn) { return stride_lookup(slots_, gfn); }
	const void *by_id(uint32_t id)
	{
		return id < slots_.size() ? &slots_[id] : nullptr;
	}

private:
	std::vector<base_slot> slots_;
};

// ---- fixtures: one loaded index at a time, reused across the runs of a
// benchmark (Google Benchmark calls a benchmark several times) ----------

struct FixtureBase {
	virtual ~FixtureBase() = default;
};

template <class I>
struct Fixture : FixtureBase {
	explicit Fixture(uint32_t ids) : impl(ids) {}
	I impl;
};

std::unique_ptr<FixtureBase> g_fixture;
std::string g_fixture_key;

// @tag names the layout @slots come from.
template <class I>
I *fixture_of(const char *tag, const std::vector<base_slot> &slots)
{
	std::string key = std::string(tag) + "/" + I::name() + "/" +
			  std::to_string(slots.size());

	if (key != g_fixture_key) {
		g_fixture.reset();
		g_fixture_key.clear();
		auto f = std::make_unique<Fixture<I>>(ids_for(slots.size()));
		if (f->impl.load(slots.data(), slots.size()))
			return nullptr;
		g_fixture = std::move(f);
		g_fixture_key = key;
	}
	return &static_cast<Fixture<I> *>(g_fixture.get())->impl;
}

template <class I>
I *fixture(int n)
{
	return fixture_of<I>("slots", layout(n).slots);
}

// The slot objects an index returns for each slot of the layout.
template <class I>
bool expected_slots(I &impl, int n, std::vector<const void *> &want)
{
	want.resize(n);
	for (int i = 0; i < n; i++) {
		want[i] = impl.by_id(i);
		if (!want[i])
			return false;
	}
	return true;
}

using Clock = std::chrono::steady_clock;

double ns_since(Clock::time_point t0)
{
	return std::chrono::duration<double, std::nano>(Clock::now() - t0)
		.count();
}

void set_op_ns(benchmark::State &st, double total_ns)
{
	st.counters["ops"] = 1;
	st.counters["op_ns"] =
		st.iterations() ? total_ns / (double)st.iterations() : 0;
}

// ---- lookups ----------------------------------------------------------

enum class Pattern { random, run64 };

// Looks up @gfn in turn, kBatch per iteration; @gfn[i] must give
// @want[@idx[i]].
template <class I>
void lookup_loop(benchmark::State &st, I &impl,
		 const std::vector<uint64_t> &gfn,
		 const std::vector<uint32_t> &idx,
		 const std::vector<const void *> &want)
{
	uint64_t bad = 0;
	size_t pos = 0;

	for (auto _ : st) {
		impl.read_begin();
		for (int k = 0; k < kBatch; k++) {
			const void *s = impl.lookup(gfn[pos + k]);
			bad += s != want[idx[pos + k]];
		}
		impl.read_end();
		pos = (pos + kBatch) & (kSeq - 1);
	}
	benchmark::DoNotOptimize(bad);
	if (bad)
		st.SkipWithError("lookup returned a wrong slot");
	st.counters["ops"] = kBatch;
}

template <class I>
void bm_lookup(benchmark::State &st, int n, Pattern p)
{
	const Layout &l = layout(n);
	const auto &gfn = p == Pattern::random ? l.rand_gfn : l.run_gfn;
	const auto &idx = p == Pattern::random ? l.rand_idx : l.run_idx;
	std::vector<const void *> want;
	I *impl = fixture<I>(n);

	if (!impl || !expected_slots(*impl, n, want)) {
		st.SkipWithError("setup failed");
		return;
	}
	lookup_loop(st, *impl, gfn, idx, want);
}

// lookup_vmmlayout: a gfn in a hole must find nothing (want[n]).
template <class I>
void bm_lookup_pages(benchmark::State &st, int n)
{
	const PageLayout &l = page_layout(n);
	std::vector<const void *> want;
	I *impl = fixture_of<I>("pages", l.slots);

	if (!impl || !expected_slots(*impl, n, want)) {
		st.SkipWithError("setup failed");
		return;
	}
	want.push_back(nullptr);
	lookup_loop(st, *impl, l.gfn, l.idx, want);
}

// ---- lookup_vcpu64: vCPU threads, each in its own slot -----------------

// The seed's dirty-log scenario: 64 vCPUs, each touching pages of its own
// slot, interleaved.  kVcpuThreads threads each run their share of the
// vCPUs, one lookup per vCPU in turn, so vCPUs sharing the set-wide cache
// evict each other's entry on every lookup and its line moves between the
// CPUs, as it does between KVM's vCPU threads.
constexpr int kVcpuThreads = 2;

template <class I>
struct VcpuShared {
	static I *impl;
	static std::vector<const void *> want;
};
template <class I> I *VcpuShared<I>::impl;
template <class I> std::vector<const void *> VcpuShared<I>::want;

// Runs once before the threads start: fixtures are not thread-safe.
template <class I>
void vcpu_setup(const benchmark::State &)
{
	I *impl = fixture<I>(kVcpus);

	VcpuShared<I>::impl = impl;
	if (!impl || !expected_slots(*impl, kVcpus, VcpuShared<I>::want))
		VcpuShared<I>::impl = nullptr;
}

template <class I>
void bm_vcpu_threads(benchmark::State &st)
{
	I *impl = VcpuShared<I>::impl;
	const auto &want = VcpuShared<I>::want;
	const Layout &l = layout(kVcpus);
	const int t = st.thread_index(), nt = st.threads();
	uint64_t bad = 0, off = 0;

	if (!impl) {
		st.SkipWithError("setup failed");
		return;
	}
	impl->thread_begin();
	for (auto _ : st) {
		impl->read_begin();
		for (int v = t; v < kVcpus; v += nt)
			bad += impl->lookup_vcpu(v, l.slots[v].base_gfn + off) !=
			       want[v];
		impl->read_end();
		off = off + 1 < kSlotPages ? off + 1 : 0;
	}
	impl->thread_end();
	benchmark::DoNotOptimize(bad);
	if (bad)
		st.SkipWithError("lookup returned a wrong slot");
	st.counters["ops"] = (kVcpus + nt - 1 - t) / nt;
}

// ---- map: gfn -> hva over every page of the slots, in gfn order --------

template <class I>
void bm_map(benchmark::State &st, int n)
{
	constexpr uint64_t batch = kSlotPages / 2;
	const Layout &l = layout(n);
	I *impl = fixture<I>(n);
	uint64_t cursor = 0, bad = 0;

	if (!impl) {
		st.SkipWithError("setup failed");
		return;
	}
	for (auto _ : st) {
		const base_slot &s = l.slots[cursor / kSlotPages];
		uint64_t off = cursor % kSlotPages, sum = 0, hva = 0;

		impl->read_begin();
		for (uint64_t k = 0; k < batch; k++) {
			bad += !impl->gfn_to_hva(s.base_gfn + off + k, &hva);
			sum += hva;
		}
		impl->read_end();
		// sum over k of s.hva + (off + k) * page
		bad += sum != batch * s.hva +
			      kPage * (batch * off + batch * (batch - 1) / 2);
		cursor += batch;
		if (cursor == n * kSlotPages)
			cursor = 0;
	}
	benchmark::DoNotOptimize(bad);
	if (bad)
		st.SkipWithError("wrong translation");
	st.counters["ops"] = batch;
}

// ---- hva ranges: a sweep over the area (unmap) and random queries -------

template <class I>
void bm_unmap(benchmark::State &st, int n, uint64_t len)
{
	const Layout &l = layout(n);
	uint64_t area = l.hva_end() - kHvaBase;
	uint64_t queries = len == kPage ? 512 : std::min<uint64_t>(16, area / len);
	uint64_t cursor = kHvaBase, bad = 0;
	I *impl = fixture<I>(n);

	if (!impl) {
		st.SkipWithError("setup failed");
		return;
	}
	for (auto _ : st) {
		uint64_t pages = 0;

		if (cursor + queries * len > l.hva_end())
			cursor = kHvaBase;
		impl->read_begin();
		for (uint64_t k = 0; k < queries; k++)
			pages += impl->hva_pages(cursor + k * len,
						 cursor + (k + 1) * len);
		impl->read_end();
		bad += pages != pages_below(cursor + queries * len) -
				pages_below(cursor);
		cursor += queries * len;
	}
	benchmark::DoNotOptimize(bad);
	if (bad)
		st.SkipWithError("wrong page count");
	st.counters["ops"] = (double)queries;
}

template <class I>
void bm_hva_range(benchmark::State &st, int n, uint64_t len)
{
	const Layout &l = layout(n);
	const auto &q = len == kPage ? l.q4k : l.q2m;
	const auto &want = len == kPage ? l.q4k_pages : l.q2m_pages;
	I *impl = fixture<I>(n);
	uint64_t bad = 0;
	size_t pos = 0;

	if (!impl) {
		st.SkipWithError("setup failed");
		return;
	}
	for (auto _ : st) {
		impl->read_begin();
		for (int k = 0; k < kHvaBatch; k++)
			bad += impl->hva_pages(q[pos + k], q[pos + k] + len) !=
			       want[pos + k];
		impl->read_end();
		pos = (pos + kHvaBatch) & (kQueries - 1);
	}
	benchmark::DoNotOptimize(bad);
	if (bad)
		st.SkipWithError("wrong page count");
	st.counters["ops"] = kHvaBatch;
}

// ---- slot setup: N creates into an empty index ------------------------

// Inserts one by one, or (@txn) the transaction stage() prepared.
template <class I>
bool setup_one(I &impl, const Layout &l, bool txn)
{
	if (txn)
		return impl.load_staged() == 0;
	for (const base_slot &s : l.slots)
		if (impl.insert(s))
			return false;
	return true;
}

template <class I>
void bm_setup(benchmark::State &st, int n, bool txn)
{
	const Layout &l = layout(n);
	double total = 0, bytes = 0;
	uint64_t bad = 0;

	g_fixture.reset();	// free memory; setup builds its own index
	g_fixture_key.clear();
	for (auto _ : st) {
		auto impl = std::make_unique<I>(ids_for(n));
		Clock::time_point t0;

		if (txn)
			impl->stage(l.slots.data(), l.slots.size());
		t0 = Clock::now();
		bad += !setup_one(*impl, l, txn);
		total += ns_since(t0);
		const void *last = impl->by_id(n - 1);
		impl->read_begin();
		bad += !last || impl->lookup(l.slots[n - 1].base_gfn) != last;
		impl->read_end();
		bytes = (double)impl->bytes() / n;
		st.PauseTiming();
		impl.reset();
		st.ResumeTiming();
	}
	benchmark::DoNotOptimize(bad);
	if (bad)
		st.SkipWithError("setup failed");
	set_op_ns(st, total);
	st.counters["bytes_per_slot"] = bytes;
}

// The memory a loaded index holds, per slot (counter bytes_per_slot); the
// time is that of reading the counter.
template <class I>
void bm_memory(benchmark::State &st, int n)
{
	I *impl = fixture<I>(n);
	double bytes = 0;

	if (!impl) {
		st.SkipWithError("setup failed");
		return;
	}
	for (auto _ : st)
		bytes = (double)impl->bytes();
	if (!bytes)
		st.SkipWithError("no memory counted");
	st.counters["bytes_per_slot"] = bytes / n;
}

// ---- read sections ----------------------------------------------------------

// memslot_read_lock() + memslot_read_unlock() alone, kBatch per iteration,
// on a registered thread, for one grace-period backend.
void bm_read_section(benchmark::State &st, const memslot_rcu_ops *rcu)
{
	memslot_config cfg;
	memslot_vm *vm;

	memslot_config_init_x86_64(&cfg);
	cfg.rcu = rcu;
	if (memslot_vm_create(&cfg, &vm)) {
		st.SkipWithError("setup failed");
		return;
	}
	memslot_thread_register(vm);
	for (auto _ : st) {
		for (int k = 0; k < kBatch; k++) {
			memslot_read_lock(vm);
			memslot_read_unlock(vm);
		}
	}
	memslot_thread_unregister(vm);
	memslot_vm_destroy(vm);
	st.counters["ops"] = kBatch;
}

// ---- single operations at N slots --------------------------------------

enum class Op { create, remove, flags };

// Create or delete the middle slot; the inverse runs outside op_ns.
template <class I>
void bm_create_delete(benchmark::State &st, int n, Op op)
{
	const Layout &l = layout(n);
	const base_slot &mid = l.slots[n / 2];
	I *impl = fixture<I>(n);
	double total = 0;
	uint64_t bad = 0;

	if (!impl) {
		st.SkipWithError("setup failed");
		return;
	}
	for (auto _ : st) {
		Clock::time_point t0;

		if (op == Op::create) {
			bad += impl->remove(mid.id) != 0;
			t0 = Clock::now();
			bad += impl->insert(mid) != 0;
			total += ns_since(t0);
		} else {
			t0 = Clock::now();
			bad += impl->remove(mid.id) != 0;
			total += ns_since(t0);
			bad += impl->insert(mid) != 0;
		}
	}
	benchmark::DoNotOptimize(bad);
	if (bad || !impl->by_id(mid.id))
		st.SkipWithError("create/delete failed");
	set_op_ns(st, total);
}

// Toggle dirty logging on the middle slot: every iteration is one change.
template <class I>
void bm_flags(benchmark::State &st, int n)
{
	const Layout &l = layout(n);
	uint32_t id = l.slots[n / 2].id, flags = 0;
	I *impl = fixture<I>(n);
	double total = 0;
	uint64_t bad = 0;

	if (!impl) {
		st.SkipWithError("setup failed");
		return;
	}
	for (auto _ : st) {
		Clock::time_point t0 = Clock::now();

		flags ^= MEMSLOT_MEM_LOG_DIRTY_PAGES;
		bad += impl->set_flags(id, flags) != 0;
		total += ns_since(t0);
	}
	if (flags)
		bad += impl->set_flags(id, 0) != 0;
	benchmark::DoNotOptimize(bad);
	if (bad)
		st.SkipWithError("flags change failed");
	set_op_ns(st, total);
}

// A reader thread looking up gfns of one slot at either of two bases,
// for the grace-period runs of the move tests.
class Reader {
public:
	Reader(memslot_vm *vm, uint64_t a, uint64_t b)
		: thread_([this, vm, a, b] { run(vm, a, b); })
	{
		// Measure only while the reader is really reading.
		while (hits_.load() == 0)
			std::this_thread::yield();
	}
	~Reader()
	{
		stop_.store(true);
		thread_.join();
	}
	uint64_t hits() const { return hits_.load(); }

private:
	void run(memslot_vm *vm, uint64_t a, uint64_t b)
	{
		uint64_t hits = 0, k = 0;

		memslot_thread_register(vm);
		while (!stop_.load(std::memory_order_relaxed)) {
			memslot_read_lock(vm);
			for (int i = 0; i < 32; i++, k++) {
				hits += !!memslot_gfn_to_slot(vm, 0, a + k % 512);
				hits += !!memslot_gfn_to_slot(vm, 0, b + k % 512);
			}
			memslot_read_unlock(vm);
			hits_.store(hits, std::memory_order_relaxed);
		}
		memslot_thread_unregister(vm);
	}

	std::atomic<bool> stop_{false};
	std::atomic<uint64_t> hits_{0};
	std::thread thread_;
};

template <class I>
std::unique_ptr<Reader> start_reader(I &impl, uint64_t a, uint64_t b)
{
	if constexpr (I::kGP)
		return std::make_unique<Reader>(impl.vm(), a, b);
	(void)impl, (void)a, (void)b;
	return nullptr;
}

// Move the middle slot above every slot and back, one move per iteration.
// Readers use the moved slot (active) or the first slot (inactive): a
// reader thread under the grace-period backend, otherwise one lookup per
// iteration on this thread.
template <class I>
void bm_move(benchmark::State &st, int n, bool active)
{
	const Layout &l = layout(n);
	const base_slot &mid = l.slots[n / 2];
	uint64_t far = kFirstGfn + n * kStridePages;
	uint64_t read_a = active ? mid.base_gfn : l.slots[0].base_gfn;
	uint64_t read_b = active ? far : read_a;
	I *impl = fixture<I>(n);
	double total = 0;
	uint64_t bad = 0, hits = 0;
	bool moved = false;

	if (!impl) {
		st.SkipWithError("setup failed");
		return;
	}
	auto reader = start_reader(*impl, read_a, read_b);
	for (auto _ : st) {
		Clock::time_point t0;

		impl->read_begin();
		hits += !!impl->lookup(moved ? read_b : read_a);
		impl->read_end();
		t0 = Clock::now();
		bad += impl->move(mid.id, moved ? mid.base_gfn : far) != 0;
		total += ns_since(t0);
		moved = !moved;
	}
	if (moved)
		bad += impl->move(mid.id, mid.base_gfn) != 0;
	if (reader && reader->hits() == 0)
		bad++;
	reader.reset();
	benchmark::DoNotOptimize(hits);
	if (bad || hits != (uint64_t)st.iterations())
		st.SkipWithError("move failed");
	set_op_ns(st, total);
}

// ---- guest-memory access over real backing -------------------------------

// Slots of 128 KiB (32 pages) with 4-page gaps, over one mapping of real
// memory: slot i is backed at (i % kAccessBackSlots) * 128 KiB, so the
// slots share at most 32 MiB of backing however many there are (aliasing
// is legal).  Reads start at random 8-byte aligned offsets that keep 64 KiB
// inside the slot; the memcpy baseline copies from the same host bytes.
constexpr uint64_t kAccessSlotPages = 32;
constexpr uint64_t kAccessSlotBytes = kAccessSlotPages * kPage;
constexpr uint64_t kAccessStridePages = kAccessSlotPages + kGapPages;
constexpr uint64_t kAccessBackSlots = 256;
constexpr size_t kAccessLen = 64 << 10;
constexpr int kAccessBatch = 16;	// 64 KiB reads per iteration
constexpr int kAccess4Batch = 256;	// 4-byte reads per iteration

class AccessFixture {
public:
	explicit AccessFixture(int n) : n_(n)
	{
		memslot_config cfg;
		std::mt19937_64 rng(0x616363657373ull + n);

		back_bytes_ = std::min<uint64_t>(n, kAccessBackSlots) *
			      kAccessSlotBytes;
		void *p = mmap(nullptr, back_bytes_, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
			       0);
		if (p == MAP_FAILED)
			abort();
		back_ = static_cast<uint8_t *>(p);
		for (uint64_t i = 0; i < back_bytes_; i++)
			back_[i] = (uint8_t)(i * 31 + i / 4093);
		memslot_config_init_x86_64(&cfg);
		if (memslot_vm_create(&cfg, &vm_) || load() ||
		    memslot_vcpu_create(vm_, &vcpu_))
			abort();
		register_reader_once(vm_);
		for (size_t i = 0; i < kSeq; i++) {
			uint64_t slot = rng() % n;
			uint64_t off = rng() % (kAccessSlotBytes - kAccessLen + 1);

			gpa_.push_back(slot_gpa(slot) + (off & ~7ull));
		}
	}
	~AccessFixture()
	{
		memslot_vcpu_destroy(vcpu_);
		memslot_vm_destroy(vm_);
		munmap(back_, back_bytes_);
	}
	AccessFixture(const AccessFixture &) = delete;
	AccessFixture &operator=(const AccessFixture &) = delete;

	static uint64_t slot_gpa(uint64_t i)
	{
		return (kFirstGfn + i * kAccessStridePages) * kPage;
	}
	// The host bytes behind @gpa (inside a slot).
	const uint8_t *host(uint64_t gpa) const
	{
		uint64_t rel = gpa - kFirstGfn * kPage;
		uint64_t slot = rel / (kAccessStridePages * kPage);

		return back_ + slot % kAccessBackSlots * kAccessSlotBytes +
		       rel % (kAccessStridePages * kPage);
	}

	memslot_vm *vm() { return vm_; }
	memslot_vcpu *vcpu() { return vcpu_; }
	const std::vector<uint64_t> &gpas() const { return gpa_; }

private:
	int load()
	{
		std::vector<memslot_region> r(n_);

		for (int i = 0; i < n_; i++) {
			r[i].slot = i;
			r[i].guest_phys_addr = slot_gpa(i);
			r[i].memory_size = kAccessSlotBytes;
			r[i].userspace_addr = (uint64_t)(uintptr_t)back_ +
					      i % kAccessBackSlots *
						      kAccessSlotBytes;
		}
		return memslot_set_regions(vm_, r.data(), r.size(), nullptr);
	}

	int n_;
	uint8_t *back_ = nullptr;
	uint64_t back_bytes_ = 0;
	memslot_vm *vm_ = nullptr;
	memslot_vcpu *vcpu_ = nullptr;
	std::vector<uint64_t> gpa_;
};

AccessFixture *access_fixture(int n)
{
	static std::unique_ptr<AccessFixture> f;
	static int f_n;

	if (!f || f_n != n) {
		f.reset();
		g_fixture.reset();	// one big fixture at a time
		g_fixture_key.clear();
		f = std::make_unique<AccessFixture>(n);
		f_n = n;
	}
	return f.get();
}

enum class AccessImpl { libmemslot, memcpy };

void bm_access_read64k(benchmark::State &st, int n, AccessImpl impl)
{
	AccessFixture *f = access_fixture(n);
	const auto &gpa = f->gpas();
	std::vector<uint8_t> buf(kAccessLen), want(kAccessLen);
	uint64_t bad = 0;
	size_t pos = 0;

	for (auto _ : st) {
		memslot_read_lock(f->vm());
		memslot_view *view = memslot_view_get(f->vm(), 0);

		for (int k = 0; k < kAccessBatch; k++) {
			size_t done = 0;

			if (impl == AccessImpl::memcpy) {
				memcpy(buf.data(), f->host(gpa[pos + k]),
				       kAccessLen);
				continue;
			}
			bad += memslot_view_read(view, gpa[pos + k], buf.data(),
						 kAccessLen, &done) != 0;
			bad += done != kAccessLen;
		}
		memslot_read_unlock(f->vm());
		benchmark::DoNotOptimize(buf.data());
		benchmark::ClobberMemory();
		pos = (pos + kAccessBatch) & (kSeq - 1);
	}
	// The last read of the loop, checked against the backing.
	pos = (pos - kAccessBatch) & (kSeq - 1);
	memcpy(want.data(), f->host(gpa[pos + kAccessBatch - 1]), kAccessLen);
	bad += st.iterations() && buf != want;
	benchmark::DoNotOptimize(bad);
	if (bad)
		st.SkipWithError("wrong bytes read");
	st.counters["ops"] = kAccessBatch;
	st.SetBytesProcessed(st.iterations() * kAccessBatch * kAccessLen);
}

// 4-byte reads through a warm vCPU cache: all inside one slot, 4-byte
// aligned, so each takes the one-page path.
void bm_access_read4(benchmark::State &st, int n)
{
	AccessFixture *f = access_fixture(n);
	const auto &gpa = f->gpas();
	const uint64_t base = AccessFixture::slot_gpa(n / 2);
	uint32_t got[kAccess4Batch] = {};
	uint64_t bad = 0;
	size_t pos = 0;
	auto at = [&](size_t i) {
		return base + (gpa[i] & (kAccessSlotBytes - 4));
	};

	for (auto _ : st) {
		memslot_read_lock(f->vm());
		const memslot_view *view = memslot_view_get(f->vm(), 0);

		for (int k = 0; k < kAccess4Batch; k++) {
			size_t done;

			bad += memslot_vcpu_view_read(f->vcpu(), view,
						      at(pos + k), &got[k], 4,
						      &done) != 0;
		}
		memslot_read_unlock(f->vm());
		benchmark::DoNotOptimize(got);
		pos = (pos + kAccess4Batch) & (kSeq - 1);
	}
	// The last batch, checked against the backing.
	pos = (pos - kAccess4Batch) & (kSeq - 1);
	for (int k = 0; st.iterations() && k < kAccess4Batch; k++)
		bad += memcmp(&got[k], f->host(at(pos + k)), 4) != 0;
	benchmark::DoNotOptimize(bad);
	if (bad)
		st.SkipWithError("wrong bytes read");
	st.counters["ops"] = kAccess4Batch;
}

// ---- MMU notifier: dispatch, fault check, copy-on-write storm --------
//
// A consumer that counts the pages its invalidate hook receives.
struct PageCounter {
	uint64_t pages = 0;
	memslot_notifier_ops ops{};

	PageCounter()
	{
		ops.size = sizeof(ops);
		ops.invalidate = [](memslot_vm *, void *ctx,
				    const memslot_slot *, uint64_t start,
				    uint64_t end,
				    memslot_notifier_event) -> bool {
			static_cast<PageCounter *>(ctx)->pages += end - start;
			return false;
		};
		ops.ctx = this;
	}
};

// One invalidation (start + end) of a random 4 KiB or 2 MiB hva range
// that hits slots, with one consumer registered: the dispatch cost.
void bm_notifier_dispatch(benchmark::State &st, int n, uint64_t len)
{
	const Layout &l = layout(n);
	const auto &q = len == kPage ? l.q4k : l.q2m;
	const auto &want = len == kPage ? l.q4k_pages : l.q2m_pages;
	Libmemslot *impl = fixture<Libmemslot>(n);
	PageCounter pc;
	uint64_t expect = 0, bad = 0;
	size_t pos = 0;

	if (!impl || memslot_notifier_register(impl->vm(), &pc.ops)) {
		st.SkipWithError("setup failed");
		return;
	}
	for (auto _ : st) {
		for (int k = 0; k < kHvaBatch; k++) {
			uint64_t s = q[pos + k];

			bad |= memslot_notifier_invalidate_start(
				impl->vm(), s, s + len, MEMSLOT_NOTIFY_UNMAP);
			bad |= memslot_notifier_invalidate_end(impl->vm(), s,
							       s + len);
			expect += want[pos + k];
		}
		pos = (pos + kHvaBatch) & (kQueries - 1);
	}
	memslot_notifier_unregister(impl->vm(), &pc.ops);
	if (bad || pc.pages != expect)
		st.SkipWithError("wrong dispatch");
	st.counters["ops"] = kHvaBatch;
}

// The fault side: take the sequence, then ask whether to retry, with no
// invalidation running (the common case a vCPU pays on every fault).
void bm_notifier_fault_check(benchmark::State &st, int n)
{
	const Layout &l = layout(n);
	Libmemslot *impl = fixture<Libmemslot>(n);
	uint64_t retries = 0;
	size_t pos = 0;

	if (!impl) {
		st.SkipWithError("setup failed");
		return;
	}
	for (auto _ : st) {
		for (int k = 0; k < kBatch; k++) {
			uint64_t seq = memslot_notifier_seq_begin(impl->vm());

			retries += memslot_notifier_retry(impl->vm(), seq,
							  l.rand_gfn[pos + k]);
		}
		pos = (pos + kBatch) & (kSeq - 1);
	}
	benchmark::DoNotOptimize(retries);
	if (retries)
		st.SkipWithError("spurious retry");
	st.counters["ops"] = kBatch;
}

// Copy-on-write storm (seed kvm-tdp-mmu-change-pte-prefetch): vCPU
// threads read a page, then write it.  The host maps each page as a
// shared read-only copy, so the write fault makes the simulated host MM
// break copy-on-write: invalidate start (the consumer drops the
// read-only mapping), copy the page, the change event, end.  The fault
// then has to retry.  In "retry" mode the consumer ignores the change
// event, so the retried access faults again and maps the new page; in
// "prefetch" mode the change hook installs the writable mapping, so the
// retried access finds it.  faults_per_write counts write faults per
// guest write (the seed: about 2 without prefetch, 1 with).
//
// The consumer's mappings ("stage-2 table") are one atomic word per page
// that the vCPU reads without a lock, as hardware walks page tables; the
// consumer installs and zaps under its mapping lock.  op_ns is the time
// of the read + write sequence per page, resets excluded.
constexpr int kCowVcpus = 2;
constexpr int kCowPages = 128;		// per vCPU thread

struct CowStorm {
	memslot_vm *vm = nullptr;
	int n = 0;
	bool prefetch = false;
	std::mutex mmu;
	std::vector<std::atomic<uintptr_t>> tlb;	// page | writable bit
	std::vector<uint8_t *> host;			// what the host maps
	std::vector<uint8_t> shared;			// host copy-on-write
	std::vector<uint64_t> gfn, hva;
	std::vector<uint8_t> pool;			// private page copies
	alignas(4096) static inline uint8_t src[4096];	// the shared copy
	memslot_notifier_ops ops{};

	CowStorm(memslot_vm *v, const Layout &l, bool pf)
		: vm(v), n(l.n), prefetch(pf), tlb(kCowVcpus * kCowPages),
		  host(tlb.size()), shared(tlb.size()), gfn(tlb.size()),
		  hva(tlb.size()), pool(tlb.size() * kPage)
	{
		// Page k: slot k % n, page k / n inside it.
		for (size_t k = 0; k < tlb.size(); k++) {
			const base_slot &s = l.slots[k % n];

			gfn[k] = s.base_gfn + k / n;
			hva[k] = s.hva + k / n * kPage;
		}
		ops.size = sizeof(ops);
		ops.invalidate = on_invalidate;
		ops.change = on_change;
		ops.ctx = this;
	}

	// Which page of the working set @gfn of @slot is, or -1.
	long index(const memslot_slot *slot, uint64_t g) const
	{
		uint64_t off = g - memslot_slot_base_gfn(slot);
		uint64_t k = off * n + memslot_slot_id(slot);

		return k < tlb.size() ? (long)k : -1;
	}
	static bool on_invalidate(memslot_vm *, void *ctx,
				  const memslot_slot *slot, uint64_t start,
				  uint64_t end, memslot_notifier_event)
	{
		auto *c = static_cast<CowStorm *>(ctx);
		std::lock_guard<std::mutex> g(c->mmu);

		for (uint64_t x = start; x < end; x++) {
			long k = c->index(slot, x);

			if (k >= 0)
				c->tlb[k].store(0, std::memory_order_relaxed);
		}
		return false;
	}
	static void on_change(memslot_vm *, void *ctx,
			      const memslot_slot *slot, uint64_t g,
			      uint64_t, bool writable)
	{
		auto *c = static_cast<CowStorm *>(ctx);
		long k = c->index(slot, g);

		if (!c->prefetch || k < 0)
			return;
		std::lock_guard<std::mutex> lock(c->mmu);
		c->tlb[k].store((uintptr_t)c->host[k] | writable,
				std::memory_order_release);
	}

	// The host's get-user-pages; a write to a shared page breaks
	// copy-on-write, which the host announces to the notifier.
	uint8_t *gup(size_t k, bool write)
	{
		if (write && shared[k]) {
			memslot_notifier_invalidate_start(
				vm, hva[k], hva[k] + kPage,
				MEMSLOT_NOTIFY_UNMAP);
			host[k] = &pool[k * kPage];
			memcpy(host[k], src, kPage);
			shared[k] = false;
			memslot_notifier_change(vm, hva[k], true);
			memslot_notifier_invalidate_end(vm, hva[k],
							hva[k] + kPage);
		}
		return host[k];
	}
	// One fault, KVM's way: sequence, translate, resolve, then retry
	// check and install under the mapping lock.
	bool fault(size_t k, bool write)
	{
		uint64_t seq = memslot_notifier_seq_begin(vm), h = 0;
		bool installed = false;

		memslot_read_lock(vm);
		if (!memslot_gfn_to_hva(vm, 0, gfn[k], write, &h) &&
		    h == hva[k]) {
			uint8_t *page = gup(k, write);
			std::lock_guard<std::mutex> g(mmu);

			installed = !memslot_notifier_retry(vm, seq, gfn[k]);
			if (installed)
				tlb[k].store((uintptr_t)page |
						     (write || !shared[k]),
					     std::memory_order_release);
		}
		memslot_read_unlock(vm);
		return installed;
	}
	// A guest read, then a guest write of page k; returns write faults.
	uint64_t touch(size_t k)
	{
		uint64_t faults = 0;
		uintptr_t e;

		while (!(e = tlb[k].load(std::memory_order_acquire)))
			fault(k, false);
		uint8_t v = *(volatile uint8_t *)(e & ~(uintptr_t)1);
		while (!((e = tlb[k].load(std::memory_order_acquire)) & 1)) {
			fault(k, true);
			faults++;
		}
		*(volatile uint8_t *)(e & ~(uintptr_t)1) = (uint8_t)(v + 1);
		return faults;
	}
	void reset(size_t k)
	{
		host[k] = src;
		shared[k] = true;
		tlb[k].store(0, std::memory_order_relaxed);
	}
};

// The batch of one vCPU: read then write each of its pages, then put
// them back to shared (not timed).
void cow_batch(CowStorm &c, int v, std::atomic<uint64_t> &faults,
	       std::atomic<uint64_t> &ns)
{
	auto t0 = Clock::now();
	uint64_t f = 0;

	for (int i = 0; i < kCowPages; i++)
		f += c.touch(v * kCowPages + i);
	ns += (uint64_t)ns_since(t0);
	faults += f;
	for (int i = 0; i < kCowPages; i++)
		c.reset(v * kCowPages + i);
}

// vCPU 0 runs on the benchmark thread, the others on helper threads that
// start a batch when @go moves; no thread spins while another works.
void bm_cow_storm(benchmark::State &st, int n, bool prefetch)
{
	Libmemslot *impl = fixture<Libmemslot>(n);

	if (!impl) {
		st.SkipWithError("setup failed");
		return;
	}
	CowStorm c(impl->vm(), layout(n), prefetch);
	std::atomic<uint64_t> go{0}, done{0}, faults{0}, ns{0};
	std::atomic<bool> stop{false};
	std::vector<std::thread> vcpus;

	if (memslot_notifier_register(c.vm, &c.ops)) {
		st.SkipWithError("register failed");
		return;
	}
	for (size_t k = 0; k < c.tlb.size(); k++)
		c.reset(k);
	for (int v = 1; v < kCowVcpus; v++)
		vcpus.emplace_back([&, v] {
			uint64_t seen = 0;

			memslot_thread_register(c.vm);
			for (;;) {
				while (go.load() == seen && !stop.load())
					std::this_thread::yield();
				if (stop.load())
					break;
				seen = go.load();
				cow_batch(c, v, faults, ns);
				done++;
			}
			memslot_thread_unregister(c.vm);
		});
	for (auto _ : st) {
		uint64_t want = done.load() + kCowVcpus - 1;

		go++;
		cow_batch(c, 0, faults, ns);
		while (done.load() != want)
			std::this_thread::yield();
	}
	stop = true;
	for (auto &t : vcpus)
		t.join();
	memslot_notifier_unregister(c.vm, &c.ops);
	double writes = (double)st.iterations() * kCowVcpus * kCowPages;

	st.counters["ops"] = kCowVcpus * kCowPages;
	st.counters["faults_per_write"] = writes ? faults.load() / writes : 0;
	st.counters["op_ns"] = writes ? ns.load() / writes : 0;
}

// ---- dirty logging -------------------------------------------------------
//
// dirty_iter (the seed's dirty_log_perf_test shape): 64 vCPUs over 64
// logging slots of kDirtyPages pages, run on the machine's threads; each
// vCPU marks every page of its own slot once per pass, the vCPUs of one
// thread interleaved page by page (so a single set-wide cache sees a new
// slot on almost every mark).  The first pass is "populate" (counter
// populate_ms); each timed iteration harvests every slot (not timed, counter
// harvest_ms) and then runs one pass.  Impls: marks through a vCPU cache,
// through the set-wide cache, and through a plain search.
//
// dirty_harvest: one logging slot of <pages> pages filled dense (every page)
// or sparse1pct (1% of pages, random), harvested with
// memslot_get_dirty_log(); counter memcpy_ns is a memcpy of the same number
// of bytes, x_memcpy the ratio, and memset_ns a memset of the output
// buffer alone: a GET writes every byte of it, so no harvest, however
// sparse, can beat that.  dirty_harvest_reader/<mode>/<pages>: the same
// with one registered reader thread entering and leaving read sections
// meanwhile, as a VMM's vCPU threads do, so the grace period a harvest
// may wait for is a real one (with no registered reader it is free).

constexpr uint64_t kDirtyPages = 16384;

enum class MarkVia { vcpu, setwide, search };

const char *mark_name(MarkVia v)
{
	return v == MarkVia::vcpu ? "libmemslot-vcpu"
	       : v == MarkVia::setwide ? "libmemslot" : "libmemslot-nocache";
}

struct DirtyVm {
	memslot_vm *vm = nullptr;
	std::vector<memslot_vcpu *> vcpus;

	DirtyVm()
	{
		memslot_config cfg;

		memslot_config_init_x86_64(&cfg);
		if (memslot_vm_create(&cfg, &vm))
			abort();
		for (int i = 0; i < kVcpus; i++) {
			memslot_region r = {};
			r.slot = (uint32_t)i;
			r.flags = MEMSLOT_MEM_LOG_DIRTY_PAGES;
			r.guest_phys_addr = base(i) * kPage;
			r.memory_size = kDirtyPages * kPage;
			r.userspace_addr = kHvaBase + base(i) * kPage;
			memslot_vcpu *v;
			if (memslot_set_region(vm, &r, nullptr) ||
			    memslot_vcpu_create(vm, &v))
				abort();
			vcpus.push_back(v);
		}
	}
	~DirtyVm()
	{
		for (auto *v : vcpus)
			memslot_vcpu_destroy(v);
		memslot_vm_destroy(vm);
	}
	static uint64_t base(int i) { return 16 + (uint64_t)i * (kDirtyPages + 4); }
};

void mark_one(DirtyVm &d, MarkVia via, int v, uint64_t gfn)
{
	switch (via) {
	case MarkVia::vcpu:
		memslot_vcpu_mark_page_dirty(d.vcpus[v], 0, gfn);
		break;
	case MarkVia::setwide:
		memslot_mark_page_dirty(d.vm, 0, gfn);
		break;
	case MarkVia::search:
		memslot_slot_mark_page_dirty(
			memslot_search(d.vm, 0, gfn, false), gfn);
		break;
	}
}

// One pass: thread t runs vCPUs t, t + T, ...; returns seconds.
double dirty_pass(DirtyVm &d, MarkVia via, unsigned int threads)
{
	std::vector<std::thread> th;
	auto t0 = std::chrono::steady_clock::now();

	for (unsigned int t = 0; t < threads; t++)
		th.emplace_back([&d, via, t, threads] {
			memslot_thread_register(d.vm);
			memslot_read_lock(d.vm);
			for (uint64_t p = 0; p < kDirtyPages; p++)
				for (int v = (int)t; v < kVcpus; v += (int)threads)
					mark_one(d, via, v, DirtyVm::base(v) + p);
			memslot_read_unlock(d.vm);
			memslot_thread_unregister(d.vm);
		});
	for (auto &x : th)
		x.join();
	return std::chrono::duration<double>(std::chrono::steady_clock::now() -
					     t0).count();
}

// Harvest every slot; false if a slot lacks a page.
bool dirty_harvest_all(DirtyVm &d, std::vector<uint64_t> &bm)
{
	bool ok = true;

	for (int i = 0; i < kVcpus; i++) {
		ok &= memslot_get_dirty_log(d.vm, (uint32_t)i, bm.data()) == 0;
		for (uint64_t w : bm)
			ok &= w == ~0ull;
	}
	return ok;
}

void bm_dirty_iter(benchmark::State &st, MarkVia via)
{
	unsigned int threads = std::max(1u, std::thread::hardware_concurrency());
	DirtyVm d;
	std::vector<uint64_t> bm(kDirtyPages / 64);
	double populate = dirty_pass(d, via, threads), harvest = 0;
	bool ok = true;
	int64_t n = 0;

	for (auto _ : st) {
		auto t0 = std::chrono::steady_clock::now();
		ok &= dirty_harvest_all(d, bm);
		harvest += std::chrono::duration<double>(
			std::chrono::steady_clock::now() - t0).count();
		st.SetIterationTime(dirty_pass(d, via, threads));
		n++;
	}
	if (!ok)
		st.SkipWithError("a mark was lost");
	st.counters["populate_ms"] = populate * 1e3;
	st.counters["harvest_ms"] = n ? harvest * 1e3 / (double)n : 0;
	st.counters["threads"] = threads;
	st.counters["ops"] = (double)(kVcpus * kDirtyPages);
}

// A vCPU-like reader: short read sections until @stop.
void dirty_reader(memslot_vm *vm, const std::atomic<bool> &stop)
{
	memslot_thread_register(vm);
	while (!stop.load(std::memory_order_relaxed)) {
		memslot_read_lock(vm);
		benchmark::DoNotOptimize(memslot_gfn_to_slot(vm, 0, 16));
		memslot_read_unlock(vm);
	}
	memslot_thread_unregister(vm);
}

void bm_dirty_harvest(benchmark::State &st, bool dense, uint64_t pages,
		      bool reader)
{
	std::atomic<bool> stop{false};
	std::thread th;
	memslot_config cfg;
	memslot_vm *vm;
	memslot_region r = {};
	uint64_t words = pages / 64, expect = 0;
	std::vector<uint64_t> fill(words), out(words), copy(words);
	std::mt19937_64 rng(7);
	double memcpy_s = 0, memset_s = 0, harvest_s = 0;
	bool ok = true;

	for (uint64_t p = 0; p < pages; p++)
		if (dense || rng() % 100 == 0)
			fill[p / 64] |= 1ull << (p % 64), expect++;
	memslot_config_init_x86_64(&cfg);
	r.flags = MEMSLOT_MEM_LOG_DIRTY_PAGES;
	r.guest_phys_addr = 16 * kPage;
	r.memory_size = pages * kPage;
	r.userspace_addr = kHvaBase;
	if (memslot_vm_create(&cfg, &vm) || memslot_set_region(vm, &r, nullptr))
		abort();
	if (reader)
		th = std::thread(dirty_reader, vm, std::cref(stop));
	for (auto _ : st) {
		ok &= memslot_dirty_merge(vm, 0, fill.data()) == 0;
		auto t0 = std::chrono::steady_clock::now();
		ok &= memslot_get_dirty_log(vm, 0, out.data()) == 0;
		auto t1 = std::chrono::steady_clock::now();
		memcpy(copy.data(), fill.data(), words * 8);
		benchmark::DoNotOptimize(copy.data());
		auto t2 = std::chrono::steady_clock::now();
		memset(copy.data(), 0, words * 8);
		benchmark::DoNotOptimize(copy.data());
		auto t3 = std::chrono::steady_clock::now();
		st.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
		harvest_s += std::chrono::duration<double>(t1 - t0).count();
		memcpy_s += std::chrono::duration<double>(t2 - t1).count();
		memset_s += std::chrono::duration<double>(t3 - t2).count();
		// Every word, outside the clock: a harvest that lost or
		// invented a bit anywhere fails the test.
		ok &= out == fill;
	}
	stop = true;
	if (reader)
		th.join();
	memslot_vm_destroy(vm);
	if (!ok)
		st.SkipWithError("harvest differs from what was marked");
	double per = memcpy_s / (double)st.iterations();
	st.counters["memcpy_ns"] = per * 1e9;
	st.counters["memset_ns"] = memset_s / (double)st.iterations() * 1e9;
	st.counters["x_memcpy"] = memcpy_s > 0 ? harvest_s / memcpy_s : 0;
	st.counters["dirty_pages"] = (double)expect;
	st.counters["bytes"] = (double)(words * 8);
}

void add_dirty_harvest(bool reader, bool dense)
{
	for (uint64_t pages : { 262144ull, 16777216ull }) {
		std::string name = std::string("memslots/dirty_harvest") +
			(reader ? "_reader/" : "/") +
			(dense ? "dense" : "sparse1pct") + "/" +
			std::to_string(pages);
		benchmark::RegisterBenchmark(name.c_str(),
			[dense, pages, reader](benchmark::State &st) {
				bm_dirty_harvest(st, dense, pages, reader);
			})
			->UseManualTime()
			->Unit(benchmark::kMicrosecond);
	}
}

void add_dirty()
{
	for (MarkVia v : { MarkVia::vcpu, MarkVia::setwide, MarkVia::search }) {
		std::string name = std::string("memslots/dirty_iter/") +
				   mark_name(v) + "/" + std::to_string(kVcpus);
		benchmark::RegisterBenchmark(name.c_str(),
			[v](benchmark::State &st) { bm_dirty_iter(st, v); })
			->UseManualTime()
			->Iterations(3)
			->Unit(benchmark::kMillisecond);
	}
	for (bool reader : { false, true })
		for (bool dense : { true, false })
			add_dirty_harvest(reader, dense);
}

// ---- registration -----------------------------------------------------

void add(const std::string &test, const char *impl, int n,
	 std::function<void(benchmark::State &)> fn)
{
	std::string name = "memslots/" + test + "/" + impl + "/" +
			   std::to_string(n);

	benchmark::RegisterBenchmark(name.c_str(), fn)
		->Unit(benchmark::kNanosecond);
}

template <class I>
void add_lookups(const std::string &test, Pattern p, int n)
{
	add(test, I::name(), n,
	    [n, p](benchmark::State &st) { bm_lookup<I>(st, n, p); });
}

template <class... I>
void add_lookup_tests(const std::string &test, Pattern p, int n)
{
	(add_lookups<I>(test, p, n), ...);
}

template <class... I>
void add_page_lookup_tests(int n)
{
	(add("lookup_vmmlayout", I::name(), n,
	     [n](benchmark::State &st) { bm_lookup_pages<I>(st, n); }),
	 ...);
}

template <class I>
void add_vcpu_threads()
{
	std::string name = std::string("memslots/lookup_vcpu64/") + I::name() +
			   "/" + std::to_string(kVcpus);

	benchmark::RegisterBenchmark(name.c_str(), bm_vcpu_threads<I>)
		->Setup(vcpu_setup<I>)
		->Threads(kVcpuThreads)
		->UseRealTime()
		->Unit(benchmark::kNanosecond);
}

template <class I>
void add_hva(int n)
{
	add("unmap", I::name(), n, [n](benchmark::State &st) {
		bm_unmap<I>(st, n, kPage);
	});
	add("unmap_2m", I::name(), n, [n](benchmark::State &st) {
		bm_unmap<I>(st, n, k2M);
	});
	add("hva_range_4k", I::name(), n, [n](benchmark::State &st) {
		bm_hva_range<I>(st, n, kPage);
	});
	add("hva_range_2m", I::name(), n, [n](benchmark::State &st) {
		bm_hva_range<I>(st, n, k2M);
	});
}

template <class I>
void add_map(int n)
{
	add("map", I::name(), n, [n](benchmark::State &st) {
		bm_map<I>(st, n);
	});
}

template <class I>
void add_writes(int n)
{
	const char *name = I::name();

	add("slot_setup", name, n, [n](benchmark::State &st) {
		bm_setup<I>(st, n, false);
	});
	add("create", name, n, [n](benchmark::State &st) {
		bm_create_delete<I>(st, n, Op::create);
	});
	add("delete", name, n, [n](benchmark::State &st) {
		bm_create_delete<I>(st, n, Op::remove);
	});
	add("flags", name, n, [n](benchmark::State &st) {
		bm_flags<I>(st, n);
	});
	add("move_active", name, n, [n](benchmark::State &st) {
		bm_move<I>(st, n, true);
	});
	add("move_inactive", name, n, [n](benchmark::State &st) {
		bm_move<I>(st, n, false);
	});
}

void add_access(int n)
{
	add("access_read64k", "libmemslot", n, [n](benchmark::State &st) {
		bm_access_read64k(st, n, AccessImpl::libmemslot);
	});
	add("access_read64k", "memcpy", n, [n](benchmark::State &st) {
		bm_access_read64k(st, n, AccessImpl::memcpy);
	});
	add("access_read4", "libmemslot-vcpu", n, [n](benchmark::State &st) {
		bm_access_read4(st, n);
	});
}

void add_notifier(int n)
{
	add("notifier_dispatch_4k", "libmemslot", n,
	    [n](benchmark::State &st) {
		    bm_notifier_dispatch(st, n, kPage);
	    });
	add("notifier_dispatch_2m", "libmemslot", n,
	    [n](benchmark::State &st) {
		    bm_notifier_dispatch(st, n, k2M);
	    });
	add("notifier_fault_check", "libmemslot", n,
	    [n](benchmark::State &st) { bm_notifier_fault_check(st, n); });
	// cow_storm's name carries the mode where the others carry the
	// implementation: memslots/cow_storm/<mode>/<slots>.
	add("cow_storm", "retry", n,
	    [n](benchmark::State &st) { bm_cow_storm(st, n, false); });
	add("cow_storm", "prefetch", n,
	    [n](benchmark::State &st) { bm_cow_storm(st, n, true); });
}

// 1M slots (memslot_config_init_unbounded()): lookups, one create, the
// whole setup as one transaction and as 1M single creates, and memory.
// The array baseline is left out: like KVM before 5.15 it indexes ids
// with 16 bits, and each of its changes copies the whole array (tens of
// MB at 1M), so 1M creates one by one would take hours.
void add_big()
{
	int n = kBigSlots;

	add_lookup_tests<Impl_rbtree, Impl_bsearch, Libmemslot,
			 LibmemslotNocache>("lookup_random", Pattern::random, n);
	add("create", Libmemslot::name(), n, [n](benchmark::State &st) {
		bm_create_delete<Libmemslot>(st, n, Op::create);
	});
	add("create", LibmemslotDeferred::name(), n,
	    [n](benchmark::State &st) {
		    bm_create_delete<LibmemslotDeferred>(st, n, Op::create);
	    });
	add("create", Impl_rbtree::name(), n, [n](benchmark::State &st) {
		bm_create_delete<Impl_rbtree>(st, n, Op::create);
	});
	add("slot_setup", "libmemslot-txn", n, [n](benchmark::State &st) {
		bm_setup<Libmemslot>(st, n, true);
	});
	add("slot_setup", Impl_rbtree::name(), n, [n](benchmark::State &st) {
		bm_setup<Impl_rbtree>(st, n, false);
	});
	add("memory_per_slot", Libmemslot::name(), n,
	    [n](benchmark::State &st) { bm_memory<Libmemslot>(st, n); });
}

void add_read_sections()
{
	add("read_section", "liburcu-memb", 1, [](benchmark::State &st) {
		bm_read_section(st, memslot_rcu_urcu_memb());
	});
	add("read_section", "counter", 1, [](benchmark::State &st) {
		bm_read_section(st, memslot_rcu_counter());
	});
	add("read_section", "none", 1, [](benchmark::State &st) {
		bm_read_section(st, memslot_rcu_none());
	});
}

void register_all()
{
	for (int n : kSlotCounts) {
		(add_writes<Impl_array>(n), add_writes<Impl_rbtree>(n));
		(add_writes<Impl_bsearch>(n), add_writes<Libmemslot>(n));
		add_writes<LibmemslotNogp>(n);
		add("slot_setup", "libmemslot-txn", n,
		    [n](benchmark::State &st) {
			    bm_setup<Libmemslot>(st, n, true);
		    });
		add_lookup_tests<Impl_array, Impl_rbtree, Impl_bsearch,
				 Libmemslot, LibmemslotVcpu, LibmemslotNocache>(
			"lookup_random", Pattern::random, n);
		add_lookups<FloorImpl>("lookup_random", Pattern::random, n);
#ifdef MEMSLOT_BENCH_VMM
		add_lookups<VmMemoryImpl>("lookup_random", Pattern::random, n);
#endif
		add_lookup_tests<Impl_array, Impl_rbtree, Impl_bsearch,
				 Libmemslot, LibmemslotVcpu, LibmemslotNocache>(
			"lookup_run64", Pattern::run64, n);
		if (n == kVcpus) {
			add_vcpu_threads<LibmemslotVcpu>();
			add_vcpu_threads<Libmemslot>();
			add_vcpu_threads<LibmemslotNocache>();
			add_vcpu_threads<Impl_array>();
			add_vcpu_threads<Impl_rbtree>();
			add_vcpu_threads<Impl_bsearch>();
		}
		(add_map<Impl_array>(n), add_map<Impl_rbtree>(n));
		(add_map<Impl_bsearch>(n), add_map<Libmemslot>(n));
		(add_map<LibmemslotVcpu>(n), add_map<LibmemslotNocache>(n));
		(add_hva<Impl_array>(n), add_hva<Impl_rbtree>(n));
		(add_hva<Impl_bsearch>(n), add_hva<Libmemslot>(n));
		add_notifier(n);
		add_access(n);
	}
	for (int n : kPageSlotCounts) {
		add_page_lookup_tests<Impl_array, Impl_rbtree, Impl_bsearch,
				      Libmemslot, LibmemslotNocache>(n);
#ifdef MEMSLOT_BENCH_VMM
		add_page_lookup_tests<VmMemoryImpl>(n);
#endif
	}
	add_dirty();
	add_big();
	add_read_sections();
}

// A display reporter that remembers whether any benchmark failed its
// checks, so that the program (and the meson test) fails too.
template <class Base>
class FailTracker : public Base {
public:
	void ReportRuns(const std::vector<benchmark::BenchmarkReporter::Run>
				&runs) override
	{
		for (const auto &r : runs)
			failed_ |= r.error_occurred;
		Base::ReportRuns(runs);
	}
	bool failed() const { return failed_; }

private:
	bool failed_ = false;
};

template <class Base>
bool run_all()
{
	FailTracker<Base> reporter;

	benchmark::RunSpecifiedBenchmarks(&reporter);
	return !reporter.failed();
}

bool has_prefix_arg(int argc, char **argv, const char *prefix)
{
	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], prefix, strlen(prefix)))
			return true;
	return false;
}

}  // namespace

int main(int argc, char **argv)
{
	std::vector<char *> args(argv, argv + argc);
	const char *quick = getenv("MEMSLOT_BENCH_QUICK");
	// Quick mode (--quick, MEMSLOT_BENCH_QUICK, meson's bench_quick): every
	// test at 64 and 509 slots, whose names may go on past the count
	// (threads, manual time), and the harvest and read-section tests,
	// which have counts of their own.
	static char filter[] = "--benchmark_filter=/(64|509)(/.*)?$|/dirty_harvest[a-z_]*/[a-z0-9-]+/262144/|/read_section/";
	static char min_time[] = "--benchmark_min_time=0.01";
	bool want_quick = (quick && *quick && strcmp(quick, "0")) ||
			  has_prefix_arg(argc, argv, "--quick");

	// Quick mode also wins over a min_time given by a build rule.
	args.erase(std::remove_if(args.begin() + 1, args.end(),
				  [want_quick](char *a) {
					  return !strcmp(a, "--quick") ||
						 (want_quick &&
						  !strncmp(a, min_time, 21));
				  }),
		   args.end());
	if (want_quick && !has_prefix_arg(argc, argv, "--benchmark_filter"))
		args.push_back(filter);
	if (want_quick)
		args.push_back(min_time);
	args.push_back(nullptr);
	int nargs = (int)args.size() - 1;

	// Fixed malloc thresholds: otherwise glibc's adaptive mmap threshold
	// makes the array baseline's big copies page-fault in some runs and
	// not in others, depending on what ran before.
	mallopt(M_MMAP_THRESHOLD, 256 << 20);
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	register_all();
	register_writer_latency();
	register_dirty_peer();
	benchmark::Initialize(&nargs, args.data());
	if (benchmark::ReportUnrecognizedArguments(nargs, args.data()))
		return 1;
	bool ok = has_prefix_arg(argc, argv, "--benchmark_format=json")
		? run_all<benchmark::JSONReporter>()
		: run_all<benchmark::ConsoleReporter>();
	benchmark::Shutdown();
	g_fixture.reset();
	if (!ok)
		fprintf(stderr, "bench_memslots: some benchmarks failed\n");
	return ok ? 0 : 1;
}
