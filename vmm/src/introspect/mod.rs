//! Looking into a stopped guest: memory through its page tables,
//! disassembly, descriptor and flag decoders, kernel symbols.

pub mod decode;
pub mod memory;
pub mod symbols;
