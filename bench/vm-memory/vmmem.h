/* SPDX-License-Identifier: MIT */
/*
 * vmmem.h - C interface to rust-vmm vm-memory's GuestMemoryMmap, for the
 * benchmarks only (bench/vm-memory/src/lib.rs implements it).
 *
 * A vmmem holds one GuestMemoryMmap whose regions are anonymous mmaps, as
 * GuestMemoryMmap::from_ranges makes them for Firecracker and
 * cloud-hypervisor; vmmem_find_region() is vm-memory's own
 * GuestMemory::find_region.  Regions are numbered 0..n-1 in gpa order.
 */
#ifndef MEMSLOT_BENCH_VMMEM_H
#define MEMSLOT_BENCH_VMMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One guest memory region: @size bytes at guest physical address @gpa. */
struct vmmem_range {
	uint64_t gpa;
	uint64_t size;
};

struct vmmem;

/*
 * vmmem_create() - build a GuestMemoryMmap with one region per range
 * @ranges: @n ranges, sorted by @gpa, not overlapping, sizes non-zero
 * @n: number of ranges, at least 1
 *
 * Context: any thread.
 * Return: the new object, or NULL if vm-memory refused the ranges
 * (unsorted, overlapping, empty) or an mmap failed.
 */
struct vmmem *vmmem_create(const struct vmmem_range *ranges, size_t n);

/*
 * vmmem_destroy() - drop the GuestMemoryMmap and unmap its regions
 * @m: object from vmmem_create(), or NULL
 *
 * Context: no other thread may use @m.
 */
void vmmem_destroy(struct vmmem *m);

/*
 * vmmem_find_region() - GuestMemory::find_region(@addr)
 * @m: object from vmmem_create()
 * @addr: guest physical address
 *
 * Context: any thread; @m is only read.
 * Return: the region (a GuestRegionMmap, opaque) holding @addr, or NULL.
 */
const void *vmmem_find_region(const struct vmmem *m, uint64_t addr);

/*
 * vmmem_region() - region number @i in gpa order
 * @m: object from vmmem_create()
 * @i: index below the number of ranges given to vmmem_create()
 *
 * Taken from GuestMemory::iter() when @m was built, not from a lookup, so
 * that it can check vmmem_find_region()'s answers.
 *
 * Return: the region, or NULL if @i is out of range.
 */
const void *vmmem_region(const struct vmmem *m, size_t i);

/*
 * vmmem_region_start() - guest physical address where @region starts
 * @region: a region from vmmem_find_region() or vmmem_region()
 *
 * Return: GuestMemoryRegion::start_addr() of @region.
 */
uint64_t vmmem_region_start(const void *region);

#ifdef __cplusplus
}
#endif

#endif /* MEMSLOT_BENCH_VMMEM_H */
