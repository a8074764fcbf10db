//! What goes into guest memory before the first instruction: the built-in
//! kernel and programs, ELF loading, and the initial-ramdisk archive.

pub mod bzimage;
pub mod guest_image;
pub mod initrd;
pub mod loader;
