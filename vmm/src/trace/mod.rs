//! Tracers that run the guest and record what it does: `--strace`,
//! `--funcgraph`, `--break-at` and the CPL-transition stepper.

pub mod funcgraph;
pub mod html;
pub mod perfetto;
pub mod record;
pub mod stepper;
pub mod strace;
pub mod tracer;
