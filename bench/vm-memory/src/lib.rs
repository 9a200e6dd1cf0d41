// SPDX-License-Identifier: MIT
//
// C interface to vm-memory's GuestMemoryMmap and AtomicBitmap for
// libmemslot's benchmarks; vmmem.h documents each function.  Lookups call
// vm-memory's own GuestMemory::find_region, and the dirty bitmap functions
// its own AtomicBitmap methods: nothing here reimplements them.

use std::os::raw::c_void;
use std::ptr;
use std::slice;

use vm_memory::bitmap::{AtomicBitmap, Bitmap};
use vm_memory::{GuestAddress, GuestMemory, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap};

/// One (gpa, size) region, laid out as struct vmmem_range.
#[repr(C)]
pub struct VmmemRange {
    gpa: u64,
    size: u64,
}

/// What struct vmmem points to: the guest memory and its regions in gpa
/// order.  The regions are Arc-allocated inside the GuestMemoryMmap, so
/// the pointers stay valid as long as `mem` lives.
pub struct Vmmem {
    mem: GuestMemoryMmap,
    regions: Vec<*const GuestRegionMmap>,
}

fn to_ranges(ranges: &[VmmemRange]) -> Option<Vec<(GuestAddress, usize)>> {
    ranges
        .iter()
        .map(|r| usize::try_from(r.size).ok().map(|size| (GuestAddress(r.gpa), size)))
        .collect()
}

fn build(ranges: &[VmmemRange]) -> Option<Vmmem> {
    // from_ranges mmaps each region anonymously, then from_arc_regions
    // checks that the regions are sorted and do not overlap.
    let mem = GuestMemoryMmap::<()>::from_ranges(&to_ranges(ranges)?).ok()?;
    let regions = mem.iter().map(|r| r as *const GuestRegionMmap).collect();

    Some(Vmmem { mem, regions })
}

/// # Safety
/// `ranges` points to `n` readable ranges (or is NULL).
#[no_mangle]
pub unsafe extern "C" fn vmmem_create(ranges: *const VmmemRange, n: usize) -> *mut Vmmem {
    if ranges.is_null() || n == 0 {
        return ptr::null_mut();
    }
    match build(slice::from_raw_parts(ranges, n)) {
        Some(m) => Box::into_raw(Box::new(m)),
        None => ptr::null_mut(),
    }
}

/// # Safety
/// `m` comes from vmmem_create() and is not used again, or is NULL.
#[no_mangle]
pub unsafe extern "C" fn vmmem_destroy(m: *mut Vmmem) {
    if !m.is_null() {
        drop(Box::from_raw(m));
    }
}

/// # Safety
/// `m` comes from vmmem_create() and was not destroyed.
#[no_mangle]
pub unsafe extern "C" fn vmmem_find_region(m: *const Vmmem, addr: u64) -> *const c_void {
    let m = &*m;

    match m.mem.find_region(GuestAddress(addr)) {
        Some(r) => r as *const GuestRegionMmap as *const c_void,
        None => ptr::null(),
    }
}

/// # Safety
/// `m` comes from vmmem_create() and was not destroyed.
#[no_mangle]
pub unsafe extern "C" fn vmmem_region(m: *const Vmmem, i: usize) -> *const c_void {
    let m = &*m;

    match m.regions.get(i) {
        Some(&r) => r as *const c_void,
        None => ptr::null(),
    }
}

/// # Safety
/// `region` comes from vmmem_find_region() or vmmem_region() on a live
/// object.
#[no_mangle]
pub unsafe extern "C" fn vmmem_region_start(region: *const c_void) -> u64 {
    let region = &*(region as *const GuestRegionMmap);

    region.start_addr().0
}

// ---- dirty bitmap: vm-memory's AtomicBitmap ---------------------------

// Offsets beyond usize cannot be in the bitmap; the crate ignores bits at
// or past its end, so saturating keeps that meaning on 32-bit hosts.
fn to_usize(x: u64) -> usize {
    usize::try_from(x).unwrap_or(usize::MAX)
}

#[no_mangle]
pub extern "C" fn vmmem_bitmap_create(pages: u64, page_size: u64) -> *mut AtomicBitmap {
    // No let-else: Debian 12's own cargo (Rust 1.63) must build this too.
    let (pages, page_size) = match (usize::try_from(pages), usize::try_from(page_size)) {
        (Ok(p), Ok(s)) => (p, s),
        _ => return ptr::null_mut(),
    };
    // AtomicBitmap::new divides by the page size.
    let bytes = match pages.checked_mul(page_size).filter(|_| page_size != 0) {
        Some(b) => b,
        None => return ptr::null_mut(),
    };
    Box::into_raw(Box::new(AtomicBitmap::new(bytes, page_size)))
}

/// # Safety
/// `b` comes from vmmem_bitmap_create() and is not used again, or is NULL.
#[no_mangle]
pub unsafe extern "C" fn vmmem_bitmap_destroy(b: *mut AtomicBitmap) {
    if !b.is_null() {
        drop(Box::from_raw(b));
    }
}

/// # Safety
/// `b` comes from vmmem_bitmap_create() and was not destroyed.
#[no_mangle]
pub unsafe extern "C" fn vmmem_bitmap_pages(b: *const AtomicBitmap) -> u64 {
    (*b).len() as u64
}

/// # Safety
/// `b` comes from vmmem_bitmap_create() and was not destroyed.
#[no_mangle]
pub unsafe extern "C" fn vmmem_bitmap_mark(b: *const AtomicBitmap, offset: u64, len: u64) {
    // The Bitmap trait's entry point, through which vm-memory's own
    // writes to guest memory mark pages (it calls set_addr_range).
    (*b).mark_dirty(to_usize(offset), to_usize(len));
}

/// # Safety
/// `b` comes from vmmem_bitmap_create() and was not destroyed; `out`
/// points to `nwords` writable words (or `nwords` is 0).
#[no_mangle]
pub unsafe extern "C" fn vmmem_bitmap_get_and_reset(
    b: *const AtomicBitmap,
    out: *mut u64,
    nwords: usize,
) -> usize {
    let words = (*b).get_and_reset();
    let n = words.len().min(nwords);

    if n > 0 {
        slice::from_raw_parts_mut(out, n).copy_from_slice(&words[..n]);
    }
    words.len()
}
