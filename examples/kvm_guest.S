/* SPDX-License-Identifier: MIT */
/*
 * The guest of examples/kvm_vmm.c: 32-bit protected-mode code with flat
 * segments and no paging, copied by the VMM to GUEST_CODE_GPA and entered
 * with %esi = the plan (see kvm_guest.h) and %esp = GUEST_STACK_TOP.
 *
 * It is assembled into the VMM as bytes between kvm_guest_code and
 * kvm_guest_code_end, never run on the host.  Every jump and call is
 * relative and no instruction names an absolute address of its own, so
 * the bytes run wherever they are copied.
 *
 * Registers while the plan runs:
 *	%esi	the current op
 *	%ebp	the plan's first op (for the op index of a failure report)
 *	%edi, %ecx, %ebx	gpa, length and seed of a range op
 *	%eax, %edx	scratch (%dx is the port of every in/out)
 */
#include "kvm_guest.h"

	.section .rodata
	.globl	kvm_guest_code
	.globl	kvm_guest_code_end
	.hidden	kvm_guest_code
	.hidden	kvm_guest_code_end
	.code32

kvm_guest_code:
	cld
	movl	%esi, %ebp

next_op:
	movl	(%esi), %eax
	cmpl	$GUEST_OP_END, %eax
	je	plan_done
	cmpl	$GUEST_OP_FILL, %eax
	je	op_fill
	cmpl	$GUEST_OP_DMA_IN, %eax
	je	op_dma_in
	cmpl	$GUEST_OP_DMA_OUT, %eax
	je	op_dma_out
	cmpl	$GUEST_OP_SYNC, %eax
	je	op_sync
	cmpl	$GUEST_OP_READ32, %eax
	je	op_read32
	cmpl	$GUEST_OP_WRITE32, %eax
	je	op_write32
	/* An op this guest does not know: report it as a failure at gpa 0. */
	xorl	%edi, %edi
	movl	%eax, %ecx
	jmp	report_failure

op_fill:
	call	load_range
	call	fill
	jmp	op_next

/* The device writes the range; then every byte must hold the pattern. */
op_dma_in:
	call	send_range
	movl	$GUEST_CMD_DMA_TO_GUEST, %eax
	call	command
	call	load_range
	call	check
	jmp	op_next

/* Fill the range, then let the device read and check it. */
op_dma_out:
	call	load_range
	call	fill
	call	send_range
	movl	$GUEST_CMD_DMA_FROM_GUEST, %eax
	call	command
	jmp	op_next

op_sync:
	movl	4(%esi), %eax
	call	push_arg
	movl	$GUEST_CMD_SYNC, %eax
	call	command
	jmp	op_next

/*
 * One dword load: from a BAR it is memory, from a gpa no slot holds it
 * is an MMIO exit whose value the VMM supplies.
 */
op_read32:
	movl	4(%esi), %edi
	movl	(%edi), %eax
	movl	12(%esi), %ecx
	cmpl	%ecx, %eax
	jne	report_failure
	jmp	op_next

op_write32:
	movl	4(%esi), %edi
	movl	12(%esi), %eax
	movl	%eax, (%edi)
	jmp	op_next

op_next:
	addl	$GUEST_OP_SIZE, %esi
	jmp	next_op

plan_done:
	movl	$GUEST_CMD_DONE, %eax
	call	command
halt:
	hlt
	jmp	halt

/* %edi, %ecx, %ebx = gpa, length, seed of the current op. */
load_range:
	movl	4(%esi), %edi
	movl	8(%esi), %ecx
	movl	12(%esi), %ebx
	ret

/* Push gpa, length and seed of the current op to the device. */
send_range:
	movl	4(%esi), %eax
	call	push_arg
	movl	8(%esi), %eax
	call	push_arg
	movl	12(%esi), %eax
	call	push_arg
	ret

/* %eax: one argument for the next command.  Clobbers %edx. */
push_arg:
	movw	$GUEST_PORT_ARG, %dx
	outl	%eax, %dx
	ret

/* %eax: the command.  Clobbers %edx. */
command:
	movw	$GUEST_PORT_CMD, %dx
	outl	%eax, %dx
	ret

/*
 * %eax = the pattern byte for address %edi and seed %ebx, zero-extended:
 * the top byte of (%edi ^ %ebx) * GUEST_PATTERN_MUL.
 */
pattern:
	movl	%edi, %eax
	xorl	%ebx, %eax
	imull	$GUEST_PATTERN_MUL, %eax, %eax
	shrl	$24, %eax
	ret

/* Write the pattern over %ecx bytes from %edi, seed %ebx. */
fill:
	testl	%ecx, %ecx
	jz	2f
1:	call	pattern
	movb	%al, (%edi)
	incl	%edi
	decl	%ecx
	jnz	1b
2:	ret

/* Check the pattern over %ecx bytes from %edi; report the first wrong one. */
check:
	testl	%ecx, %ecx
	jz	2f
1:	call	pattern
	cmpb	%al, (%edi)
	jne	3f
	incl	%edi
	decl	%ecx
	jnz	1b
2:	ret
3:	movl	%eax, %ecx
	movzbl	(%edi), %eax
	jmp	report_failure

/*
 * The guest saw %eax at gpa %edi where it wanted %ecx: push gpa, got,
 * want and the op index, send GUEST_CMD_FAIL and stop.  Reached by a
 * jump (from inside check, with its return address still on the stack,
 * which no longer matters).
 */
report_failure:
	movl	%ecx, %ebx
	movl	%eax, %ecx
	movl	%edi, %eax
	call	push_arg
	movl	%ecx, %eax
	call	push_arg
	movl	%ebx, %eax
	call	push_arg
	movl	%esi, %eax
	subl	%ebp, %eax
	shrl	$4, %eax		/* / GUEST_OP_SIZE */
	call	push_arg
	movl	$GUEST_CMD_FAIL, %eax
	call	command
	jmp	halt

kvm_guest_code_end:
	.code64

	.section .note.GNU-stack, "", @progbits
