/* A system call in the last two bytes of user space: its return address,
 * 0x800000000000, is not canonical, and returning there would fault in
 * ring 0 (sysretq on Intel, iretq everywhere). Linked at 0x7ffffffff000 by
 * top.ld. Built twice: with `syscall`, and with -DINT80 with `int 0x80`. */
    .text
    .globl _start
_start:
    mov $39, %eax            /* getpid */
    jmp last

    .org 0xffe
last:
#ifdef INT80
    int $0x80
#else
    syscall
#endif
