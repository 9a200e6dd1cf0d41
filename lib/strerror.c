/* SPDX-License-Identifier: MIT */
/* Messages for errors and validation rules. */
#define _POSIX_C_SOURCE 200809L	/* the POSIX strerror_r() */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <memslot/memslot.h>

/*
 * Errors whose meaning is the same wherever the library itself returns
 * them.  -EINVAL is not here: it covers bad configs, NULL arguments and
 * most slot rules, and memslot_rule_str() says which rule it was.
 */
static const char *library_text(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -EEXIST:
		return "the guest range overlaps another slot";
	case -ENOENT:
		return "no slot contains the guest address";
	case -ENOMEM:
		return "out of memory; nothing was changed";
	case -EFAULT:
		return "the slot is being deleted or moved (INVALID)";
	case -EROFS:
		return "write to a read-only slot";
	case -EBUSY:
		return "called from inside a read-side section, where it would "
		       "wait for itself";
	case -EDEADLK:
		return "writer call from inside a read-side section or a change "
		       "hook would deadlock";
	case -ENOSPC:
		return "every user slot id is in use";
	default:
		return NULL;
	}
}

/* Room for any C library message; glibc's longest is about 50 bytes. */
static _Thread_local char errno_text[128];

const char *memslot_strerror(int err)
{
	const char *text = library_text(err);

	if (text)
		return text;
	if (err == INT_MIN || err > 0 ||
	    strerror_r(-err, errno_text, sizeof(errno_text)))
		snprintf(errno_text, sizeof(errno_text), "unknown error %d", err);
	return errno_text;
}

/* Indexed by rule number, which is the enum value (doc/design.md). */
static const char *const rule_text[MEMSLOT_RULE_COUNT] = {
	[MEMSLOT_RULE_OK] = "ok",
	[MEMSLOT_RULE_FLAGS_UNKNOWN] = "flags outside the allowed set",
	[MEMSLOT_RULE_ID_USER] = "slot id at or above the user slot count",
	[MEMSLOT_RULE_FLAGS_COMBO] = "flag combination not supported",
	[MEMSLOT_RULE_SIZE_ALIGN] = "memory_size not page aligned",
	[MEMSLOT_RULE_GPA_ALIGN] = "guest_phys_addr not page aligned",
	[MEMSLOT_RULE_HVA] =
		"userspace_addr unaligned, tagged, or range beyond the user limit",
	[MEMSLOT_RULE_GMEM_OFFSET] =
		"guest_memfd_offset unaligned, or offset + size wraps",
	[MEMSLOT_RULE_AS_ID] = "address space or slot id out of range",
	[MEMSLOT_RULE_GPA_WRAP] = "guest_phys_addr + memory_size wraps",
	[MEMSLOT_RULE_TOO_LARGE] = "more pages than a slot may have",
	[MEMSLOT_RULE_DELETE_MISSING] = "delete of a slot that does not exist",
	[MEMSLOT_RULE_PAGES_OVERFLOW] = "total page count would overflow",
	[MEMSLOT_RULE_GMEM_IMMUTABLE] =
		"a GUEST_MEMFD slot can only be created or deleted",
	[MEMSLOT_RULE_MODIFY] =
		"modify changes userspace_addr, size, READONLY or GUEST_MEMFD",
	[MEMSLOT_RULE_NOOP] = "nothing to change",
	[MEMSLOT_RULE_OVERLAP] = "guest range overlaps another slot",
	[MEMSLOT_RULE_MAX_GFN] = "last gfn beyond the MMU's maximum",
	[MEMSLOT_RULE_NOMEM] = "out of memory",
	[MEMSLOT_RULE_PREPARE] = "the prepare callback refused the change",
	[MEMSLOT_RULE_BUSY] = "called inside a read-side section",
};

const char *memslot_rule_str(enum memslot_rule rule)
{
	if ((unsigned int)rule >= MEMSLOT_RULE_COUNT)
		return "unknown rule";
	return rule_text[rule];
}
