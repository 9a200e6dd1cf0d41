#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Run the benchmark suite and write doc/benchmarks.md and doc/bench-*.png.

    python3 bench/report.py                  # build, run everything, report
    python3 bench/report.py --min-time 0.05  # shorter run
    python3 bench/report.py --json out.json  # report from an earlier run
    python3 bench/report.py --peer-only      # vm-memory section alone

Builds bench/bench_memslots in a release build directory of its own
(default /tmp/memslot-bench), runs it with JSON output, runs
bench/callgrind.sh for instruction counts, and writes the seed-style tables
(baseline vs libmemslot, with ratios), the targets, a table of every test
and one plot per test (slot count on a log axis, ns per op).

--peer-only runs only the lookup tests that rust-vmm vm-memory takes part
in (lookup_random, lookup_vmmlayout), three repetitions each (medians), and
rewrites only the vm-memory section of doc/benchmarks.md and the
lookup_vmmlayout plot.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(SRC, "doc")
SLOTS = [1, 10, 30, 50, 64, 100, 509, 4096, 32764]
SEED_SLOTS = [10, 30, 50, 100, 509, 32764]
BASELINES = ["array", "rbtree", "bsearch"]
TEST_ORDER = [
    "slot_setup", "lookup_random", "lookup_vmmlayout", "lookup_run64", "lookup_vcpu64", "map",
    "unmap", "unmap_2m", "hva_range_4k", "hva_range_2m", "move_active",
    "move_inactive", "create", "delete", "flags",
]
TEST_DOC = {
    "slot_setup": "create N slots one by one into an empty index (whole "
                  "setup; libmemslot-txn: one memslot_set_regions call, "
                  "its request array built before the clock starts, as "
                  "the baselines take the layout's records as they are)",
    "lookup_random": "gfn -> slot, uniformly random gfns over all slots",
    "lookup_vmmlayout": "gfn -> slot in vm-memory's layout: N one-page "
                        "slots with one-page holes, uniformly random gfns "
                        "over the 2N pages (about half in holes, which "
                        "must find nothing)",
    "lookup_run64": "gfn -> slot, runs of 64 consecutive gfns, then a jump",
    "lookup_vcpu64": "64 vCPUs on 2 threads, each vCPU one lookup per turn "
                     "in its own slot (64 slots)",
    "map": "gfn -> hva for every page of the slots, in gfn order (per page)",
    "unmap": "hva-range dispatch of the whole area page by page "
             "(per 4 KiB query)",
    "unmap_2m": "hva-range dispatch of the area in 2 MiB chunks "
                "(per 2 MiB query)",
    "hva_range_4k": "random 4 KiB hva range -> slots and gfn ranges",
    "hva_range_2m": "random 2 MiB hva range -> slots and gfn ranges",
    "move_active": "move the slot a reader is using, and back (per move)",
    "move_inactive": "move a slot no reader uses, and back (per move)",
    "create": "create one slot at N slots (its delete untimed)",
    "delete": "delete one slot at N slots (its re-create untimed)",
    "flags": "toggle dirty logging on one slot",
}
IMPL_DOC = {
    "array": "KVM before 5.15: sorted array of slot structs, last-used "
             "index, binary search, whole array copied per change (twice "
             "for delete/move), linear hva scan",
    "rbtree": "KVM since 5.15 gfn index: red-black tree (glibc tsearch) "
              "keyed by base gfn, id table, in-order walk for hva ranges",
    "bsearch": "a C model of rust-vmm vm-memory (Firecracker): sorted "
               "vector of slot pointers, glibc bsearch, new vector per "
               "change, linear hva scan",
    "libmemslot": "memslot_gfn_to_slot (set-wide last-used cache), default "
                  "liburcu backend: writes include the grace periods",
    "libmemslot-nogp": "libmemslot with memslot_rcu_none(): the "
                       "data-structure work of a write only",
    "libmemslot-txn": "slot setup as one memslot_set_regions transaction",
    "libmemslot-vcpu": "memslot_vcpu_gfn_to_slot (per-vCPU cache)",
    "libmemslot-nocache": "memslot_search (index only, no cache)",
    "floor": "not an index: one out-of-line call that finds the slot by "
             "arithmetic on bench's fixed layout stride (lookup_random "
             "only), the least any lookup through the same loop costs",
    "vm-memory": "rust-vmm vm-memory 0.10 itself (Debian's crate, cargo "
                 "--release): GuestMemoryMmap::find_region over regions "
                 "from GuestMemoryMmap::from_ranges (one anonymous mmap "
                 "each), called through bench/vm-memory's C interface; "
                 "lookup tests only",
}
# The vm-memory section: tests it takes part in, and the rows it shows.
PEER = "vm-memory"
PEER_TESTS = ["lookup_random", "lookup_vmmlayout"]
PEER_ROWS = ["libmemslot", "vm-memory", "rbtree", "bsearch", "array",
             "floor"]
PEER_HEADING = "## rust-vmm vm-memory, the real crate"
PEER_REPS = 5
PEER_MIN_TIME = 0.1


def sh(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def build(build_dir):
    if not os.path.exists(os.path.join(build_dir, "build.ninja")):
        sh(["meson", "setup", build_dir, SRC, "--buildtype=release",
            "-Db_sanitize=none", "-Dtests=disabled", "-Dexamples=false",
            "-Dbench=true"])
    sh(["meson", "compile", "-C", build_dir, "bench/bench_memslots",
        "bench/lookup_count"])
    return os.path.join(build_dir, "bench", "bench_memslots")


def run_suite(exe, out, min_time, extra):
    sh([exe, "--benchmark_format=console", "--benchmark_out=" + out,
        "--benchmark_out_format=json",
        "--benchmark_min_time=%g" % min_time] + extra)


def run_callgrind(build_dir):
    script = os.path.join(SRC, "bench", "callgrind.sh")
    try:
        res = subprocess.run([script, build_dir], capture_output=True,
                             text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "callgrind.sh failed: %s" % e, {}
    counts = {}
    for line in res.stdout.splitlines():
        m = re.search(r"\((\w+)\)\s+([\d.]+)\s+([\d.]+)$", line)
        if m:
            counts[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return (res.stdout + res.stderr).strip(), counts


def load(path, clock="real_time"):
    with open(path) as f:
        data = json.load(f)
    res, errors = {}, []
    for b in data["benchmarks"]:
        name = b["name"]
        if b.get("run_type") == "aggregate":
            # With repetitions, take the median of each benchmark.
            if b.get("aggregate_name") != "median":
                continue
            name = b["run_name"]
        # Threaded runs append /real_time/threads:T to the name.
        parts = [p for p in name.split("/")
                 if p != "real_time" and not p.startswith("threads:")]
        # An error counts whatever the name's shape (the dirty and writer
        # tests carry /iterations:N or /manual_time suffixes).
        if b.get("error_occurred"):
            errors.append("%s: %s" % (b["name"], b.get("error_message")))
            continue
        if len(parts) != 4 or parts[0] != "memslots":
            continue
        _, test, impl, n = parts
        scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[b["time_unit"]]
        if "op_ns" in b:
            ns = b["op_ns"]
        else:
            # Counters are summed over threads; time is per thread.
            per_thread_ops = b.get("ops", 1) / b.get("threads", 1)
            ns = b[clock] * scale / per_thread_ops
        res[(test, impl, int(n))] = {"ns": ns,
                                     "bytes": b.get("bytes_per_slot")}
    return data.get("context", {}), res, errors


def fmt_ns(ns):
    if ns is None:
        return "-"
    for unit, div in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= div:
            return "%.3g %s" % (ns / div, unit)
    return "%.3g ns" % ns


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "-" if r is None else ("%.1fx" % r if r < 100 else "%.0fx" % r)


def get(res, test, impl, n):
    v = res.get((test, impl, n))
    return v["ns"] if v else None


def impls_of(res, test):
    seen = []
    for (t, impl, _), _v in sorted(res.items(), key=lambda kv: kv[0][2]):
        if t == test and impl not in seen:
            seen.append(impl)
    order = BASELINES + [i for i in IMPL_DOC if i not in BASELINES]
    return sorted(seen, key=lambda i: order.index(i) if i in order else 99)


def seed_table(res):
    rows = [
        ("slot setup", "slot_setup", "libmemslot"),
        ("slot setup, data structure", "slot_setup", "libmemslot-nogp"),
        ("map (per page)", "map", "libmemslot"),
        ("unmap (per 4 KiB)", "unmap", "libmemslot"),
        ("unmap 2M (per 2 MiB)", "unmap_2m", "libmemslot"),
        ("move active, with GP", "move_active", "libmemslot"),
        ("move active, data structure", "move_active", "libmemslot-nogp"),
        ("move inactive, with GP", "move_inactive", "libmemslot"),
        ("move inactive, data structure", "move_inactive",
         "libmemslot-nogp"),
    ]
    out = ["| test | impl | " + " | ".join(str(n) for n in SEED_SLOTS) +
           " |", "|---|---|" + "---|" * len(SEED_SLOTS)]
    for label, test, impl in rows:
        cells = []
        for n in SEED_SLOTS:
            before, after = get(res, test, "array", n), get(res, test,
                                                             impl, n)
            cells.append("%s → %s (%s)" % (fmt_ns(before), fmt_ns(after),
                                           fmt_ratio(ratio(before, after))))
        out.append("| %s | %s | %s |" % (label, impl, " | ".join(cells)))
    return "\n".join(out)


def vcpu_table(res):
    base = get(res, "lookup_vcpu64", "libmemslot", 64)
    out = ["| impl | ns per lookup | set-wide cache / impl |",
           "|---|---|---|"]
    for impl in impls_of(res, "lookup_vcpu64"):
        ns = get(res, "lookup_vcpu64", impl, 64)
        out.append("| %s | %.2f | %s |" % (impl, ns,
                                          fmt_ratio(ratio(base, ns))))
    return "\n".join(out)


def all_tables(res):
    out = []
    for test in TEST_ORDER:
        impls = impls_of(res, test)
        if not impls:
            continue
        slots = [n for n in SLOTS
                 if any((test, i, n) in res for i in impls)]
        out.append("### %s\n\n%s; ns per op (lower is better).\n"
                   % (test, TEST_DOC[test]))
        out.append("| impl | " + " | ".join(str(n) for n in slots) + " |")
        out.append("|---|" + "---|" * len(slots))
        for impl in impls:
            out.append("| %s | %s |" % (impl, " | ".join(
                fmt_ns(get(res, test, impl, n)) for n in slots)))
        out.append("\n![%s](bench-%s.png)\n" % (test, test))
    return "\n".join(out)


def peer_table(res, test):
    slots = [n for n in SLOTS if (test, PEER, n) in res]
    out = ["| impl | " + " | ".join(str(n) for n in slots) + " |",
           "|---|" + "---|" * len(slots)]
    for impl in PEER_ROWS:
        if all(get(res, test, impl, n) is None for n in slots):
            continue
        out.append("| %s | %s |" % (impl, " | ".join(
            "%.1f" % get(res, test, impl, n)
            if get(res, test, impl, n) is not None else "-"
            for n in slots)))
    out.append("| **libmemslot / vm-memory** | %s |" % " | ".join(
        "%.2f" % r if r is not None else "-"
        for r in (ratio(get(res, test, "libmemslot", n),
                        get(res, test, PEER, n)) for n in slots)))
    if any(get(res, test, "floor", n) is not None for n in slots):
        out.append("| 3x faster than vm-memory needs | %s |" % " | ".join(
            "%.1f" % (get(res, test, PEER, n) / 3)
            if get(res, test, PEER, n) is not None else "-"
            for n in slots))
    return "\n".join(out)


def peer_section(res, how):
    """The vm-memory section; @how says which run its numbers come from."""
    lines = [
        PEER_HEADING,
        "",
        "rust-vmm vm-memory 0.10.0, Debian's packaged crate built offline "
        "with cargo (bench/vm-memory), linked into bench_memslots only. "
        "Region type: `GuestMemoryMmap<()>` from "
        "`GuestMemoryMmap::from_ranges`, so each region is a "
        "`GuestRegionMmap` over its own anonymous MAP_NORESERVE mmap, as "
        "Firecracker and cloud-hypervisor make them (32764 mmaps at most; "
        "never touched).  Its lookup is its own "
        "`GuestMemory::find_region` (a binary search over the regions' "
        "Arc pointers), one call through the C interface per lookup, as "
        "the C baselines are one call into their static library and "
        "libmemslot one call into its shared library.  Each test checks "
        "every answer against the region vm-memory lists for that slot.",
        "",
        how,
        "",
        "Cells: ns per lookup (lower is better); the ratio row: "
        "libmemslot's time divided by vm-memory's (below 1: libmemslot is "
        "faster).  In lookup_random, `floor` is the harness alone (one "
        "out-of-line call doing O(1) arithmetic valid only for this "
        "layout), and the last row is the time a lookup would need to be "
        "3x vm-memory: where it is near or below the floor, no general "
        "index reaches it.",
        "",
    ]
    if not any((t, PEER, n) in res for t in PEER_TESTS for n in SLOTS):
        return lines + ["Not measured: this build had no cargo or no "
                        "vm-memory crate (Debian: librust-vm-memory-dev), "
                        "so meson left the vm-memory peer out."]
    for test in PEER_TESTS:
        lines += ["### %s" % test, "", TEST_DOC[test] + ".", "",
                  peer_table(res, test), ""]
    lines.append("![lookup_vmmlayout](bench-lookup_vmmlayout.png)")
    return lines


def splice_peer_section(path, section):
    """Replace the vm-memory section of @path (or add it before Targets)."""
    with open(path) as f:
        old = f.read().split("\n")
    if PEER_HEADING in old:
        start = old.index(PEER_HEADING)
        end = next((i for i in range(start + 1, len(old))
                    if old[i].startswith("## ")), len(old))
    else:
        start = end = old.index("## Targets")
    new = old[:start] + section + [""] + old[end:]
    with open(path, "w") as f:
        f.write("\n".join(new))


def memory_table(res):
    impls = [i for i in impls_of(res, "slot_setup") if i != "libmemslot-txn"]
    slots = [n for n in SLOTS
             if any(("slot_setup", i, n) in res for i in impls)]
    out = ["| impl | " + " | ".join(str(n) for n in slots) + " |",
           "|---|" + "---|" * len(slots)]
    for impl in impls:
        cells = []
        for n in slots:
            v = res.get(("slot_setup", impl, n))
            cells.append("%.0f" % v["bytes"] if v and v["bytes"] else "-")
        out.append("| %s | %s |" % (impl, " | ".join(cells)))
    return "\n".join(out)


BIG = 1048576
BIG_ROWS = [  # test, impl, goal in ns (bytes for memory_per_slot)
    ("lookup_random", "libmemslot", 100),
    ("lookup_random", "libmemslot-nocache", 100),
    ("lookup_random", "rbtree", None), ("lookup_random", "bsearch", None),
    ("create", "libmemslot", 3000), ("create", "rbtree", None),
    ("slot_setup", "libmemslot-txn", 0.3e9), ("slot_setup", "rbtree", None),
    ("memory_per_slot", "libmemslot", 200),
]


def big_table(res):
    """The 1M-slot set (memslot_config_init_unbounded()) against its goals."""
    out = ["| test | impl | measured | goal | verdict |",
           "|---|---|---|---|---|"]
    for test, impl, goal in BIG_ROWS:
        v = res.get((test, impl, BIG))
        mem = test == "memory_per_slot"
        val = (v["bytes"] if mem else v["ns"]) if v else None
        shown = "-" if val is None else (
            "%.0f B" % val if mem else fmt_ns(val))
        verdict = "" if goal is None else (
            "not run" if val is None else
            "met" if val <= goal else "**missed**")
        goal_s = "" if goal is None else "<= " + (
            "%d B" % goal if mem else fmt_ns(goal))
        out.append("| %s | %s | %s | %s | %s |" % (test, impl, shown, goal_s,
                                                  verdict))
    return "\n".join(out)


def check(rows, label, value, ok, goal):
    rows.append("| %s | %s | %s | %s |" % (label, value, goal,
                                            "met" if ok else "**missed**"))


def ratio_target(rows, res, test, n, base, impl, goal):
    r = ratio(get(res, test, base, n), get(res, test, impl, n))
    check(rows, "%s at %d: %s / %s" % (test, n, base, impl), fmt_ratio(r),
          r is not None and r >= goal, ">= %gx" % goal)


def targets(res, counts):
    rows = ["| target | measured | goal | verdict |", "|---|---|---|---|"]
    for base, goal in (("rbtree", 8), ("array", 5), ("bsearch", 5)):
        ratio_target(rows, res, "lookup_random", 32764, base, "libmemslot",
                     goal)
    ratio_target(rows, res, "lookup_random", 509, "rbtree", "libmemslot", 4)
    hit = counts.get("memslot_vcpu_gfn_to_slot")
    check(rows, "per-vCPU hit, instructions (callgrind, 509 / 32764)",
          "%.1f / %.1f" % hit if hit else "not measured",
          bool(hit) and max(hit) <= 25, "<= 25")
    ratio_target(rows, res, "lookup_vcpu64", 64, "libmemslot",
                 "libmemslot-vcpu", 5)
    for test in ("create", "move_active", "move_inactive", "delete",
                 "flags"):
        ratio_target(rows, res, test, 32764, "array", "libmemslot-nogp", 10)
        ns = get(res, test, "libmemslot-nogp", 32764)
        check(rows, "%s at 32764: libmemslot-nogp time" % test, fmt_ns(ns),
              ns is not None and ns < 2000, "< 2 us")
    for impl in ("libmemslot", "libmemslot-nogp", "libmemslot-txn"):
        ratio_target(rows, res, "slot_setup", 32764, "array", impl, 100)
    for test in ("hva_range_4k", "hva_range_2m", "unmap", "unmap_2m"):
        ratio_target(rows, res, test, 32764, "array", "libmemslot", 100)
    v = res.get(("slot_setup", "libmemslot", 32764))
    b = v["bytes"] if v else None
    check(rows, "memory per slot at 32764 (libmemslot)",
          "%.0f B" % b if b else "-", b is not None and b <= 192, "<= 192 B")
    return "\n".join(rows)


def plot(res, tests=TEST_ORDER):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for test in tests:
        impls = impls_of(res, test)
        if not impls or test == "lookup_vcpu64":
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for impl in impls:
            pts = [(n, get(res, test, impl, n)) for n in SLOTS
                   if get(res, test, impl, n) is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts],
                        marker="o", label=impl)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("slots")
        ax.set_ylabel("ns per op")
        ax.set_title("memslots/%s" % test)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        name = "bench-%s.png" % test
        fig.savefig(os.path.join(DOC, name), dpi=90)
        plt.close(fig)
        written.append(name)
    return written


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cc = subprocess.run(["cc", "--version"], capture_output=True,
                        text=True).stdout.splitlines()
    return {"model": model, "nproc": os.cpu_count(),
            "kernel": platform.release(), "cc": cc[0] if cc else "?"}


def write_md(path, ctx, res, errors, meta, cg_text, counts):
    m = meta["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python3 bench/report.py` on %s; do not edit by hand."
        % meta["date"],
        "",
        "## Machine and run",
        "",
        "- CPU: %s, %s CPUs (nproc); kernel %s; %s" %
        (m["model"], m["nproc"], m["kernel"], m["cc"]),
        "- Build: release (-O2 on the bench targets), no sanitizers, "
        "libmemslot linked as the shared library, Google Benchmark %s" %
        ctx.get("library_version", "1.7.1"),
        "- Command: `%s` (%d benchmarks, `--benchmark_min_time=%g`); "
        "whole run %.0f s" % (meta["command"], len(res), meta["min_time"],
                              meta["elapsed"]),
        "- The machine is shared and noisy (about 20% between runs): "
        "compare implementations inside one run, as ratios.",
        "",
        "Rerun: `python3 bench/report.py` (builds a release tree in "
        "/tmp/memslot-bench, runs the suite, rewrites this file and "
        "doc/bench-*.png); `meson test -C BUILD --benchmark` runs the "
        "suite alone; `meson test -C BUILD --suite bench` is the quick "
        "smoke run (64 and 509 slots); `bench/callgrind.sh` counts "
        "instructions per lookup.",
        "",
        "Layout: N slots of 512 pages (2 MiB) with 4-page gaps, ids 0..N-1 "
        "in gfn order, hva regions in shuffled order.  Lookups run 256 per "
        "iteration inside one read section; every test checks its results "
        "(slot pointers, translated hvas, page counts) and fails on a "
        "mismatch.  Write tests time the operation alone with their own "
        "clock (counter op_ns); the inverse operation that restores the "
        "layout is not counted.",
        "",
        "Implementations:",
        "",
    ]
    lines += ["- `%s`: %s" % (k, v) for k, v in IMPL_DOC.items()]
    lines += [
        "",
        "## Scalable memslots (seed table): before (array) → after",
        "",
        "Cells: array → libmemslot (speed-up).  Slot setup is the whole "
        "setup of N slots; map and unmap are per page or per query; moves "
        "are per move, with the grace-period wait (liburcu) or without it "
        "(memslot_rcu_none).",
        "",
        seed_table(res),
        "",
        "## Per-vCPU cache (seed table): 64 vCPUs x 64 slots",
        "",
        TEST_DOC["lookup_vcpu64"] + ".  Each thread runs 32 vCPUs, so the "
        "set-wide cache misses on every lookup and its cache line moves "
        "between the two CPUs, as between KVM's vCPU threads; the machine "
        "has two CPUs, the seed had 64.",
        "",
        vcpu_table(res),
        "",
    ]
    lines += peer_section(res, "From the run above.")
    lines += [
        "",
        "## Targets",
        "",
        targets(res, counts),
        "",
        "## Instructions per lookup (callgrind)",
        "",
        "```",
        cg_text,
        "```",
        "",
        "## Memory per slot (bytes, slot_setup counter)",
        "",
        memory_table(res),
        "",
        "## 1M slots",
        "",
        "memslots/<test>/<impl>/%d, libmemslot with "
        "memslot_config_init_unbounded(); no array baseline (16-bit id "
        "table, a whole-array copy per change)." % BIG,
        "",
        big_table(res),
        "",
        "## All tests",
        "",
        all_tables(res),
    ]
    if errors:
        lines += ["", "## Errors", ""] + ["- " + e for e in errors]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def ensure_matplotlib():
    """Re-run under Debian's python3 when this one lacks matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        system = "/usr/bin/python3"
        if os.path.realpath(sys.executable) != os.path.realpath(system) \
                and os.path.exists(system):
            os.execv(system, [system] + sys.argv)
        sys.exit("report.py needs matplotlib (Debian: python3-matplotlib)")


def peer_only(args):
    """--peer-only: run the vm-memory lookup tests, rewrite their section."""
    t0 = time.time()
    out = args.json
    if not out:
        exe = build(args.build_dir)
        t0 = time.time()
        out = os.path.join(args.build_dir, "bench-peer.json")
        # Repetitions in random order spread the bursts of other load
        # over every implementation instead of a few neighbours.
        run_suite(exe, out, args.min_time, [
            "--benchmark_filter=^memslots/(%s)/" % "|".join(PEER_TESTS),
            "--benchmark_repetitions=%d" % PEER_REPS,
            "--benchmark_enable_random_interleaving=true",
            "--benchmark_report_aggregates_only=true"])
    elapsed = time.time() - t0
    # CPU time: on a shared machine, wall time also counts the time the
    # benchmark thread waited for a CPU.
    _ctx, res, errors = load(out, "cpu_time")
    m = machine()
    how = ("Measured apart from the rest of this file, by `python3 "
           "bench/report.py --peer-only%s` on %s (%s, %s CPUs; %d "
           "benchmarks, each the median of %d repetitions of "
           "`--benchmark_min_time=%g` run in random order, CPU time; whole "
           "run %.0f s).  The tables elsewhere in this file are wall time "
           "from the main run: compare within this section." %
           (" --min-time %g" % args.min_time
            if args.min_time != PEER_MIN_TIME else "",
            datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), m["model"],
            m["nproc"], len(res), PEER_REPS, args.min_time, elapsed))
    section = peer_section(res, how)
    if errors:
        section += ["", "Errors:", ""] + ["- " + e for e in errors]
    plots = plot(res, ["lookup_vmmlayout"])
    splice_peer_section(os.path.join(DOC, "benchmarks.md"), section)
    print("rewrote the vm-memory section of doc/benchmarks.md and %d plots;"
          " %d benchmarks in %.0f s; %d errors"
          % (len(plots), len(res), elapsed, len(errors)))
    return 1 if errors else 0


def main():
    ensure_matplotlib()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default="/tmp/memslot-bench")
    ap.add_argument("--min-time", type=float, default=None,
                    help="--benchmark_min_time (default 0.2, --peer-only "
                         "%g)" % PEER_MIN_TIME)
    ap.add_argument("--filter", default=None)
    ap.add_argument("--json", help="report from this JSON file, no run")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--peer-only", action="store_true",
                    help="run and rewrite only the vm-memory section")
    args = ap.parse_args()
    if args.peer_only:
        if args.min_time is None:
            args.min_time = PEER_MIN_TIME
        return peer_only(args)
    if args.min_time is None:
        args.min_time = 0.2

    os.makedirs(DOC, exist_ok=True)
    t0 = time.time()
    out = args.json
    if not out:
        exe = build(args.build_dir)
        out = os.path.join(args.build_dir, "bench.json")
        extra = ["--benchmark_filter=" + args.filter] if args.filter else []
        run_suite(exe, out, args.min_time, extra)
    elapsed = time.time() - t0
    ctx, res, errors = load(out)
    cg_text, counts = ("not run", {})
    if not args.no_callgrind:
        cg_text, counts = run_callgrind(args.build_dir)
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "machine": machine(), "min_time": args.min_time,
            "elapsed": elapsed,
            "command": "python3 bench/report.py" +
                       (" --min-time %g" % args.min_time
                        if args.min_time != 0.2 else "")}
    plots = plot(res)
    write_md(os.path.join(DOC, "benchmarks.md"), ctx, res, errors, meta,
             cg_text, counts)
    print("wrote doc/benchmarks.md and %d plots; suite %.0f s; %d errors"
          % (len(plots), elapsed, len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
