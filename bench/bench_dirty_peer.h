// SPDX-License-Identifier: MIT
// Registration of the dirty-logging peer benchmarks (bench_dirty_peer.cc).
#ifndef MEMSLOT_BENCH_DIRTY_PEER_H
#define MEMSLOT_BENCH_DIRTY_PEER_H

void register_dirty_peer();

#endif
