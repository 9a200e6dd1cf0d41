// SPDX-License-Identifier: MIT
// Registration of the writer benchmarks (bench_writer.cc).
#ifndef MEMSLOT_BENCH_WRITER_H
#define MEMSLOT_BENCH_WRITER_H

void register_writer_latency();

#endif
