//! Reading and loading the guest kernel image.
//!
//! The VMM checks the ELF header itself, because linux-loader's ELF loader
//! accepts any ELF and would fail later with a vaguer message, then loads
//! the PT_LOAD segments with linux-loader into guest memory, and reads the
//! boot contract (`.vmm_header`) and the symbols with the `object` crate.

use crate::error::{Error, Result};
use crate::introspect::symbols::Symbols;
use linux_loader::loader::{Elf, KernelLoader};
use object::elf::{ELFCLASS32, ELFCLASS64, ELFDATA2LSB, EM_X86_64, ET_EXEC, PF_W, PF_X, PT_LOAD};
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{Endianness, Object, ObjectSection};
use std::borrow::Cow;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use vm_memory::GuestMemoryMmap;
use vmm_abi::header::{KernelHeader, HEADER_MAGIC, HEADER_SECTION, HEADER_SIZE, HEADER_VERSION};
use vmm_abi::layout::{phys, KERNEL_PHYS_LOAD};

/// A loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub virt: u64,
    pub phys: u64,
    pub memsz: u64,
    pub filesz: u64,
    pub writable: bool,
    pub executable: bool,
}

/// A validated kernel image.
#[derive(Debug, Clone)]
pub struct KernelImage {
    pub path: PathBuf,
    pub entry: u64,
    pub segments: Vec<Segment>,
    pub header: KernelHeader<u64>,
    /// End of the highest segment in physical memory.
    pub phys_end: u64,
    /// The image, kept to read its symbol table when first needed: a boot
    /// that never reports, traces or debugs does not pay for it.
    bytes: Cow<'static, [u8]>,
    symbols: std::sync::OnceLock<Symbols>,
}

/// Names for the e_machine values people are most likely to hand us by mistake.
fn machine_name(code: u16) -> &'static str {
    match code {
        3 => "32-bit x86 (i386)",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "64-bit PowerPC",
        22 => "IBM S/390",
        40 => "32-bit ARM",
        183 => "AArch64 (64-bit ARM)",
        243 => "RISC-V",
        258 => "LoongArch",
        _ => "another architecture",
    }
}

/// Check the ELF identification and header fields that decide whether this can
/// be an x86-64 kernel at all, with a message for each way it cannot.
pub fn check_elf_header(path: &Path, bytes: &[u8]) -> Result<()> {
    let path = path.to_path_buf();
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Err(Error::NotElf { path });
    }
    if bytes.len() < 64 {
        return Err(Error::ElfMalformed {
            path,
            reason: "file ends inside the ELF header".into(),
        });
    }
    match bytes[4] {
        ELFCLASS64 => {}
        ELFCLASS32 => return Err(Error::Elf32 { path }),
        c => {
            return Err(Error::ElfMalformed {
                path,
                reason: format!("unknown ELF class {c}"),
            })
        }
    }
    if bytes[5] != ELFDATA2LSB {
        return Err(Error::ElfEndian { path, data: bytes[5] });
    }
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    if machine != EM_X86_64 {
        return Err(Error::ElfMachine {
            path,
            machine: machine_name(machine),
            code: machine,
        });
    }
    let etype = u16::from_le_bytes([bytes[16], bytes[17]]);
    if etype != ET_EXEC {
        return Err(Error::ElfType { path, etype });
    }
    Ok(())
}

/// The ELF header checks of [`check_user_program`], which need only the
/// first 64 bytes: x86-64, and a fixed-address executable.
pub fn check_program_header(path: &Path, bytes: &[u8]) -> Result<()> {
    let not = |reason| Error::ProgramNotStatic {
        path: path.into(),
        reason,
    };
    match check_elf_header(path, bytes) {
        Err(Error::ElfType { etype: 3, .. }) => Err(not(
            "position-independent (ET_DYN, PIE); link it with -static (gcc -static, musl-gcc -static)",
        )),
        Err(Error::ElfType { .. }) => Err(not("not an executable (ET_EXEC)")),
        other => other,
    }
}

/// Check a ring-3 program before it goes into the boot archive: the guest
/// kernel runs only static, fixed-address x86-64 executables.
pub fn check_user_program(path: &Path, bytes: &[u8]) -> Result<()> {
    let not = |reason| Error::ProgramNotStatic {
        path: path.into(),
        reason,
    };
    check_program_header(path, bytes)?;
    // Aligned, or the parser refuses a valid file (the built-in programs
    // are include_bytes!, with no alignment).
    with_aligned(bytes, |bytes| {
        let elf = ElfFile64::<Endianness>::parse(bytes).map_err(|e| Error::ElfMalformed {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let endian = elf.endian();
        if elf
            .elf_program_headers()
            .iter()
            .any(|ph| ph.p_type(endian) == object::elf::PT_INTERP)
        {
            return Err(not(
                "dynamically linked (it names an interpreter, PT_INTERP); link it with -static",
            ));
        }
        Ok(())
    })
}

impl KernelImage {
    /// Validate `bytes` as a kernel for this VMM: x86-64 ELF executable,
    /// segments above the boot area, and a matching boot header. The image is
    /// kept, not copied: the built-in one is borrowed from the binary.
    pub fn parse(path: &Path, bytes: Cow<'static, [u8]>) -> Result<KernelImage> {
        check_elf_header(path, &bytes)?;
        let (entry, segments, header, phys_end) = with_aligned(&bytes, |bytes| -> Result<_> {
            let malformed = |e: object::Error| Error::ElfMalformed {
                path: path.into(),
                reason: e.to_string(),
            };
            let elf = ElfFile64::<Endianness>::parse(bytes).map_err(malformed)?;
            let endian = elf.endian();

            let mut segments = Vec::new();
            for ph in elf.elf_program_headers() {
                if ph.p_type(endian) != PT_LOAD || ph.p_memsz(endian) == 0 {
                    continue;
                }
                let flags = ph.p_flags(endian);
                let seg = Segment {
                    virt: ph.p_vaddr(endian),
                    phys: ph.p_paddr(endian),
                    memsz: ph.p_memsz(endian),
                    filesz: ph.p_filesz(endian),
                    writable: flags & PF_W != 0,
                    executable: flags & PF_X != 0,
                };
                let end = seg.phys.checked_add(seg.memsz).ok_or_else(|| Error::ElfMalformed {
                    path: path.into(),
                    reason: format!("segment at {:#x} wraps around the address space", seg.phys),
                })?;
                if seg.phys < KERNEL_PHYS_LOAD.max(phys::IST1_TOP) {
                    return Err(Error::SegmentInBootArea {
                        path: path.into(),
                        start: seg.phys,
                        end,
                        load: KERNEL_PHYS_LOAD,
                    });
                }
                segments.push(seg);
            }
            if segments.is_empty() {
                return Err(Error::ElfMalformed {
                    path: path.into(),
                    reason: "no loadable (PT_LOAD) segments".into(),
                });
            }
            let phys_end = segments.iter().map(|s| s.phys + s.memsz).max().unwrap_or(0);

            let section = elf.section_by_name(HEADER_SECTION).ok_or(Error::NoHeader {
                path: path.into(),
                section: HEADER_SECTION,
            })?;
            let data = section.data().map_err(malformed)?;
            let header = read_header(path, data)?;
            Ok((elf.entry(), segments, header, phys_end))
        })?;
        Ok(KernelImage {
            path: path.into(),
            entry,
            segments,
            header,
            phys_end,
            bytes,
            symbols: std::sync::OnceLock::new(),
        })
    }

    /// The kernel's symbols (parsed on first use).
    pub fn symbols(&self) -> &Symbols {
        self.symbols.get_or_init(|| {
            ElfFile64::<Endianness>::parse(&*self.bytes)
                .map(|elf| Symbols::from_object(&elf))
                .unwrap_or_default()
        })
    }

    /// Check that every segment lies inside guest memory of `mem_bytes`.
    pub fn check_fits(&self, mem_bytes: u64) -> Result<()> {
        for s in &self.segments {
            if s.phys + s.memsz > mem_bytes {
                return Err(Error::SegmentOutsideMemory {
                    path: self.path.clone(),
                    start: s.phys,
                    end: s.phys + s.memsz,
                    mem: mem_bytes,
                });
            }
        }
        Ok(())
    }

    /// Copy the PT_LOAD segments into guest memory at their physical addresses.
    pub fn load(&self, mem: &GuestMemoryMmap) -> Result<()> {
        Elf::load(mem, None, &mut Cursor::new(&*self.bytes), None)?;
        Ok(())
    }
}

/// Run `f` on `bytes` 8-byte aligned: the ELF parser reads headers in place.
/// Only a misaligned buffer is copied.
pub fn with_aligned<R>(bytes: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    if bytes.as_ptr().align_offset(8) == 0 {
        return f(bytes);
    }
    let mut v = vec![0u64; bytes.len().div_ceil(8)];
    // SAFETY: `v` holds at least bytes.len() bytes; u64 has no invalid bit patterns.
    let dst = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), bytes.len()) };
    dst.copy_from_slice(bytes);
    f(dst)
}

fn read_header(path: &Path, data: &[u8]) -> Result<KernelHeader<u64>> {
    let expected = format!("version {HEADER_VERSION}, {HEADER_SIZE} bytes");
    if data.len() < HEADER_SIZE {
        return Err(Error::HeaderMismatch {
            path: path.into(),
            found: format!("{} bytes", data.len()),
            expected,
        });
    }
    // SAFETY: KernelHeader<u64> is repr(C) plain data of HEADER_SIZE bytes,
    // and the length was checked above.
    let h: KernelHeader<u64> = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
    if h.magic != HEADER_MAGIC || h.version != HEADER_VERSION || h.size as usize != HEADER_SIZE {
        return Err(Error::HeaderMismatch {
            path: path.into(),
            found: format!("magic {:#x}, version {}, {} bytes", h.magic, h.version, h.size),
            expected,
        });
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf_header(class: u8, data: u8, etype: u16, machine: u16) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = class;
        b[5] = data;
        b[16..18].copy_from_slice(&etype.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b
    }

    fn check(b: &[u8]) -> Result<()> {
        check_elf_header(Path::new("img"), b)
    }

    #[test]
    fn text_is_not_elf() {
        assert!(matches!(check(b"hello, world\n"), Err(Error::NotElf { .. })));
        assert!(matches!(check(b""), Err(Error::NotElf { .. })));
    }

    #[test]
    fn class_endianness_machine_and_type_are_checked() {
        assert!(matches!(check(&elf_header(1, 1, 2, 3)), Err(Error::Elf32 { .. })));
        assert!(matches!(check(&elf_header(2, 2, 2, 62)), Err(Error::ElfEndian { .. })));
        let e = check(&elf_header(2, 1, 2, 183)).unwrap_err();
        assert!(e.to_string().contains("AArch64"), "{e}");
        assert!(matches!(
            check(&elf_header(2, 1, 3, 62)),
            Err(Error::ElfType { etype: 3, .. })
        ));
        assert!(check(&elf_header(2, 1, 2, 62)).is_ok());
    }

    #[test]
    fn truncated_header_is_malformed() {
        assert!(matches!(check(b"\x7fELF\x02\x01"), Err(Error::ElfMalformed { .. })));
    }

    /// Found by the fuzz harness: the ELF parser refused misaligned bytes,
    /// so a valid program at an odd address was "malformed".
    #[test]
    fn a_program_is_accepted_wherever_its_bytes_lie() {
        let p = crate::boot::guest_image::USER_PROGRAMS[0].1;
        let mut buf = vec![0u8; p.len() + 1];
        buf[1..].copy_from_slice(p);
        check_user_program(Path::new("init"), &buf[1..]).unwrap();
        check_user_program(Path::new("init"), p).unwrap();
    }

    #[test]
    fn header_must_match_this_abi() {
        let e = read_header(Path::new("k"), &[0u8; 16]).unwrap_err();
        assert!(matches!(e, Error::HeaderMismatch { .. }));
        let e = read_header(Path::new("k"), &[0u8; HEADER_SIZE]).unwrap_err();
        assert!(e.to_string().contains("version 0"), "{e}");
    }
}
