//! A stock Linux kernel (a bzImage) placed in guest memory by the x86 boot
//! protocol (Documentation/arch/x86/boot.rst), entered at its 64-bit entry
//! point: linux-loader's bzImage loader puts the protected-mode part at
//! 1 MiB; the VMM fills the "zero page" (`boot_params`: the setup header,
//! the e820 memory map, where the command line and the initrd are) and
//! builds what the 64-bit entry wants — long mode, paging with memory
//! identity-mapped, a GDT with a flat 64-bit code segment at `__BOOT_CS`
//! (0x10) and data at `__BOOT_DS` (0x18), interrupts off, RSI = the zero
//! page — with the same descriptor and page-table builders as for the own
//! kernel (`arch/`). Everything here but [`load`] is pure and host-tested.

use crate::arch::gdt::Descriptor;
use crate::arch::paging::{PageTableBuilder, PTE_A, PTE_D, PTE_RW};
use crate::arch::regs::{CR0_ET, CR0_NE, CR0_PE, CR0_PG, CR4_PAE};
use kvm_bindings::{kvm_regs, kvm_sregs};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{BzImage, KernelLoader};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

/// Where the setup header starts in the file (and in `boot_params`).
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// Bytes to read from the file's start to see the whole setup header.
pub const HEAD_BYTES: usize = 0x280;
/// "HdrS", at offset 0x202.
const HDRS: u32 = 0x5372_6448;
/// The boot sector's signature, at offset 0x1fe.
const BOOT_FLAG: u16 = 0xaa55;

/// Boot protocol 2.12 (Linux 3.8) added `xloadflags` and the 64-bit entry.
const MIN_PROTOCOL: u16 = 0x020c;
/// xloadflags: the kernel has the 64-bit entry point at load address + 0x200.
const XLF_KERNEL_64: u16 = 1 << 0;
/// loadflags: the protected-mode part is loaded at 1 MiB (a bzImage).
const LOADED_HIGH: u8 = 1 << 0;
/// loadflags: `heap_end_ptr` is valid (the 16-bit setup code's heap).
const CAN_USE_HEAP: u8 = 1 << 7;
/// type_of_loader: "undefined" boot loader (0xff), as Firecracker and QEMU use.
const LOADER_OTHER: u8 = 0xff;

/// Physical layout of a Linux guest's first megabyte, chosen by the VMM.
pub mod phys {
    /// Our boot GDT (4 descriptors). Linux loads its own at once.
    pub const GDT: u64 = 0x500;
    /// The zero page (`struct boot_params`, 4 KiB).
    pub const ZERO_PAGE: u64 = 0x7000;
    /// Top of a small stack for the first instructions (the decompressor
    /// sets up its own at once).
    pub const STACK_TOP: u64 = 0x7000;
    /// Identity-mapping page tables: PML4, PDPT and up to 4 page directories.
    pub const PAGE_TABLES: u64 = 0x9000;
    pub const PAGE_TABLES_END: u64 = 0x10000;
    /// The kernel command line.
    pub const CMDLINE: u64 = 0x20000;
    /// End of the low RAM the e820 map reports (the EBDA starts there on a PC).
    pub const LOW_RAM_END: u64 = 0x9fc00;
    /// Where the protected-mode kernel goes (the boot protocol's default).
    pub const KERNEL_LOAD: u64 = 0x10_0000;
}

/// The most memory a Linux guest may have: below the 32-bit MMIO hole
/// (the IOAPIC at 0xfec00000, the LAPIC at 0xfee00000), so that RAM is one
/// e820 range above 1 MiB.
pub const MAX_MEM_MIB: u64 = 3 << 10;

/// Why a bzImage cannot be booted.
#[derive(Debug, thiserror::Error)]
pub enum BzImageError {
    #[error(
        "{0} is not a bzImage (no 0xAA55 boot flag at 0x1fe and \"HdrS\" at 0x202): give a Linux kernel as built \
         (arch/x86/boot/bzImage, /boot/vmlinuz-*)"
    )]
    NotBzImage(String),
    #[error(
        "{path} speaks boot protocol {major}.{minor:02}; vmm enters Linux at its 64-bit entry, which needs 2.12 \
         (Linux 3.8) or later"
    )]
    TooOld { path: String, major: u16, minor: u16 },
    #[error(
        "{0} has no 64-bit entry point (xloadflags bit XLF_KERNEL_64 is clear): it is a 32-bit kernel; build an \
         x86_64 kernel"
    )]
    No64BitEntry(String),
    #[error(
        "--mem {given} MiB is too little for this kernel: it decompresses to {init_mib} MiB at {at_mib} MiB, and the \
         initrd needs {initrd_kib} KiB above that; use --mem {needed} or more"
    )]
    MemTooSmall {
        given: u64,
        init_mib: u64,
        at_mib: u64,
        initrd_kib: u64,
        needed: u64,
    },
    #[error("--mem {0} MiB is too large for a Linux guest: at most {MAX_MEM_MIB} MiB (RAM stays below the 32-bit MMIO hole)")]
    MemTooLarge(u64),
    #[error(
        "the kernel command line is {len} bytes; this kernel takes at most {max} (its setup header's cmdline_size)"
    )]
    CmdlineTooLong { len: usize, max: u32 },
    #[error("the kernel command line contains a NUL byte, which would end it early")]
    CmdlineNul,
    #[error(
        "init argument {0:?} cannot be passed on the kernel command line (after `--`): it is empty or holds a \
         double quote, a NUL or a newline; put it in a file the program reads instead"
    )]
    InitArg(String),
    #[error("loading the bzImage failed: {0}")]
    Loader(#[from] linux_loader::loader::Error),
    #[error("guest memory access failed: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
    #[error(transparent)]
    Tables(#[from] crate::error::Error),
}

/// Does `head` (the file's first bytes) look like a bzImage? Read
/// [`HEAD_BYTES`] for a sure answer.
pub fn is_bzimage(head: &[u8]) -> bool {
    let u16_at = |o: usize| head.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| head.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    u16_at(0x1fe) == Some(BOOT_FLAG) && u32_at(0x202) == Some(HDRS)
}

/// The setup header of a bzImage, checked for what vmm needs: a bzImage
/// (LOADED_HIGH), boot protocol 2.12+, and the 64-bit entry.
pub fn parse_header(path: &str, head: &[u8]) -> Result<setup_header, BzImageError> {
    if !is_bzimage(head) || head.len() < SETUP_HEADER_OFFSET + size_of::<setup_header>() {
        return Err(BzImageError::NotBzImage(path.into()));
    }
    let mut hdr = setup_header::default();
    hdr.as_mut_slice()
        .copy_from_slice(&head[SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + size_of::<setup_header>()]);
    let version = hdr.version;
    if version < MIN_PROTOCOL {
        return Err(BzImageError::TooOld {
            path: path.into(),
            major: version >> 8,
            minor: version & 0xff,
        });
    }
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err(BzImageError::NotBzImage(path.into()));
    }
    if hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BzImageError::No64BitEntry(path.into()));
    }
    Ok(hdr)
}

/// Where things go in a guest of `mem_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub mem_bytes: u64,
    /// The initrd's physical range, at the top of RAM (page aligned).
    pub initrd: Option<(u64, u64)>,
}

const MIB: u64 = 1 << 20;

/// Place the initrd at the top of RAM (below `initrd_addr_max`), after
/// checking that the kernel has room to decompress below it: a relocatable
/// kernel moves to `pref_address` (LOAD_PHYSICAL_ADDR, 16 MiB) and needs
/// `init_size` bytes there.
pub fn plan(hdr: &setup_header, mem_bytes: u64, initrd_len: Option<u64>) -> Result<Layout, BzImageError> {
    if mem_bytes > MAX_MEM_MIB * MIB {
        return Err(BzImageError::MemTooLarge(mem_bytes / MIB));
    }
    let (pref, init_size, align) = (
        hdr.pref_address,
        u64::from(hdr.init_size),
        u64::from(hdr.kernel_alignment),
    );
    let align = align.max(0x1000);
    let at = pref.max(phys::KERNEL_LOAD.div_ceil(align) * align);
    let kernel_end = at + init_size;
    let initrd_len = initrd_len.unwrap_or(0);
    let initrd_pages = initrd_len.div_ceil(0x1000) * 0x1000;
    // What the running kernel needs besides its image: page tables, slab,
    // its own initramfs unpacked from the initrd (as large again).
    let slack = 32 * MIB + initrd_pages;
    let needed = kernel_end + initrd_pages + slack;
    if mem_bytes < needed {
        return Err(BzImageError::MemTooSmall {
            given: mem_bytes / MIB,
            init_mib: init_size.div_ceil(MIB),
            at_mib: at / MIB,
            initrd_kib: initrd_len.div_ceil(1024),
            needed: needed.div_ceil(MIB),
        });
    }
    let top = mem_bytes.min(u64::from(hdr.initrd_addr_max) + 1);
    let initrd = (initrd_len > 0).then(|| {
        let start = (top - initrd_len) & !0xfff;
        (start, initrd_len)
    });
    Ok(Layout { mem_bytes, initrd })
}

/// The e820 map: low RAM below the EBDA, and everything from 1 MiB up. The
/// VGA hole and BIOS area (0xa0000..0x100000) are not RAM to Linux.
pub fn e820(mem_bytes: u64) -> Vec<boot_e820_entry> {
    const RAM: u32 = 1;
    vec![
        boot_e820_entry {
            addr: 0,
            size: phys::LOW_RAM_END,
            r#type: RAM,
        },
        boot_e820_entry {
            addr: phys::KERNEL_LOAD,
            size: mem_bytes - phys::KERNEL_LOAD,
            r#type: RAM,
        },
    ]
}

/// The zero page: the kernel's own setup header (as loaded), with the
/// fields a boot loader must fill.
pub fn boot_params(hdr: &setup_header, layout: &Layout, cmdline_len: usize) -> boot_params {
    let mut p = boot_params {
        hdr: *hdr,
        ..Default::default()
    };
    p.hdr.type_of_loader = LOADER_OTHER;
    p.hdr.loadflags |= CAN_USE_HEAP;
    p.hdr.heap_end_ptr = 0xfe00;
    p.hdr.cmd_line_ptr = phys::CMDLINE as u32;
    p.hdr.cmdline_size = cmdline_len as u32;
    if let Some((start, len)) = layout.initrd {
        p.hdr.ramdisk_image = start as u32;
        p.hdr.ramdisk_size = len as u32;
    }
    let map = e820(layout.mem_bytes);
    p.e820_entries = map.len() as u8;
    p.e820_table[..map.len()].copy_from_slice(&map);
    p
}

/// `__BOOT_CS` and `__BOOT_DS`, the selectors the 64-bit entry requires.
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;

/// The boot GDT: null, unused, flat 64-bit code at 0x10, flat data at 0x18.
pub fn gdt() -> [u64; 4] {
    [0, 0, Descriptor::code64(0).encode(), Descriptor::data(0).encode()]
}

/// EFER.LME | EFER.LMA: long mode, active.
const EFER_LME_LMA: u64 = (1 << 8) | (1 << 10);

/// Special registers at the 64-bit entry: long mode with paging (`cr3`),
/// our GDT loaded and every data selector at `__BOOT_DS`. TR and LDT keep
/// KVM's reset values (Linux loads its own).
pub fn setup_sregs(sregs: &mut kvm_sregs, cr3: u64) {
    sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
    sregs.cr3 = cr3;
    sregs.cr4 = CR4_PAE;
    sregs.efer = EFER_LME_LMA;
    sregs.gdt.base = phys::GDT;
    sregs.gdt.limit = (gdt().len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = Descriptor::code64(0).to_kvm_segment(BOOT_CS);
    let data = Descriptor::data(0).to_kvm_segment(BOOT_DS);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
}

/// General registers at the 64-bit entry (load address + 0x200): RSI = the
/// zero page, interrupts off.
pub fn setup_regs() -> kvm_regs {
    kvm_regs {
        rip: phys::KERNEL_LOAD + 0x200,
        rsi: phys::ZERO_PAGE,
        rsp: phys::STACK_TOP,
        rflags: 0x2,
        ..Default::default()
    }
}

/// Arguments for init, as the kernel command line carries them: after `--`,
/// each in double quotes if it holds a space (Linux's `next_arg` strips
/// them). What the command line cannot carry is refused.
pub fn init_args(args: &[String]) -> Result<String, BzImageError> {
    let mut out = String::new();
    for a in args {
        if a.is_empty() || a.contains(['"', '\0', '\n']) {
            return Err(BzImageError::InitArg(a.clone()));
        }
        out.push(' ');
        if a.contains(char::is_whitespace) {
            out.push('"');
            out.push_str(a);
            out.push('"');
        } else {
            out.push_str(a);
        }
    }
    Ok(out)
}

/// What [`load`] did.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    /// The PML4, for CR3.
    pub pml4: u64,
    pub layout: Layout,
}

/// Put the kernel, initrd, command line, zero page, GDT and identity page
/// tables into `mem`. `hdr` is [`parse_header`]'s answer for `kernel`.
pub fn load(
    mem: &GuestMemoryMmap,
    hdr: &setup_header,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
) -> Result<Loaded, BzImageError> {
    if cmdline.contains('\0') {
        return Err(BzImageError::CmdlineNul);
    }
    if cmdline.len() > hdr.cmdline_size as usize {
        return Err(BzImageError::CmdlineTooLong {
            len: cmdline.len(),
            max: hdr.cmdline_size,
        });
    }
    let mem_bytes = vm_memory::GuestMemoryBackend::last_addr(mem).0 + 1;
    let layout = plan(hdr, mem_bytes, initrd.map(|i| i.len() as u64))?;
    let loaded = BzImage::load(
        mem,
        Some(GuestAddress(phys::KERNEL_LOAD)),
        &mut std::io::Cursor::new(kernel),
        Some(GuestAddress(phys::KERNEL_LOAD)),
    )?;
    // The loader's copy of the header has code32_start set to where it loaded.
    let hdr = loaded.setup_header.unwrap_or(*hdr);
    if let (Some(bytes), Some((start, _))) = (initrd, layout.initrd) {
        mem.write_slice(bytes, GuestAddress(start))?;
    }
    let mut line = cmdline.as_bytes().to_vec();
    line.push(0);
    mem.write_slice(&line, GuestAddress(phys::CMDLINE))?;
    let params = boot_params(&hdr, &layout, cmdline.len());
    mem.write_obj(params, GuestAddress(phys::ZERO_PAGE))?;
    let gdt: Vec<u8> = gdt().iter().flat_map(|d| d.to_le_bytes()).collect();
    mem.write_slice(&gdt, GuestAddress(phys::GDT))?;
    // Identity map of all RAM with 2 MiB pages: the entry wants the loaded
    // kernel, the zero page and the command line mapped; Linux builds its
    // own tables at once.
    let mut pt = PageTableBuilder::new(mem, phys::PAGE_TABLES, phys::PAGE_TABLES_END)?;
    pt.map_range(
        0,
        0,
        mem_bytes.div_ceil(crate::arch::paging::PAGE_2M) * crate::arch::paging::PAGE_2M,
        PTE_RW | PTE_A | PTE_D,
    )?;
    Ok(Loaded { pml4: pt.pml4, layout })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as Debian's 6.1 cloud kernel has it.
    fn head() -> Vec<u8> {
        let mut h = vec![0u8; HEAD_BYTES];
        h[0x1f1] = 39; // setup_sects
        h[0x1fe..0x200].copy_from_slice(&BOOT_FLAG.to_le_bytes());
        h[0x202..0x206].copy_from_slice(&HDRS.to_le_bytes());
        h[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        h[0x211] = LOADED_HIGH;
        h[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
        h[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        h[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
        h[0x234] = 1;
        h[0x236..0x238].copy_from_slice(&0x7fu16.to_le_bytes());
        h[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
        h[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        h[0x260..0x264].copy_from_slice(&0x337_8000u32.to_le_bytes());
        h
    }

    #[test]
    fn a_bzimage_header_is_recognised_and_read() {
        let h = head();
        assert!(is_bzimage(&h));
        let hdr = parse_header("k", &h).unwrap();
        let (init_size, pref, cmdline_size) = (hdr.init_size, hdr.pref_address, hdr.cmdline_size);
        assert_eq!((init_size, pref, cmdline_size), (0x337_8000, 0x100_0000, 2047));
        assert!(!is_bzimage(b"\x7fELF"));
        assert!(!is_bzimage(&[]));
    }

    #[test]
    fn old_32_bit_and_non_bzimage_kernels_are_refused_with_the_reason() {
        let mut h = head();
        h[0x206..0x208].copy_from_slice(&0x020au16.to_le_bytes());
        assert!(parse_header("k", &h).unwrap_err().to_string().contains("2.10"));
        let mut h = head();
        h[0x236] = 0;
        assert!(parse_header("k", &h).unwrap_err().to_string().contains("32-bit"));
        let mut h = head();
        h[0x211] = 0;
        assert!(matches!(parse_header("k", &h), Err(BzImageError::NotBzImage(_))));
        assert!(matches!(
            parse_header("k", &h[..0x210]),
            Err(BzImageError::NotBzImage(_))
        ));
    }

    #[test]
    fn the_initrd_goes_to_the_top_and_small_memory_is_refused() {
        let hdr = parse_header("k", &head()).unwrap();
        let l = plan(&hdr, 256 * MIB, Some(5000)).unwrap();
        assert_eq!(l.initrd, Some((256 * MIB - 0x2000, 5000)));
        assert_eq!(plan(&hdr, 256 * MIB, None).unwrap().initrd, None);
        let e = plan(&hdr, 64 * MIB, Some(5000)).unwrap_err();
        assert!(e.to_string().contains("--mem 100 "), "{e}");
        assert!(matches!(
            plan(&hdr, 4096 * MIB, None),
            Err(BzImageError::MemTooLarge(4096))
        ));
    }

    #[test]
    fn the_zero_page_says_where_everything_is() {
        let hdr = parse_header("k", &head()).unwrap();
        let l = plan(&hdr, 256 * MIB, Some(4096)).unwrap();
        let p = boot_params(&hdr, &l, 30);
        let (cmd, size, rd, rdlen) = (
            p.hdr.cmd_line_ptr,
            p.hdr.cmdline_size,
            p.hdr.ramdisk_image,
            p.hdr.ramdisk_size,
        );
        assert_eq!((cmd, size), (0x20000, 30));
        assert_eq!((u64::from(rd), rdlen), (256 * MIB - 4096, 4096));
        assert_eq!(p.hdr.type_of_loader, 0xff);
        assert_eq!(p.e820_entries, 2);
        let hi = p.e820_table[1];
        let (addr, size) = (hi.addr, hi.size);
        assert_eq!((addr, size), (MIB, 255 * MIB));
        // The zero page is one page, with the header at 0x1f1.
        assert_eq!(size_of::<boot_params>(), 4096);
        assert_eq!(&p.as_slice()[0x202..0x206], b"HdrS");
    }

    #[test]
    fn entry_state_is_long_mode_with_the_boot_selectors() {
        let mut s = kvm_sregs::default();
        setup_sregs(&mut s, 0x9000);
        assert_eq!((s.cs.selector, s.cs.l, s.cs.db), (0x10, 1, 0));
        assert_eq!((s.ds.selector, s.ss.selector), (0x18, 0x18));
        assert_eq!(s.efer & 0x500, 0x500);
        assert_eq!(s.cr0 & 0x8000_0001, 0x8000_0001);
        assert_eq!(s.gdt.limit, 31);
        let g = gdt();
        assert_eq!(Descriptor::decode(g[2]), Descriptor::code64(0));
        let r = setup_regs();
        assert_eq!((r.rip, r.rsi, r.rflags), (0x10_0200, 0x7000, 2));
    }

    #[test]
    fn init_arguments_survive_the_command_line() {
        let a = |v: &[&str]| init_args(&v.iter().map(ToString::to_string).collect::<Vec<_>>());
        assert_eq!(a(&["x", "a b"]).unwrap(), " x \"a b\"");
        assert_eq!(a(&[]).unwrap(), "");
        assert!(a(&["a\"b"]).is_err());
        assert!(a(&[""]).is_err());
    }
}
