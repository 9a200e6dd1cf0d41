// SPDX-License-Identifier: MIT
//
// Dirty logging next to rust-vmm vm-memory's AtomicBitmap (bench/vm-memory,
// feature backend-bitmap), the dirty bitmap Firecracker keeps per guest
// memory region.
//
// memslots/dirty_harvest_peer/vm-memory-<mode>/<pages>: the peer of
// bench_memslots.cc's memslots/dirty_harvest/<mode>/<pages>, whose name
// carries the fill mode where other tests carry the implementation (there
// always libmemslot's memslot_get_dirty_log()), so here that place holds
// both.  Same fill (dense: every page; sparse1pct: 1% of the pages, drawn
// by the same generator and seed), same page counts, same counters
// (memcpy_ns: a memcpy of the bitmap's bytes).  After one untimed
// harvest, each iteration marks the fill with the crate's own
// Bitmap::mark_dirty (not timed), then times one
// AtomicBitmap::get_and_reset() into the caller's buffer: the crate swaps
// every word, clean or not, into a new Vec, which the C interface copies
// out and drops, all inside the timed call.
//
// memslots/dirty_mark/<impl>/<pages>: one mark per page of one stream of
// uniformly random pages of a <pages>-page region, kMarks per iteration,
// after one untimed pass over the whole stream; counter ns_per_mark.  "libmemslot-vcpu" is memslot_vcpu_mark_page_dirty()
// with the vCPU cache warm on the slot (a hit, then the atomic OR);
// "vm-memory" is Bitmap::mark_dirty(page * 4096, 4096) on the region's
// AtomicBitmap, as vm-memory marks a one-page write: a VMM's write path
// holds the region already, so it has no lookup to pay for.
//
// The vm-memory tests exist only in builds with MEMSLOT_BENCH_VMM
// (bench/meson.build); libmemslot's dirty_mark is always registered.  Every
// test compares what it harvests with what it marked and fails on a
// mismatch.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <memslot/memslot.h>

#include "bench_dirty_peer.h"
#ifdef MEMSLOT_BENCH_VMM
#include "vm-memory/vmmem.h"
#endif

namespace {

using Clock = std::chrono::steady_clock;
using Bits = std::vector<uint64_t>;	// bit p % 64 of word p / 64: page p

constexpr uint64_t kPage = 4096;
constexpr uint64_t kBaseGfn = 16;	// the slot's first gfn
constexpr size_t kStream = 1 << 16;	// pages in the mark stream
constexpr size_t kMarks = 4096;		// marks per iteration
const uint64_t kPageCounts[] = {262144, 16777216};

double seconds(Clock::time_point a, Clock::time_point b)
{
	return std::chrono::duration<double>(b - a).count();
}

void set_bit(Bits &b, uint64_t page)
{
	b[page / 64] |= 1ull << (page % 64);
}

std::vector<uint64_t> page_stream(uint64_t pages)
{
	std::vector<uint64_t> s(kStream);
	std::mt19937_64 rng(11);

	for (auto &p : s)
		p = rng() % pages;
	return s;
}

// The bits the stream sets.
Bits stream_bits(const std::vector<uint64_t> &s, uint64_t pages)
{
	Bits b(pages / 64);

	for (uint64_t p : s)
		set_bit(b, p);
	return b;
}

// Marks the whole stream once untimed, so that neither bitmap takes its
// first-touch page faults (or a cold cache) inside the timed loop, then
// runs the benchmark loop over the stream.
template <class Mark>
void mark_loop(benchmark::State &st, const std::vector<uint64_t> &s,
	       Mark mark)
{
	size_t i = 0;

	for (uint64_t p : s)
		mark(p);
	auto t0 = Clock::now();

	for (auto _ : st)
		for (size_t k = 0; k < kMarks; k++, i = (i + 1) % kStream)
			mark(s[i]);
	double ns = seconds(t0, Clock::now()) * 1e9;
	int64_t marks = st.iterations() * (int64_t)kMarks;

	st.counters["ops"] = kMarks;
	st.counters["ns_per_mark"] = marks ? ns / (double)marks : 0;
}

// One logging slot of @pages pages at gfn kBaseGfn, and one vCPU cache.
struct LogVm {
	memslot_vm *vm = nullptr;
	memslot_vcpu *vcpu = nullptr;

	explicit LogVm(uint64_t pages)
	{
		memslot_config cfg;
		memslot_region r = {};

		memslot_config_init_x86_64(&cfg);
		r.flags = MEMSLOT_MEM_LOG_DIRTY_PAGES;
		r.guest_phys_addr = kBaseGfn * kPage;
		r.memory_size = pages * kPage;
		r.userspace_addr = 1ull << 32;
		if (memslot_vm_create(&cfg, &vm) ||
		    memslot_set_region(vm, &r, nullptr) ||
		    memslot_vcpu_create(vm, &vcpu))
			abort();
	}
	~LogVm()
	{
		memslot_vcpu_destroy(vcpu);
		memslot_vm_destroy(vm);
	}
};

void bm_mark_libmemslot(benchmark::State &st, uint64_t pages)
{
	LogVm d(pages);
	std::vector<uint64_t> s = page_stream(pages);
	Bits out(pages / 64);
	memslot_vcpu *vcpu = d.vcpu;

	memslot_thread_register(d.vm);
	memslot_read_lock(d.vm);
	// The warm pass also leaves the vCPU cache on the slot.
	mark_loop(st, s, [vcpu](uint64_t p) {
		memslot_vcpu_mark_page_dirty(vcpu, 0, kBaseGfn + p);
	});
	memslot_read_unlock(d.vm);
	if (memslot_get_dirty_log(d.vm, 0, out.data()) ||
	    out != stream_bits(s, pages))
		st.SkipWithError("harvest differs from the marks");
	memslot_thread_unregister(d.vm);
}

#ifdef MEMSLOT_BENCH_VMM

// The pages of memslots/dirty_harvest's fill, drawn as bm_dirty_harvest()
// in bench_memslots.cc draws them, so that both harvest the same bitmap.
Bits harvest_fill(bool dense, uint64_t pages)
{
	Bits fill(pages / 64);
	std::mt19937_64 rng(7);

	for (uint64_t p = 0; p < pages; p++)
		if (dense || rng() % 100 == 0)
			set_bit(fill, p);
	return fill;
}

// Marks the fill with the crate's own calls: one range for a dense fill,
// each page of @sparse for a sparse one.
void mark_fill(const vmmem_bitmap *b, bool dense, uint64_t pages,
	       const std::vector<uint64_t> &sparse)
{
	if (dense)
		vmmem_bitmap_mark(b, 0, pages * kPage);
	else
		for (uint64_t p : sparse)
			vmmem_bitmap_mark(b, p * kPage, kPage);
}

uint64_t popcount(const Bits &b)
{
	uint64_t n = 0;

	for (uint64_t w : b)
		n += (uint64_t)__builtin_popcountll(w);
	return n;
}

std::vector<uint64_t> pages_of(const Bits &fill)
{
	std::vector<uint64_t> pages;

	for (size_t w = 0; w < fill.size(); w++)
		for (uint64_t x = fill[w]; x; x &= x - 1)
			pages.push_back(w * 64 + (uint64_t)__builtin_ctzll(x));
	return pages;
}

void bm_harvest_vmm(benchmark::State &st, bool dense, uint64_t pages)
{
	Bits fill = harvest_fill(dense, pages), out(fill.size()),
	     copy(fill.size());
	// Page by page for the sparse fill only: the dense one is one range.
	std::vector<uint64_t> sparse = dense ? std::vector<uint64_t>()
					     : pages_of(fill);
	vmmem_bitmap *b = vmmem_bitmap_create(pages, kPage);
	double memcpy_s = 0;
	bool ok = true;

	if (!b || vmmem_bitmap_pages(b) != pages) {
		vmmem_bitmap_destroy(b);
		st.SkipWithError("vmmem_bitmap_create failed");
		return;
	}
	// One untimed harvest first: the crate's Vec then comes from memory
	// the allocator has mapped already, as in a VMM that harvests
	// repeatedly, instead of taking its page faults in the first
	// iteration.
	vmmem_bitmap_get_and_reset(b, out.data(), out.size());
	for (auto _ : st) {
		mark_fill(b, dense, pages, sparse);
		auto t0 = Clock::now();
		size_t words = vmmem_bitmap_get_and_reset(b, out.data(),
							  out.size());
		auto t1 = Clock::now();
		memcpy(copy.data(), fill.data(), fill.size() * 8);
		benchmark::DoNotOptimize(copy.data());
		auto t2 = Clock::now();
		st.SetIterationTime(seconds(t0, t1));
		memcpy_s += seconds(t1, t2);
		ok &= words == pages / 64 + 1 && out == fill;
	}
	vmmem_bitmap_destroy(b);
	if (!ok)
		st.SkipWithError("harvest differs from what was marked");
	int64_t n = std::max<int64_t>(st.iterations(), 1);
	st.counters["memcpy_ns"] = memcpy_s / (double)n * 1e9;
	st.counters["dirty_pages"] = (double)popcount(fill);
	st.counters["bytes"] = (double)(fill.size() * 8);
}

void bm_mark_vmm(benchmark::State &st, uint64_t pages)
{
	std::vector<uint64_t> s = page_stream(pages);
	vmmem_bitmap *b = vmmem_bitmap_create(pages, kPage);
	Bits out(pages / 64);

	if (!b) {
		st.SkipWithError("vmmem_bitmap_create failed");
		return;
	}
	mark_loop(st, s, [b](uint64_t p) {
		vmmem_bitmap_mark(b, p * kPage, kPage);
	});
	vmmem_bitmap_get_and_reset(b, out.data(), out.size());
	vmmem_bitmap_destroy(b);
	if (out != stream_bits(s, pages))
		st.SkipWithError("harvest differs from the marks");
}

#endif  // MEMSLOT_BENCH_VMM

void add(const std::string &name,
	 std::function<void(benchmark::State &)> fn)
{
	benchmark::RegisterBenchmark(name.c_str(), fn);
}

}  // namespace

void register_dirty_peer()
{
	for (uint64_t pages : kPageCounts) {
		std::string n = "/" + std::to_string(pages);

		add("memslots/dirty_mark/libmemslot-vcpu" + n,
		    [pages](benchmark::State &st) {
			    bm_mark_libmemslot(st, pages);
		    });
#ifdef MEMSLOT_BENCH_VMM
		add("memslots/dirty_mark/vm-memory" + n,
		    [pages](benchmark::State &st) { bm_mark_vmm(st, pages); });
		for (bool dense : { true, false })
			benchmark::RegisterBenchmark(
				("memslots/dirty_harvest_peer/vm-memory-" +
				 std::string(dense ? "dense" : "sparse1pct") +
				 n).c_str(),
				[dense, pages](benchmark::State &st) {
					bm_harvest_vmm(st, dense, pages);
				})
				->UseManualTime()
				->Unit(benchmark::kMicrosecond);
#endif
	}
}
