//! The front end (design.md §5, §11, §13, §14): what a program calls and what it reaches first.
//! The allocator's operations with the malloc/free fast paths, the exported C API, C++
//! operators and glibc introspection calls, the thread cache in initial-exec TLS, the process
//! and thread lifecycle (start-up, activation, retirement, fork), the optional background purge
//! thread, the statistics (`hakozuna::stats()`, the report at exit) and the hardened lane's
//! pointer checks.
//!
//! May use every layer below: `remote`, `heap`, `ds`, `page`, `sys`, `config`, `stats`. Nothing
//! below may use it.

pub mod alloc;
mod background;
mod bin;
#[cfg(feature = "capi")]
mod capi;
#[cfg(feature = "capi")]
mod cxx;
mod fallback;
mod hardened;
mod interleave;
#[cfg(feature = "capi")]
mod introspect;
pub mod lifecycle;
mod orphans;
pub mod report;
pub mod tcache;
pub mod tls;
