/* A minimal PVH guest: QEMU enters it in 32-bit protected mode at the
 * address of the XEN_ELFNOTE_PHYS32_ENTRY note. It prints one line on
 * COM1 and ends the VM through isa-debug-exit (port 0xf4). */
    .section .note.pvh, "a"
    .align 4
    .long 4          /* namesz */
    .long 4          /* descsz */
    .long 18         /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long _start
    .text
    .code32
    .globl _start
_start:
    mov $msg, %esi
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  mov $0xf4, %dx
    xor %eax, %eax
    out %al, %dx
    hlt
msg: .asciz "hello from a PVH guest\n"
