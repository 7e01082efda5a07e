//! The page source (design.md §3, §4, §9): the arena reservation cut into segments, the
//! segment pool, the page-tag table that routes every `free`, page bitmaps, the size classes
//! and the large tier that maps blocks above the arena classes directly.
//!
//! May use: `sys`, `config`, `stats`. It hands out segments and page runs; which heap owns
//! them, and what is carved from them, is the heap layer's business.

pub mod arena;
pub mod bitmap;
pub mod large;
pub mod page_tag;
pub mod size_class;
