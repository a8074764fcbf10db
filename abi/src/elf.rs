//! What the kernel accepts as a program (Linux: fs/binfmt_elf.c, for the
//! static, non-PIE case only): the checks, pure and host-tested, that the
//! kernel's loader runs before it maps anything, and that `vmm` runs before
//! booting so a bad program is refused with the reason.

use crate::layout::user::MMAP_MIN_ADDR;
use crate::layout::{PAGE_SIZE, USER_END, VDSO_MAX_PAGES, VVAR_USER};

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
/// Segment flags.
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
/// Size of one program header.
pub const PHENT: usize = 56;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    NotElf,
    NotX86_64,
    NotStatic,
    PositionIndependent,
    BadSegment,
}

impl ElfError {
    pub fn describe(&self) -> &'static str {
        match self {
            ElfError::NotElf => "not a 64-bit little-endian ELF file",
            ElfError::NotX86_64 => "not an x86-64 program",
            ElfError::NotStatic => "dynamically linked (has PT_INTERP); build it with -static",
            ElfError::PositionIndependent => "position-independent (ET_DYN); link it with -static -no-pie",
            ElfError::BadSegment => {
                "a segment lies outside the file, below 64 KiB, over the vDSO, or outside the user half"
            }
        }
    }
}

/// A loadable segment, checked: its file bytes lie in the image and its
/// pages in the part of the user half a program may occupy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub flags: u32,
}

impl Segment {
    pub fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }
    pub fn writable(&self) -> bool {
        self.flags & PF_W != 0
    }
    pub fn executable(&self) -> bool {
        self.flags & PF_X != 0
    }
}

/// A checked program image.
#[derive(Clone, Copy, Debug)]
pub struct Program<'a> {
    image: &'a [u8],
    pub entry: u64,
    phoff: usize,
    phentsize: usize,
    pub phnum: usize,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(w)
}

/// Check `image` as the kernel's loader would: header, no interpreter, every
/// PT_LOAD inside the file and the user half, none below `MMAP_MIN_ADDR` or
/// over the shared vvar/vDSO pages.
pub fn parse(image: &[u8]) -> Result<Program<'_>, ElfError> {
    if image.len() < 64 || &image[..4] != b"\x7fELF" || image[4] != 2 || image[5] != 1 {
        return Err(ElfError::NotElf);
    }
    if u16_at(image, 18) != 62 {
        return Err(ElfError::NotX86_64);
    }
    match u16_at(image, 16) {
        2 => {}
        3 => return Err(ElfError::PositionIndependent),
        _ => return Err(ElfError::NotElf),
    }
    let phoff = usize::try_from(u64_at(image, 32)).map_err(|_| ElfError::NotElf)?;
    let phentsize = u16_at(image, 54) as usize;
    let phnum = u16_at(image, 56) as usize;
    if phentsize < PHENT || phoff.checked_add(phnum * phentsize).is_none_or(|e| e > image.len()) {
        return Err(ElfError::NotElf);
    }
    let p = Program {
        image,
        entry: u64_at(image, 24),
        phoff,
        phentsize,
        phnum,
    };
    for i in 0..phnum {
        let ph = &image[phoff + i * phentsize..];
        match u32_at(ph, 0) {
            PT_INTERP => return Err(ElfError::NotStatic),
            PT_LOAD => check_segment(image, &segment_at(ph))?,
            _ => {}
        }
    }
    Ok(p)
}

fn segment_at(ph: &[u8]) -> Segment {
    Segment {
        flags: u32_at(ph, 4),
        offset: u64_at(ph, 8),
        vaddr: u64_at(ph, 16),
        filesz: u64_at(ph, 32),
        memsz: u64_at(ph, 40),
    }
}

fn check_segment(image: &[u8], s: &Segment) -> Result<(), ElfError> {
    let end = s.vaddr.checked_add(s.memsz).ok_or(ElfError::BadSegment)?;
    // The shared vvar/vDSO pages are no program's to load over.
    let vdso = VVAR_USER..VVAR_USER + (1 + VDSO_MAX_PAGES) * PAGE_SIZE;
    if end > USER_END
        || s.vaddr < MMAP_MIN_ADDR
        || (s.vaddr < vdso.end && end > vdso.start)
        || s.filesz > s.memsz
        || s.offset.checked_add(s.filesz).is_none_or(|e| e > image.len() as u64)
    {
        return Err(ElfError::BadSegment);
    }
    Ok(())
}

impl<'a> Program<'a> {
    /// The PT_LOAD segments, in file order (each checked by [`parse`]).
    pub fn segments(&self) -> impl Iterator<Item = Segment> + 'a {
        let (image, phoff, size) = (self.image, self.phoff, self.phentsize);
        (0..self.phnum)
            .map(move |i| &image[phoff + i * size..])
            .filter(|ph| u32_at(ph, 0) == PT_LOAD)
            .map(segment_at)
    }

    /// A segment's bytes in the file.
    pub fn file_bytes(&self, s: &Segment) -> &'a [u8] {
        &self.image[s.offset as usize..(s.offset + s.filesz) as usize]
    }

    /// Where the program headers are in memory (AT_PHDR): PT_PHDR's address,
    /// else the address of the PT_LOAD that maps them, else 0.
    pub fn phdr_vaddr(&self) -> u64 {
        let headers = (0..self.phnum).map(|i| &self.image[self.phoff + i * self.phentsize..]);
        if let Some(ph) = headers.clone().find(|ph| u32_at(ph, 0) == PT_PHDR) {
            return u64_at(ph, 16);
        }
        let at = self.phoff as u64;
        self.segments()
            .find(|s| (s.offset..s.offset + s.filesz).contains(&at))
            .map_or(0, |s| s.vaddr + (at - s.offset))
    }

    /// The first page above every segment: where brk starts.
    pub fn brk(&self) -> u64 {
        self.segments()
            .map(|s| s.end().next_multiple_of(PAGE_SIZE))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal static x86-64 executable with the given PT_LOADs.
    fn elf(etype: u16, segs: &[(u64, u64, u64, u32)]) -> [u8; 4096] {
        let mut b = [0u8; 4096];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16..18].copy_from_slice(&etype.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[24..32].copy_from_slice(&0x401000u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&(PHENT as u16).to_le_bytes());
        b[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, &(vaddr, filesz, memsz, flags)) in segs.iter().enumerate() {
            let ph = &mut b[64 + i * PHENT..64 + (i + 1) * PHENT];
            ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            ph[4..8].copy_from_slice(&flags.to_le_bytes());
            ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
            ph[32..40].copy_from_slice(&filesz.to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        }
        b
    }

    #[test]
    fn a_static_program_parses_with_its_segments_brk_and_headers() {
        let b = elf(2, &[(0x400000, 0x1000, 0x1000, PF_X), (0x402000, 0x10, 0x3000, PF_W)]);
        let p = parse(&b).unwrap();
        assert_eq!(p.entry, 0x401000);
        assert_eq!(p.segments().count(), 2);
        assert_eq!(p.brk(), 0x405000);
        assert_eq!(p.phdr_vaddr(), 0x400040, "the headers lie in the first segment");
        assert!(p.segments().next().unwrap().executable());
    }

    #[test]
    fn what_the_kernel_refuses() {
        assert_eq!(parse(b"not an elf").unwrap_err(), ElfError::NotElf);
        assert_eq!(parse(&elf(3, &[])).unwrap_err(), ElfError::PositionIndependent);
        let mut b = elf(2, &[]);
        b[18] = 3;
        assert_eq!(parse(&b).unwrap_err(), ElfError::NotX86_64);
        for seg in [
            (0x0, 0x10, 0x1000, 0),             // page 0
            (VVAR_USER, 0, 0x1000, PF_W),       // over the vvar page
            (VVAR_USER - 0x1000, 0, 0x2000, 0), // straddling into it
            (USER_END - 0x1000, 0, 0x2000, 0),  // past the user half
            (0x400000, 0x2000, 0x1000, 0),      // filesz > memsz
            (0x400000, 0x1_0000, 0x1_0000, 0),  // file bytes past the end
            (u64::MAX - 0x10, 0, 0x100, 0),     // wraps
        ] {
            assert_eq!(parse(&elf(2, &[seg])).unwrap_err(), ElfError::BadSegment, "{seg:x?}");
        }
        // The last page of the user half is a program's to use.
        assert!(parse(&elf(2, &[(USER_END - 0x1000, 0x10, 0x1000, PF_X)])).is_ok());
    }

    #[test]
    fn headers_past_the_file_are_not_elf() {
        let mut b = elf(2, &[]);
        b[56..58].copy_from_slice(&100u16.to_le_bytes());
        assert_eq!(parse(&b[..200]).unwrap_err(), ElfError::NotElf);
    }

    #[test]
    fn an_interpreter_means_dynamically_linked() {
        let mut b = elf(2, &[(0x400000, 0x1000, 0x1000, PF_X)]);
        // A second header: PT_INTERP.
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        b[64 + PHENT..][..4].copy_from_slice(&PT_INTERP.to_le_bytes());
        assert_eq!(parse(&b).unwrap_err(), ElfError::NotStatic);
        assert!(ElfError::NotStatic.describe().contains("-static"));
    }

    #[test]
    fn pt_phdr_says_where_the_headers_are_and_no_segments_means_no_brk() {
        let mut b = elf(2, &[(0x400000, 0x1000, 0x1000, PF_X)]);
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        let ph = &mut b[64 + PHENT..64 + 2 * PHENT];
        ph[0..4].copy_from_slice(&PT_PHDR.to_le_bytes());
        ph[16..24].copy_from_slice(&0x400100u64.to_le_bytes());
        let p = parse(&b).unwrap();
        assert_eq!(p.phdr_vaddr(), 0x400100);
        assert_eq!(p.segments().count(), 1, "PT_PHDR is not a segment to load");
        let empty = elf(2, &[]);
        let p = parse(&empty).unwrap();
        assert_eq!((p.brk(), p.phdr_vaddr()), (0, 0));
    }
}
