/* SPDX-License-Identifier: MIT */
/* KVM profiles and config validation. */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "vm.h"

void memslot_config_init_x86_64(struct memslot_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->page_shift = 12;
	cfg->id_bits = 16;
	cfg->nr_as = 1;
	cfg->user_slots = 32764;	/* KVM_USER_MEM_SLOTS */
	cfg->total_slots = 32767;	/* KVM_MEM_SLOTS_NUM (SHRT_MAX) */
	cfg->max_pages = (1ull << 31) - 1;
	cfg->hva_limit = 0x7ffffffff000ull; /* TASK_SIZE_MAX, 4-level */
	cfg->hva_tag_mask = 0;
	/* Measured on a Zen 4 host: gpa 2^52 - 4 KiB accepted, 2^52 not. */
	cfg->max_gfn = (1ull << 40) - 1;
	cfg->readonly = true;
	cfg->guest_memfd = false;
}

void memslot_config_init_unbounded(struct memslot_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->page_shift = 12;
	cfg->id_bits = 32;
	cfg->nr_as = 1;
	/* Id UINT32_MAX is the id tables' sentinel. */
	cfg->user_slots = UINT32_MAX;
	cfg->total_slots = UINT32_MAX;
	cfg->max_pages = UINT64_MAX;
	cfg->hva_limit = UINT64_MAX;
	cfg->max_gfn = UINT64_MAX;
	cfg->readonly = true;
}

/*
 * Smallest struct a caller may pass, per struct: its first published
 * version, which ends with max_gfn for the config and with the last
 * function pointer for the others.
 */
#define MIN_SIZE(type, last) (offsetof(type, last) + sizeof(((type *)0)->last))
#define CONFIG_MIN_SIZE MIN_SIZE(struct memslot_config, max_gfn)
#define ALLOC_MIN_SIZE MIN_SIZE(struct memslot_allocator, free)
#define RCU_MIN_SIZE MIN_SIZE(struct memslot_rcu_ops, unregister_thread)
#define CB_MIN_SIZE MIN_SIZE(struct memslot_callbacks, commit)

/*
 * Copy the caller's @src, whose first field is its own size, into the
 * library's @dst of @dst_size bytes: zeroed, then as many bytes as both
 * versions have.  Fields newer than the caller's struct read as zero and
 * nothing past the caller's @size is ever read.
 */
static int copy_sized(void *dst, size_t dst_size, const void *src,
		      size_t min_size)
{
	size_t size;

	memcpy(&size, src, sizeof(size));
	if (size < min_size)
		return -EINVAL;
	memset(dst, 0, dst_size);
	memcpy(dst, src, size < dst_size ? size : dst_size);
	memcpy(dst, &dst_size, sizeof(dst_size));
	return 0;
}

static bool ids_fit(const struct memslot_config *cfg)
{
	uint64_t as_room;

	if (cfg->id_bits < 32 && cfg->total_slots > (1ull << cfg->id_bits))
		return false;
	as_room = cfg->id_bits >= 32 ? 1 : 1ull << (32 - cfg->id_bits);
	return cfg->nr_as <= as_room;
}

static int config_check(const struct memslot_config *cfg)
{
	if (cfg->page_shift < 9 || cfg->page_shift > 30)
		return -EINVAL;
	if (cfg->nr_as == 0 || cfg->nr_as > 256)
		return -EINVAL;
	if (cfg->id_bits == 0 || cfg->id_bits > 32)
		return -EINVAL;
	if (cfg->user_slots > cfg->total_slots || !ids_fit(cfg))
		return -EINVAL;
	return 0;
}

/* The hooks the caller's config points to, copied; NULL means default. */
static int copy_hooks(const struct memslot_config *cfg, struct vm_params *p)
{
	const struct memslot_allocator *alloc = cfg->alloc;
	const struct memslot_rcu_ops *rcu = cfg->rcu;

	if (!alloc)
		alloc = &mem_default_allocator;
	if (!rcu)
		rcu = memslot_rcu_urcu_memb();
	if (copy_sized(&p->alloc, sizeof(p->alloc), alloc, ALLOC_MIN_SIZE) ||
	    copy_sized(&p->rcu, sizeof(p->rcu), rcu, RCU_MIN_SIZE))
		return -EINVAL;
	if (!p->alloc.malloc || !p->alloc.free || !p->rcu.read_lock ||
	    !p->rcu.read_unlock || !p->rcu.synchronize)
		return -EINVAL;
	p->has_cb = cfg->callbacks != NULL;
	if (p->has_cb)
		return copy_sized(&p->cb, sizeof(p->cb), cfg->callbacks,
				  CB_MIN_SIZE);
	memset(&p->cb, 0, sizeof(p->cb));
	return 0;
}

int config_copy(const struct memslot_config *cfg, struct vm_params *p)
{
	struct memslot_config *c = &p->cfg;

	if (!cfg || copy_sized(c, sizeof(*c), cfg, CONFIG_MIN_SIZE))
		return -EINVAL;
	if (config_check(c) || copy_hooks(c, p))
		return -EINVAL;
	/* From here on the library reads only the copies. */
	c->alloc = &p->alloc;
	c->rcu = &p->rcu;
	c->callbacks = p->has_cb ? &p->cb : NULL;
	return 0;
}
