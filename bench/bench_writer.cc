// SPDX-License-Identifier: MIT
//
// memslots/writer_latency/<mode>/<slots>: how long one slot change keeps
// its caller, with 8 reader threads busy in read sections the whole time
// (more threads than this machine has CPUs, as on a loaded host).
//
// Modes: "blocking" is memslot_set_regions() (KVM's swap: the call waits
// for a grace period, two for a delete); "deferred" is
// memslot_set_regions_deferred() (publish at once, reclaim later).  Each
// iteration is one change, alternately creating and deleting the Nth slot
// in a hole in the middle of N - 1 one-page slots; counters p50_ns, p99_ns and max_ns are
// percentiles of the per-call latency over the run.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <memslot/memslot.h>

#include "bench_writer.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kPage = 4096;
constexpr int kReaders = 8;
constexpr int kLookupsPerSection = 64;
constexpr int kChanges = 4000;
constexpr int kWriterSlots = 32764;

memslot_region one_page(uint32_t id, uint64_t gfn)
{
	memslot_region r{};

	r.slot = id;
	r.guest_phys_addr = gfn * kPage;
	r.memory_size = kPage;
	r.userspace_addr = (1ull << 32) + gfn * kPage;
	return r;
}

// N - 1 one-page slots with one-page holes, made in one transaction; the
// change the benchmark times adds and removes the Nth.
memslot_vm *make_vm(int n)
{
	memslot_config cfg;
	memslot_vm *vm = nullptr;
	std::vector<memslot_region> r;

	memslot_config_init_x86_64(&cfg);
	if (memslot_vm_create(&cfg, &vm))
		return nullptr;
	for (int i = 0; i + 1 < n; i++)
		r.push_back(one_page((uint32_t)i, 2 * (uint64_t)i));
	if (memslot_set_regions(vm, r.data(), r.size(), nullptr)) {
		memslot_vm_destroy(vm);
		return nullptr;
	}
	return vm;
}

void reader(memslot_vm *vm, int n, std::atomic<bool> *stop,
	    std::atomic<uint64_t> *sections)
{
	uint64_t x = 88172645463325252ull, found = 0, count = 0;

	memslot_thread_register(vm);
	while (!stop->load(std::memory_order_relaxed)) {
		memslot_read_lock(vm);
		memslot_view *v = memslot_view_get(vm, 0);
		for (int i = 0; i < kLookupsPerSection; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			found += memslot_view_search(v, x % (2 * (uint64_t)n),
						     false) != nullptr;
		}
		memslot_read_unlock(vm);
		count++;
	}
	benchmark::DoNotOptimize(found);
	sections->fetch_add(count);
	memslot_thread_unregister(vm);
}

double percentile(std::vector<double> &v, double p)
{
	size_t k = (size_t)(p * (double)(v.size() - 1));

	std::nth_element(v.begin(), v.begin() + (long)k, v.end());
	return v[k];
}

void bm_writer_latency(benchmark::State &st, int n, bool deferred)
{
	memslot_vm *vm = make_vm(n);
	std::atomic<bool> stop{false};
	std::atomic<uint64_t> sections{0};
	std::vector<std::thread> readers;
	std::vector<double> lat;
	memslot_txn_result res{};
	uint64_t bad = 0, i = 0;

	if (!vm) {
		st.SkipWithError("setup failed");
		return;
	}
	// The slot that comes and goes: in a hole in the middle.
	memslot_region r = one_page((uint32_t)n - 1, (uint64_t)n + 1);
	for (int k = 0; k < kReaders; k++)
		readers.emplace_back(reader, vm, n, &stop, &sections);
	for (auto _ : st) {
		r.memory_size = i++ % 2 ? 0 : kPage;
		auto t0 = Clock::now();
		bad += (deferred ? memslot_set_regions_deferred(vm, &r, 1, &res)
				 : memslot_set_regions(vm, &r, 1, &res)) != 0;
		std::chrono::duration<double> d = Clock::now() - t0;
		st.SetIterationTime(d.count());
		lat.push_back(d.count() * 1e9);
	}
	stop = true;
	for (auto &t : readers)
		t.join();
	if (deferred)
		bad += memslot_vm_wait(vm, res.ticket) != 0;
	memslot_vm_destroy(vm);
	if (bad)
		st.SkipWithError("a change failed");
	st.counters["p50_ns"] = percentile(lat, 0.50);
	st.counters["p99_ns"] = percentile(lat, 0.99);
	st.counters["max_ns"] = *std::max_element(lat.begin(), lat.end());
	st.counters["reader_sections"] = (double)sections.load();
}

}  // namespace

void register_writer_latency()
{
	for (bool deferred : {false, true}) {
		std::string name = std::string("memslots/writer_latency/") +
				   (deferred ? "deferred" : "blocking") + "/" +
				   std::to_string(kWriterSlots);

		benchmark::RegisterBenchmark(name.c_str(),
					     [deferred](benchmark::State &st) {
						     bm_writer_latency(
							     st, kWriterSlots,
							     deferred);
					     })
			->Iterations(kChanges)
			->UseManualTime()
			->Unit(benchmark::kMicrosecond);
	}
}
