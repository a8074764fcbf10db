//! The bench layer's errors: what stopped `vmm bench`, and its exit status.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Booting the guest: KVM, memory, the built-in images.
    #[error(transparent)]
    Setup(#[from] crate::error::Error),

    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },

    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },

    #[error("write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },

    #[error("create {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },

    #[error("plot {path}: {source}")]
    Plot {
        path: PathBuf,
        source: Box<dyn std::error::Error>,
    },

    /// A host row's set-up: /dev/null, a pipe, a fork.
    #[error("{what}: {source}")]
    Host { what: &'static str, source: std::io::Error },

    #[error("pipe ping-pong: the child failed")]
    PingPongChild,

    #[error(
        "the guest benchmark did not finish ({outcome}){}\n--- guest output\n{output}{report}",
        if *.done { "" } else { ", no `bench: done`" }
    )]
    GuestFailed {
        /// vmm's exit status for how the guest ended.
        status: u8,
        outcome: String,
        done: bool,
        output: String,
        report: String,
    },
}

impl BenchError {
    /// The exit status: the guest's failure as `vmm run` would report it,
    /// anything else a setup error.
    pub fn status(&self) -> u8 {
        match self {
            BenchError::GuestFailed { status, .. } => *status,
            _ => crate::status::SETUP_ERROR,
        }
    }
}

pub type Result<T> = std::result::Result<T, BenchError>;
