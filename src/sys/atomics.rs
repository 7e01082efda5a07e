//! Atomic types for the lock-free structures, swapped for loom's under `--cfg loom` so the
//! model checker sees every load, store and CAS.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicPtr, AtomicU64};

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicPtr, AtomicU64};
