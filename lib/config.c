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
