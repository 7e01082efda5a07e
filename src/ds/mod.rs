//! Containers that know nothing of heaps or threads: intrusive free lists and chains, the
//! MPSC stack (intake, inbox), the owner stash (S44, with its S48 spill pop) and the transfer
//! cache (S42) of the remote-free path (design.md §7), the page set and the address-order
//! sort of the thread cache, and sets of bins. Each lock-free one has a loom model
//! (`loom_tests`).
//!
//! May use: `sys`, `config`.

pub mod bin_set;
pub mod list;
pub mod mpsc;
pub mod order;
pub mod owner_stash;
pub mod page_set;
pub mod transfer_cache;
