/* SPDX-License-Identifier: MIT */
/* KVM profiles and config validation. */
#include <errno.h>
#include <string.h>

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

/* Smallest config struct a caller may pass: up to and including @max_gfn. */
#define CONFIG_MIN_SIZE \
	(offsetof(struct memslot_config, max_gfn) + sizeof(uint64_t))

static bool ids_fit(const struct memslot_config *cfg)
{
	uint64_t as_room;

	if (cfg->id_bits < 32 && cfg->total_slots > (1ull << cfg->id_bits))
		return false;
	as_room = cfg->id_bits >= 32 ? 1 : 1ull << (32 - cfg->id_bits);
	return cfg->nr_as <= as_room;
}

int config_check(const struct memslot_config *cfg)
{
	if (!cfg || cfg->size < CONFIG_MIN_SIZE)
		return -EINVAL;
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

/* Copy @n bytes of a caller's struct into zeroed @dst of @size bytes. */
static void copy_by_size(void *dst, size_t size, const void *src, size_t n)
{
	memset(dst, 0, size);
	memcpy(dst, src, n < size ? n : size);
}

/* A caller's struct must reach its last hook; a missing @ctx reads as
 * NULL. */
#define ALLOC_MIN_SIZE \
	(offsetof(struct memslot_allocator, free) + sizeof(void *))
#define RCU_MIN_SIZE \
	(offsetof(struct memslot_rcu_ops, unregister_thread) + sizeof(void *))

int config_copy(struct memslot_config *dst, const struct memslot_config *src)
{
	if (!src || src->size < CONFIG_MIN_SIZE)
		return -EINVAL;
	copy_by_size(dst, sizeof(*dst), src, src->size);
	dst->size = sizeof(*dst);
	return config_check(dst);
}

int config_copy_alloc(struct memslot_allocator *dst,
		      const struct memslot_allocator *src)
{
	if (!src) {
		*dst = mem_default_allocator;
		return 0;
	}
	if (src->size < ALLOC_MIN_SIZE || !src->malloc || !src->free)
		return -EINVAL;
	copy_by_size(dst, sizeof(*dst), src, src->size);
	dst->size = sizeof(*dst);
	return 0;
}

int config_copy_rcu(struct memslot_rcu_ops *dst,
		    const struct memslot_rcu_ops *src)
{
	if (!src)
		src = memslot_rcu_urcu_memb();
	if (src->size < RCU_MIN_SIZE || !src->read_lock || !src->read_unlock ||
	    !src->synchronize)
		return -EINVAL;
	copy_by_size(dst, sizeof(*dst), src, src->size);
	dst->size = sizeof(*dst);
	return 0;
}
