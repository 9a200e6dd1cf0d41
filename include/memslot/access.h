/* SPDX-License-Identifier: MIT */
/*
 * libmemslot: reading and writing guest memory through the slots.
 *
 * A guest-physical range [gpa, gpa + len) is translated slot by slot and
 * copied with one memcpy per slot the range meets, as KVM's kvm_read_guest() and
 * kvm_write_guest() do page by page.  A copy stops at the first byte it
 * cannot reach and reports how much it did:
 *  - a hole (no slot) or an INVALID slot (being deleted or moved): -EFAULT;
 *  - a write to a READONLY slot: -EROFS;
 *  - a range that wraps: -EINVAL, nothing touched.  As in KVM's rule for
 *    slots, a range ending exactly at 2^64 counts as wrapping (no slot can
 *    hold the last page of the address space anyway);
 *  - length 0: 0, nothing touched.
 * Everything before the stopping point has been copied; *done says how
 * many bytes that is (0 when nothing was touched).
 *
 * The host addresses are the slots' hva ranges, used as given: the caller
 * must have mapped them (as KVM's copy_to_user would fault on an unmapped
 * hva, a copy here would crash).  Copies are plain memcpy: they are not
 * atomic, and racing guest or device accesses see bytes in any order.
 *
 * Writes can mark the pages they touch dirty, for live migration
 * (MEMSLOT_ACCESS_MARK_DIRTY): in slots that log dirty pages, a page is
 * marked after its bytes are written, so a harvest of the dirty log
 * (memslot/dirty.h) never misses a write.
 *
 * Context: every call here runs inside a read section of the VM (see
 * memslot_read_lock()); the copied-to or mapped host memory belongs to the
 * layout of that section only.
 */
#ifndef MEMSLOT_ACCESS_H
#define MEMSLOT_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <memslot/memslot.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Write flags. */
/* Mark the written pages dirty in slots that log dirty pages. */
#define MEMSLOT_ACCESS_MARK_DIRTY (1u << 0)

/**
 * struct memslot_segment - one host-contiguous piece of a mapped range
 * @hva: host virtual address of the first byte
 * @len: bytes
 */
struct memslot_segment {
	uint64_t hva;
	uint64_t len;
};

/* ---- on a view: one layout for the whole access ---------------------- */

/**
 * memslot_view_read() - copy guest memory at [@gpa, @gpa + @len) to @buf
 * @view: a view
 * @gpa: guest physical address of the first byte
 * @buf: destination, @len bytes
 * @len: bytes to copy
 * @done: receives the bytes copied; may be NULL
 *
 * Each slot-sized piece is found by one index search; the walk leaves the
 * set-wide last-used cache alone (one lookup per piece does not need it,
 * and it keeps the access path free of shared stores).
 * Context: inside the read section the view came from.
 * Return: 0 when all @len bytes were copied; -EFAULT at a hole or an
 * INVALID slot; -EINVAL if the range wraps (nothing copied).
 */
int memslot_view_read(struct memslot_view *view, uint64_t gpa, void *buf,
		      size_t len, size_t *done);

/**
 * memslot_view_write() - copy @buf to guest memory at [@gpa, @gpa + @len)
 * @view: a view
 * @gpa: guest physical address of the first byte
 * @buf: source, @len bytes
 * @len: bytes to copy
 * @flags: 0 or MEMSLOT_ACCESS_MARK_DIRTY
 * @done: receives the bytes copied; may be NULL
 *
 * Context: inside the read section the view came from.
 * Return: 0 when all @len bytes were copied; -EFAULT at a hole or an
 * INVALID slot; -EROFS at a READONLY slot; -EINVAL for unknown @flags or a
 * range that wraps (nothing copied).
 */
int memslot_view_write(struct memslot_view *view, uint64_t gpa,
		       const void *buf, size_t len, unsigned int flags,
		       size_t *done);

/**
 * memslot_view_map() - the host pieces of [@gpa, @gpa + @len), no copy
 * @view: a view
 * @gpa: guest physical address of the first byte
 * @len: bytes to map
 * @write: the caller will write through the mapping (READONLY slots stop
 *	the map with -EROFS)
 * @segs: receives the pieces, in guest order
 * @max_segs: entries in @segs
 * @nsegs: receives the number of pieces filled
 * @mapped: receives the bytes the pieces cover, from @gpa on
 *
 * Neighbouring pieces whose host ranges touch (the next starts where the
 * previous ends) are merged into one, also across slots, so a range in
 * hva-contiguous slots is one segment.  The map stops early, with
 * @mapped < @len, when it would need more than @max_segs pieces (return 0)
 * or at a hole, INVALID or (for @write) READONLY slot (the error; what was
 * mapped before stays in @segs).  The pieces are valid until the read
 * section ends.  Mapping does not mark pages dirty: after writing through
 * the pieces, call memslot_view_mark_dirty() on what was written (as
 * QEMU's dma_memory_unmap() does); marking before the write could let a
 * concurrent dirty-log harvest miss it.
 * Context: inside the read section the view came from.
 * Return: 0 (all of @len mapped, or @max_segs pieces filled); -EFAULT;
 * -EROFS; -EINVAL if the range wraps or @len > 0 with @max_segs == 0
 * (nothing mapped).
 */
int memslot_view_map(struct memslot_view *view, uint64_t gpa, size_t len,
		     bool write, struct memslot_segment *segs,
		     size_t max_segs, size_t *nsegs, size_t *mapped);

/**
 * memslot_view_mark_dirty() - mark the pages of [@gpa, @gpa + @len) dirty
 * @view: a view
 * @gpa: guest physical address of the first byte written
 * @len: bytes written
 *
 * For writes made through memslot_view_map() pieces: call it after the
 * bytes are written, in the same read section.  Pages of slots that do not
 * log dirty pages are left alone.
 * Context: inside the read section the view came from.
 * Return: 0; -EFAULT at a hole or an INVALID slot, -EROFS at a READONLY
 * slot (pages before it are marked); -EINVAL if the range wraps.
 */
int memslot_view_mark_dirty(struct memslot_view *view, uint64_t gpa,
			    size_t len);

/* ---- on the VM: pin the active layout for one call ------------------- */

/**
 * memslot_guest_read() - memslot_view_read() on the active layout of @as_id
 * @vm: the VM
 * @as_id: address space
 * @gpa: guest physical address of the first byte
 * @buf: destination, @len bytes
 * @len: bytes to copy
 * @done: receives the bytes copied; may be NULL
 *
 * Context: inside a read section.
 * Return: as memslot_view_read(); -EINVAL for a bad @as_id.
 */
int memslot_guest_read(struct memslot_vm *vm, unsigned int as_id,
		       uint64_t gpa, void *buf, size_t len, size_t *done);

/**
 * memslot_guest_write() - memslot_view_write() on the active layout
 * @vm: the VM
 * @as_id: address space
 * @gpa: guest physical address of the first byte
 * @buf: source, @len bytes
 * @len: bytes to copy
 * @flags: 0 or MEMSLOT_ACCESS_MARK_DIRTY
 * @done: receives the bytes copied; may be NULL
 *
 * Context: inside a read section.
 * Return: as memslot_view_write(); -EINVAL for a bad @as_id.
 */
int memslot_guest_write(struct memslot_vm *vm, unsigned int as_id,
			uint64_t gpa, const void *buf, size_t len,
			unsigned int flags, size_t *done);

/* ---- through a vCPU cache ------------------------------------------- */

/**
 * memslot_vcpu_vm() - the VM a vCPU cache was created for
 * @vcpu: the cache
 *
 * Return: the VM.
 */
struct memslot_vm *memslot_vcpu_vm(const struct memslot_vcpu *vcpu);

/**
 * memslot_vcpu_gfn_to_hva() - vCPU-cache lookup and translation in one
 * @vcpu: the cache; owned by the calling thread
 * @as_id: address space
 * @gfn: guest frame number
 * @write: the access is a write
 * @hva: receives the host virtual address of the page
 *
 * Context: inside a read section, on the thread that owns @vcpu.
 * Return: as memslot_slot_gfn_to_hva() (-ENOENT when no slot holds @gfn).
 */
int memslot_vcpu_gfn_to_hva(struct memslot_vcpu *vcpu, unsigned int as_id,
			    uint64_t gfn, bool write, uint64_t *hva);

/**
 * memslot_vcpu_view_gfn_to_hva() - as memslot_vcpu_gfn_to_hva(), on a view
 * @vcpu: the cache; owned by the calling thread
 * @view: a view from the same VM
 * @gfn: guest frame number
 * @write: the access is a write
 * @hva: receives the host virtual address of the page
 *
 * Context: inside the read section the view came from, on the thread that
 * owns @vcpu.
 * Return: as memslot_slot_gfn_to_hva().
 */
int memslot_vcpu_view_gfn_to_hva(struct memslot_vcpu *vcpu,
				 const struct memslot_view *view,
				 uint64_t gfn, bool write, uint64_t *hva);

/**
 * memslot_vcpu_view_read() - memslot_view_read() through a vCPU cache
 * @vcpu: the cache; owned by the calling thread
 * @view: a view from the same VM
 * @gpa: guest physical address of the first byte
 * @buf: destination, @len bytes
 * @len: bytes to copy
 * @done: receives the bytes copied; may be NULL
 *
 * Slots are found through @vcpu's cache, which never touches the set-wide
 * cache.  An access inside one page of the cached slot takes a short path
 * with no loop.
 * Context: inside the read section the view came from, on the thread that
 * owns @vcpu.
 * Return: as memslot_view_read().
 */
int memslot_vcpu_view_read(struct memslot_vcpu *vcpu,
			   const struct memslot_view *view, uint64_t gpa,
			   void *buf, size_t len, size_t *done);

/**
 * memslot_vcpu_view_write() - memslot_view_write() through a vCPU cache
 * @vcpu: the cache; owned by the calling thread
 * @view: a view from the same VM
 * @gpa: guest physical address of the first byte
 * @buf: source, @len bytes
 * @len: bytes to copy
 * @flags: 0 or MEMSLOT_ACCESS_MARK_DIRTY
 * @done: receives the bytes copied; may be NULL
 *
 * Context: as memslot_vcpu_view_read().
 * Return: as memslot_view_write().
 */
int memslot_vcpu_view_write(struct memslot_vcpu *vcpu,
			    const struct memslot_view *view, uint64_t gpa,
			    const void *buf, size_t len, unsigned int flags,
			    size_t *done);

#ifdef __cplusplus
}
#endif

#endif /* MEMSLOT_ACCESS_H */
