//! The operating system and the process-wide primitives everything else stands on: memory
//! mappings, the clock, errno, locks, atomics (loom's under `--cfg loom`), the metadata memory
//! heaps and side tables live in, the `HAKOZUNA_*` run-time options, the hardened lane's
//! secret key and free mark, and allocation-free diagnostics (design.md §2).
//!
//! May use: `config`. Nothing here knows about pages, heaps or threads' caches.

pub mod atomics;
pub mod diag;
pub mod meta;
pub mod options;
pub mod os;
pub mod secret;
pub mod sync;
