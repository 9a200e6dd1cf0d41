/* SPDX-License-Identifier: MIT */
/*
 * The contract between examples/kvm_vmm.c and its guest, kvm_guest.S.
 *
 * Plain numbers only: the assembler reads this file too.
 *
 * The guest runs in 32-bit protected mode with flat segments and no
 * paging, so a guest-physical address is what it dereferences.  It starts
 * with %esi pointing at a plan: an array of 16-byte ops
 *	{ uint32_t kind, gpa, len, arg }
 * which it executes in order until OP_END.  The VMM writes the plan
 * before the guest starts; the guest never decides anything itself, so
 * the VMM knows every byte it will write and every exit it will take.
 *
 * Requests to the device go through two 32-bit I/O ports: the guest
 * pushes arguments to GUEST_PORT_ARG, then writes a command number to
 * GUEST_PORT_CMD, which the VMM serves before the guest goes on.
 */
#ifndef KVM_GUEST_H
#define KVM_GUEST_H

/* Guest-physical places inside the boot slot (slot 0 at gpa 0). */
#define GUEST_CODE_GPA 0x1000
#define GUEST_STACK_TOP 0x8000
#define GUEST_PLAN_GPA 0x10000

/* Ports: KVM handles neither without an in-kernel device model. */
#define GUEST_PORT_ARG 0x510
#define GUEST_PORT_CMD 0x514

/* Commands written to GUEST_PORT_CMD, with the arguments pushed before. */
#define GUEST_CMD_DMA_TO_GUEST 1	/* gpa, len, seed: device writes */
#define GUEST_CMD_DMA_FROM_GUEST 2	/* gpa, len, seed: device reads */
#define GUEST_CMD_SYNC 3		/* step: the VMM changes the BARs */
#define GUEST_CMD_FAIL 4		/* gpa, got, want, op index */
#define GUEST_CMD_DONE 5		/* the plan ran to its end */

/* Plan op kinds. */
#define GUEST_OP_END 0
#define GUEST_OP_FILL 1		/* write pattern(arg) over [gpa, gpa + len) */
#define GUEST_OP_DMA_IN 2	/* device fills the range, guest checks it */
#define GUEST_OP_DMA_OUT 3	/* guest fills the range, device checks it */
#define GUEST_OP_SYNC 4		/* GUEST_CMD_SYNC with step = gpa field */
#define GUEST_OP_READ32 5	/* the dword at gpa must equal arg */
#define GUEST_OP_WRITE32 6	/* store arg to the dword at gpa */

#define GUEST_OP_SIZE 16

/*
 * The byte pattern at guest-physical address a for seed s is the top
 * byte of (a ^ s) * GUEST_PATTERN_MUL (32-bit).  The multiplier is odd,
 * so the product is a bijection of a ^ s: neighbouring bytes differ, and a
 * byte copied to the wrong address (a slot mapped at the wrong place)
 * does not match.
 */
#define GUEST_PATTERN_MUL 0x9E3779B1

/* What the VMM answers for an MMIO read: nothing decodes the address. */
#define GUEST_MMIO_READ_VALUE 0xFFFFFFFF

#endif /* KVM_GUEST_H */
