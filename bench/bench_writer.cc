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
// in a hole in the middle of N - 1 one-page slots; counters p50_ns, p99_ns
// and max_ns are percentiles of the per-call latency over the run.
//
// The timed changes follow a warm-up of untimed ones, so that they measure
// the steady state: in deferred mode, until the reclaim thread has
// completed two passes (it sizes its stock of spare objects to what the
// writer took between passes; before its first pass every change
// allocates, and fresh memory faults in), at least kWarmupMin changes; in
// blocking mode kWarmupMin changes.  Nothing is hidden: first_p50_ns,
// first_p99_ns and first_max_ns are the same percentiles over the warm-up
// changes, warmup_changes their number.  cpu_p50_ns, cpu_p99_ns and
// cpu_max_ns are the same percentiles of the writer thread's CPU time per
// timed change: what the change itself costs, without the time the
// scheduler gave the readers (on a 2-CPU machine most of the max).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <time.h>

#include <memslot/memslot.h>

#include "bench_writer.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kPage = 4096;
constexpr int kReaders = 8;
constexpr int kLookupsPerSection = 64;
constexpr int kChanges = 4000;
constexpr int kWriterSlots = 32764;
constexpr int kWarmupMin = 20;
constexpr int kWarmupMax = 100000;

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

double thread_cpu_ns()
{
	timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

// One change: create or delete the slot of @r by the parity of @i.
// Return: its latency in ns, negative if it failed; its CPU time (read
// outside the latency's window) in *@cpu.
double timed_change(memslot_vm *vm, memslot_region *r, uint64_t i,
		    bool deferred, memslot_txn_result *res, double *cpu)
{
	r->memory_size = i % 2 ? 0 : kPage;
	double c0 = thread_cpu_ns();
	auto t0 = Clock::now();
	int err = deferred ? memslot_set_regions_deferred(vm, r, 1, res)
			   : memslot_set_regions(vm, r, 1, res);
	std::chrono::duration<double> d = Clock::now() - t0;

	*cpu = thread_cpu_ns() - c0;
	return err ? -1.0 : d.count() * 1e9;
}

// Whether the warm-up is over: @mark is the ticket of the first change
// made after a pass completed (0 until then), which the next pass
// completes.
bool warm(memslot_vm *vm, bool deferred, uint64_t i, uint64_t ticket,
	  uint64_t *mark)
{
	uint64_t done;

	if (i < (uint64_t)kWarmupMin)
		return false;
	if (!deferred || i >= (uint64_t)kWarmupMax)
		return true;
	done = memslot_vm_completed(vm);
	if (!*mark && done)
		*mark = ticket;
	return *mark && done >= *mark;
}

void set_percentiles(benchmark::State &st, const char *prefix,
		     std::vector<double> &lat)
{
	std::string p(prefix);

	st.counters[p + "p50_ns"] = percentile(lat, 0.50);
	st.counters[p + "p99_ns"] = percentile(lat, 0.99);
	st.counters[p + "max_ns"] = *std::max_element(lat.begin(), lat.end());
}

void bm_writer_latency(benchmark::State &st, int n, bool deferred)
{
	memslot_vm *vm = make_vm(n);
	std::atomic<bool> stop{false};
	std::atomic<uint64_t> sections{0};
	std::vector<std::thread> readers;
	std::vector<double> lat, first, cpu;
	memslot_txn_result res{};
	uint64_t bad = 0, i = 0, mark = 0;
	double ns, c;

	if (!vm) {
		st.SkipWithError("setup failed");
		return;
	}
	// The slot that comes and goes: in a hole in the middle.
	memslot_region r = one_page((uint32_t)n - 1, (uint64_t)n + 1);
	for (int k = 0; k < kReaders; k++)
		readers.emplace_back(reader, vm, n, &stop, &sections);
	// Even counts: the timed changes start with a create.
	while (!warm(vm, deferred, i, res.ticket, &mark) || i % 2) {
		ns = timed_change(vm, &r, i++, deferred, &res, &c);
		bad += ns < 0;
		first.push_back(ns);
	}
	for (auto _ : st) {
		ns = timed_change(vm, &r, i++, deferred, &res, &c);
		bad += ns < 0;
		st.SetIterationTime(ns < 0 ? 0 : ns * 1e-9);
		lat.push_back(ns);
		cpu.push_back(c);
	}
	stop = true;
	for (auto &t : readers)
		t.join();
	if (deferred)
		bad += memslot_vm_wait(vm, res.ticket) != 0;
	memslot_vm_destroy(vm);
	if (bad)
		st.SkipWithError("a change failed");
	set_percentiles(st, "", lat);
	set_percentiles(st, "first_", first);
	set_percentiles(st, "cpu_", cpu);
	st.counters["warmup_changes"] = (double)first.size();
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
