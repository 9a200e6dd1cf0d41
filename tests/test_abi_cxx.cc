// SPDX-License-Identifier: MIT
//
// The public headers as a C++ user sees them: they must compile as C++,
// give C linkage (the calls below link against the C library) and keep the
// stack iterators usable as plain C++ objects.
#include <memslot/access.h>
#include <memslot/alloc.h>
#include <memslot/memslot.h>
#include <memslot/nospec.h>
#include <memslot/rcu.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <type_traits>

static_assert(std::is_standard_layout<memslot_region>::value,
	      "memslot_region is a C struct");
static_assert(std::is_trivially_copyable<memslot_gfn_iter>::value,
	      "iterators live on the caller's stack");
static_assert(std::is_trivially_copyable<memslot_hva_iter>::value,
	      "iterators live on the caller's stack");
static_assert(sizeof(memslot_region) >= 32,
	      "starts like kvm_userspace_memory_region");

int main()
{
	memslot_config cfg{};
	memslot_config_init_x86_64(&cfg);

	int failures = 0;
	if (cfg.page_shift != 12 || cfg.nr_as != 1)
		failures++;
	const char *msg = memslot_strerror(-EINVAL);
	if (msg == nullptr || std::strlen(msg) == 0)
		failures++;
	if (memslot_rule_str(MEMSLOT_RULE_MODIFY) == nullptr)
		failures++;
	if (memslot_array_index_nospec(5, 4) != 0 ||
	    memslot_array_index_nospec(3, 4) != 3)
		failures++;

	if (failures) {
		std::fprintf(stderr, "abi C++: %d checks failed\n", failures);
		return 1;
	}
	std::printf("abi C++: ok\n");
	return 0;
}
