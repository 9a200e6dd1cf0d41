/* SPDX-License-Identifier: MIT */
/*
 * vmmem.h - C interface to rust-vmm vm-memory's GuestMemoryMmap and
 * AtomicBitmap, for the benchmarks only (bench/vm-memory/src/lib.rs
 * implements it).
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

/*
 * A vmmem_bitmap is vm-memory's AtomicBitmap (feature backend-bitmap), the
 * dirty bitmap Firecracker gives each guest memory region: one bit per
 * page, bit i of word i / 64 for page i, set with an atomic OR.
 */
struct vmmem_bitmap;

/*
 * vmmem_bitmap_create() - AtomicBitmap::new(@pages * @page_size, @page_size)
 * @pages: pages the bitmap covers
 * @page_size: bytes per page, not 0
 *
 * Context: any thread.  Rust aborts the process if the allocation fails.
 * Return: the bitmap, all clear, or NULL for @page_size 0 or a byte size
 * that does not fit in usize.
 */
struct vmmem_bitmap *vmmem_bitmap_create(uint64_t pages, uint64_t page_size);

/*
 * vmmem_bitmap_destroy() - drop the bitmap
 * @b: bitmap from vmmem_bitmap_create(), or NULL
 *
 * Context: no other thread may use @b.
 */
void vmmem_bitmap_destroy(struct vmmem_bitmap *b);

/*
 * vmmem_bitmap_pages() - AtomicBitmap::len(): the pages @b covers
 * @b: bitmap from vmmem_bitmap_create()
 *
 * Return: the number of pages.
 */
uint64_t vmmem_bitmap_pages(const struct vmmem_bitmap *b);

/*
 * vmmem_bitmap_mark() - Bitmap::mark_dirty(@offset, @len)
 * @b: bitmap from vmmem_bitmap_create()
 * @offset: byte offset of the write in the region
 * @len: bytes written; 0 marks nothing
 *
 * Marks every page that [@offset, @offset + @len) touches, one atomic OR
 * per page (AtomicBitmap::set_addr_range); pages past the end are ignored.
 * This is the call vm-memory makes for each write to guest memory.
 * Context: any thread, concurrently with other marks and harvests.
 */
void vmmem_bitmap_mark(const struct vmmem_bitmap *b, uint64_t offset,
		       uint64_t len);

/*
 * vmmem_bitmap_get_and_reset() - AtomicBitmap::get_and_reset() into @out
 * @b: bitmap from vmmem_bitmap_create()
 * @out: receives the first min(@nwords, return value) words
 * @nwords: words @out holds
 *
 * The crate swaps every word with 0 (one atomic RMW per word, clean or
 * not) into a new Vec<u64>; this copies that Vec into @out and drops it.
 * The Vec has pages / 64 + 1 words; words past (pages + 63) / 64 are
 * always 0, so @out may be that much shorter without losing a mark.
 * Context: any thread; a concurrent mark lands in this harvest or the next.
 * Return: the number of words the crate returned.
 */
size_t vmmem_bitmap_get_and_reset(const struct vmmem_bitmap *b, uint64_t *out,
				  size_t nwords);

#ifdef __cplusplus
}
#endif

#endif /* MEMSLOT_BENCH_VMMEM_H */
