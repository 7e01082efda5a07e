//! The thread side of the remote-free path (design.md §7, §8): where a thread buffers frees of
//! other heaps' objects before handing them over in chains. The scale lane's sparse ring
//! (S41) and the fast lane's dense bank; [`RemoteBuf`] is the one the lane compiles in.
//!
//! May use: `ds`, `page`, `sys`, `config`. The buffers never reach a heap themselves: a flush
//! hands each chain to a [`Sink`], which the thread cache implements by sending to the owner.

// Both lanes' buffers are compiled in every build (so each is type-checked and unit tested);
// only `RemoteBuf` is used.
#[allow(dead_code)]
pub mod bank;
#[allow(dead_code)]
pub mod ring;

use crate::ds::list::Chain;

/// Receives the chains a buffer flushes: every object of `chain` is a free object whose page
/// tag names heap `dst` and bin `bin`, and the receiver now owns them.
pub trait Sink {
    fn send(&mut self, dst: u32, bin: usize, chain: Chain);
}

/// What a buffer's `push` did with a free.
pub enum Push {
    /// Buffered.
    Done,
    /// Buffered, and this chain (the object's `(dst, bin)`) is long enough to hand over now.
    Send(Chain),
    /// Not taken: the object needs a new ring entry (`push_new`). The bank never says so.
    NoEntry,
}

/// The thread cache's remote buffer: the lane's one structural difference.
#[cfg(feature = "fast")]
pub type RemoteBuf = bank::RemoteBank;
#[cfg(not(feature = "fast"))]
pub type RemoteBuf = ring::RemoteRing;
