//! The containers of the remote-free path, which know nothing of heaps or threads
//! (design.md §7): intrusive free lists and chains, the MPSC stack (intake, inbox), the owner
//! stash (S44, with its S48 spill pop) and the transfer cache (S42). Each lock-free one has a
//! loom model (`loom_tests`).
//!
//! May use: `sys`, `config`.

pub mod list;
pub mod mpsc;
pub mod order;
pub mod owner_stash;
pub mod page_set;
pub mod transfer_cache;
