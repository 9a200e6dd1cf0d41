/* SPDX-License-Identifier: MIT */
/* Lowest-free-id bitmap with summary levels; see idmap.h. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "idmap.h"

#define WORD_BITS 64u

void idmap_init(struct idmap *m, struct mem_alloc *alloc, uint64_t limit)
{
	memset(m, 0, sizeof(*m));
	m->alloc = alloc;
	m->limit = limit;
}

void idmap_destroy(struct idmap *m)
{
	mem_free(m->alloc, m->words, m->nwords * sizeof(uint64_t));
	m->words = NULL;
	m->nwords = 0;
	m->cap = 0;
}

/* Lay out the levels for @cap ids; return the total word count. */
static uint64_t layout(struct idmap *m, uint64_t cap)
{
	uint64_t n = cap, total = 0;

	m->levels = 0;
	do {
		n = (n + WORD_BITS - 1) / WORD_BITS;
		m->off[m->levels] = total;
		m->len[m->levels++] = n;
		total += n;
	} while (n > 1);
	return total;
}

/* Set bit @bit of level @lvl and propagate fullness upwards. */
static void set_bit(struct idmap *m, unsigned int lvl, uint64_t bit)
{
	for (; lvl < m->levels; lvl++) {
		uint64_t *w = &m->words[m->off[lvl] + bit / WORD_BITS];

		*w |= 1ull << (bit % WORD_BITS);
		if (~*w)
			return;
		bit /= WORD_BITS;
	}
}

/* Mark the bits past the end of each level as used, so they never look
 * free. */
static void fill_padding(struct idmap *m)
{
	uint64_t bits = m->cap;

	for (unsigned int lvl = 0; lvl < m->levels; lvl++) {
		for (uint64_t b = bits; b < m->len[lvl] * WORD_BITS; b++)
			set_bit(m, lvl, b);
		bits = m->len[lvl];
	}
}

static uint64_t next_cap(const struct idmap *m, uint64_t used)
{
	uint64_t cap = m->cap ? m->cap : WORD_BITS;

	while (cap < used + 1 && cap < m->limit)
		cap *= 2;
	return cap < m->limit ? cap : m->limit;
}

int idmap_reserve(struct idmap *m, uint64_t used,
		  void (*each_used)(void *ctx, void (*fn)(struct idmap *, uint64_t),
				    struct idmap *map),
		  void *ctx)
{
	uint64_t cap = next_cap(m, used);
	struct idmap bigger;

	if (cap == 0 || (m->words && cap <= m->cap))
		return 0;
	bigger = *m;
	bigger.cap = cap;
	bigger.nwords = layout(&bigger, cap);
	bigger.words = mem_zalloc(m->alloc, bigger.nwords * sizeof(uint64_t));
	if (!bigger.words)
		return -ENOMEM;
	fill_padding(&bigger);
	each_used(ctx, idmap_set, &bigger);
	idmap_destroy(m);
	*m = bigger;
	return 0;
}

void idmap_set(struct idmap *m, uint64_t id)
{
	if (id < m->cap)
		set_bit(m, 0, id);
}

void idmap_clear(struct idmap *m, uint64_t id)
{
	if (id >= m->cap)
		return;
	for (unsigned int lvl = 0; lvl < m->levels; lvl++) {
		uint64_t *w = &m->words[m->off[lvl] + id / WORD_BITS];
		bool was_full = !~*w;

		*w &= ~(1ull << (id % WORD_BITS));
		if (!was_full)
			return;
		id /= WORD_BITS;
	}
}

int idmap_lowest_free(const struct idmap *m, uint64_t *id)
{
	uint64_t pos = 0;

	if (!m->words)
		return m->limit ? (*id = 0, 0) : -ENOSPC;
	for (unsigned int lvl = m->levels; lvl-- > 0;) {
		uint64_t w = m->words[m->off[lvl] + pos];

		if (!~w)
			return -ENOSPC;
		pos = pos * WORD_BITS + (uint64_t)__builtin_ctzll(~w);
	}
	*id = pos;
	return 0;
}
