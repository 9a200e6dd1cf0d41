/* SPDX-License-Identifier: MIT */
/* Messages for errors and validation rules. */
#include <errno.h>

#include <memslot/memslot.h>

const char *memslot_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -EINVAL:
		return "invalid argument: the request breaks a slot rule";
	case -EEXIST:
		return "the guest range overlaps another slot";
	case -ENOENT:
		return "no such slot, or the address is outside every slot";
	case -ENOMEM:
		return "out of memory; nothing was changed";
	case -EFAULT:
		return "the slot is being deleted or moved (INVALID)";
	case -EROFS:
		return "write to a read-only slot";
	case -EBUSY:
		return "slot change attempted inside a read-side section";
	case -ENOSPC:
		return "every user slot id is in use";
	default:
		return "unknown error";
	}
}

static const char *const rule_text[MEMSLOT_RULE_COUNT] = {
	[MEMSLOT_RULE_OK] = "ok",
	[MEMSLOT_RULE_FLAGS_UNKNOWN] = "flags outside the allowed set",
	[MEMSLOT_RULE_ID_USER] = "slot id at or above the user slot count",
	[MEMSLOT_RULE_FLAGS_COMBO] = "flag combination not supported",
	[MEMSLOT_RULE_SIZE_ALIGN] = "memory_size not page aligned",
	[MEMSLOT_RULE_GPA_ALIGN] = "guest_phys_addr not page aligned",
	[MEMSLOT_RULE_HVA] =
		"userspace_addr unaligned, tagged, or range beyond the user limit",
	[MEMSLOT_RULE_AS_ID] = "address space or slot id out of range",
	[MEMSLOT_RULE_GPA_WRAP] = "guest_phys_addr + memory_size wraps",
	[MEMSLOT_RULE_TOO_LARGE] = "more pages than a slot may have",
	[MEMSLOT_RULE_DELETE_MISSING] = "delete of a slot that does not exist",
	[MEMSLOT_RULE_PAGES_OVERFLOW] = "total page count would overflow",
	[MEMSLOT_RULE_MODIFY] =
		"modify changes userspace_addr, size or READONLY",
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
