# The smallest Linux program: write(1, msg, len) then exit(0), with the
# `syscall` instruction. Built with `as` + `ld`.
        .globl _start
        .text
_start:
        mov     $1, %eax                # write
        mov     $1, %edi                # fd 1
        lea     msg(%rip), %rsi
        mov     $len, %edx
        syscall
        mov     $60, %eax               # exit
        xor     %edi, %edi
        syscall
        .data
msg:    .ascii  "Hello from as+ld via syscall\n"
        len = . - msg
