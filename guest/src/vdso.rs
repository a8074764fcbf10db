//! The vDSO (Linux: arch/x86/entry/vdso/): a small shared object from the
//! boot archive, mapped read-only into every process with the vvar page
//! beside it, so clock_gettime and gettimeofday run in ring 3 without a
//! system call. The auxiliary vector's AT_SYSINFO_EHDR tells the libc where.

use crate::sync::BootCell;
use crate::{initrd, mm, paging, println, time};
use vmm_abi::layout::{phys_to_virt, PAGE_SIZE, VDSO_MAX_PAGES, VDSO_USER, VVAR_USER};

struct Vdso {
    /// Physical pages: the image (contiguous), and the vvar page.
    image: u64,
    pages: u64,
    vvar: u64,
}

static VDSO: BootCell<Vdso> = BootCell::new();

/// Copy the vDSO out of the boot archive into pages of its own (page
/// aligned, as mapping needs) and fill the vvar page. Without a vDSO in the
/// archive, processes simply get none.
pub fn init() {
    let Some(image) = initrd::find(b"linux-vdso.so.1") else {
        return;
    };
    let pages = (image.len() as u64).div_ceil(PAGE_SIZE).min(VDSO_MAX_PAGES);
    if image.len() as u64 > VDSO_MAX_PAGES * PAGE_SIZE || &image[..4] != b"\x7fELF" {
        println!("kernel: the boot archive's vdso is not a small ELF image; no vDSO");
        return;
    }
    let (Some(phys), Some(vvar)) = (mm::alloc_fresh(pages), mm::alloc_page()) else {
        return;
    };
    // SAFETY: fresh pages of our own, through the direct map.
    unsafe { core::ptr::copy_nonoverlapping(image.as_ptr(), phys_to_virt(phys) as *mut u8, image.len()) };
    time::publish(phys_to_virt(vvar) as *mut time::Vvar);
    VDSO.set(Vdso {
        image: phys,
        pages,
        vvar,
    });
}

/// Map the vvar page and the vDSO into an address space; the vDSO's
/// address for AT_SYSINFO_EHDR, if there is one.
pub fn map_into(pml4: u64) -> Option<u64> {
    let v = VDSO.get()?;
    paging::map_user_shared(pml4, VVAR_USER, v.vvar, false)?;
    for i in 0..v.pages {
        paging::map_user_shared(pml4, VDSO_USER + i * PAGE_SIZE, v.image + i * PAGE_SIZE, true)?;
    }
    Some(VDSO_USER)
}
