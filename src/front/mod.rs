//! The front end (design.md §5, §11, §14): what a program calls and what it reaches first. The
//! allocator's operations with the malloc/free fast paths, the exported C API, the thread
//! cache in initial-exec TLS, the process and thread lifecycle (start-up, activation,
//! retirement, fork) and the exit-time statistics summary.
//!
//! May use every layer below: `remote`, `heap`, `ds`, `page`, `sys`, `config`, `stats`. Nothing
//! below may use it.

pub mod alloc;
#[cfg(feature = "capi")]
mod capi;
pub mod lifecycle;
pub mod report;
pub mod tcache;
pub mod tls;
