//! Statistics (design.md §13): the [`Stats`] snapshot behind `hakozuna::stats()`, the C
//! introspection calls and the report at exit (`HAKOZUNA_STATS=1` or `json`), and the two ways
//! it is written, a text summary and a JSON document. Nothing here allocates, takes a lock or
//! stops another thread: every figure is a relaxed load of a counter kept on a slow path.

use crate::config::{FAST_LANE, SECURE, STATS};
use crate::heap::registry;
use crate::page::{arena, large};
use crate::stats::{Events, GLOBAL, LABELS, N};
use crate::sys::diag::Chunked;
use crate::sys::{meta, options, os};
use core::fmt::{self, Write};

/// A snapshot of hakozuna's memory figures and event counts, returned by
/// [`hakozuna::stats()`](crate::stats()).
///
/// Every figure is kept on slow paths only (a page run taken or given back, a segment taken or
/// pooled, a large block mapped, cached or unmapped), never on a `malloc` or `free` that its
/// thread cache serves. So the allocator does not know how many bytes the program holds:
/// [`in_use_bytes`](Stats::in_use_bytes) counts the pages given to size classes, which hold
/// both the program's blocks and free blocks cached in thread bins and heap lists, as
/// jemalloc's `stats.allocated` counts its thread caches.
///
/// The figures are relaxed loads taken one after another, not a consistent cut: while other
/// threads allocate, sums may be off by what moved in between. Reading does not stop them.
///
/// The byte figures add up as `committed = in_use + free + metadata`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The lane this build is: `"scale"`, `"fast"` or `"secure"` (the hardened scale lane;
    /// design.md §8).
    pub lane: &'static str,
    /// Whether [`events`](Stats::events) are counted: the `stats` cargo feature, on in both
    /// preload libraries and in the crate's default features. The byte figures are kept
    /// without it.
    pub events_counted: bool,
    /// Heaps created so far: one per thread that allocates, reused after the thread exits.
    pub heaps: u64,
    /// Memory obtained from the OS and held: arena segments handed out (in heaps or pooled,
    /// purged ones included), large blocks (live and cached) and metadata.
    pub committed_bytes: u64,
    /// Bytes allocated: pages in runs given to size classes (the program's blocks plus free
    /// blocks cached in thread bins and heap lists, not told apart) and live large blocks.
    pub in_use_bytes: u64,
    /// Free memory held: free pages in heaps' segments, pooled segments (resident or purged)
    /// and cached large blocks.
    pub free_bytes: u64,
    /// An upper estimate of the resident memory hakozuna holds, like jemalloc's
    /// `stats.resident`: `committed_bytes` less purged pooled segments. Free pages inside a
    /// heap's segments count even after decay purged them or if they were never touched.
    pub resident_bytes: u64,
    /// Address space reserved for the arena (not memory).
    pub arena_reserved_bytes: u64,
    /// Arena segments handed out so far (a high-water mark: in heaps or in the pool).
    pub arena_segment_bytes: u64,
    /// Pages in runs of size classes, small, medium and arena-large, summed over heaps
    /// (with the small runs a class reserved ahead of carving, untouched: design.md §7).
    pub run_bytes: u64,
    /// Free pages inside heaps' segments (resident until decay purges them).
    pub free_page_bytes: u64,
    /// Segments in the pool that may be resident (given back within the last decay interval
    /// or two).
    pub pooled_resident_bytes: u64,
    /// Segments in the pool that are purged: committed, not resident.
    pub pooled_purged_bytes: u64,
    /// Medium and arena-large runs parked in the shared pool (adopted runs any heap may take;
    /// part of `run_bytes`).
    pub shared_pool_medium_bytes: u64,
    /// Live large blocks (their own mappings, design.md §9), by mapping length.
    pub large_live_bytes: u64,
    /// Number of live large blocks.
    pub large_live_blocks: u64,
    /// Most live large-block bytes at any one time so far.
    pub large_peak_bytes: u64,
    /// Most live large blocks at any one time so far.
    pub large_peak_blocks: u64,
    /// Freed large blocks kept mapped in the large cache.
    pub large_cached_bytes: u64,
    /// Number of blocks in the large cache.
    pub large_cached_blocks: u64,
    /// Metadata: heaps and other bump-allocated records, the large tier's address tables,
    /// and the arena's page tags and segment records for the segments handed out (an
    /// estimate of those tables' touched part).
    pub metadata_bytes: u64,
    /// Event counts (0 unless [`events_counted`](Stats::events_counted)).
    pub events: Events,
}

/// Takes the snapshot.
pub fn snapshot() -> Stats {
    let mut counts = [0u64; N];
    for (i, c) in counts.iter_mut().enumerate() {
        *c = GLOBAL.get(i);
    }
    let mut run = 0u64;
    registry::for_each_heap(|c| {
        for (i, s) in counts.iter_mut().enumerate() {
            *s = s.wrapping_add(c.get(i));
        }
        run = run.wrapping_add(c.run_bytes());
    });
    let segments = arena::committed_bytes() as u64;
    let (pooled_resident, pooled_purged) = arena::pooled_bytes();
    let (pooled_resident, pooled_purged) = (pooled_resident as u64, pooled_purged as u64);
    let heap_segments = segments.saturating_sub(pooled_resident + pooled_purged);
    // Relaxed reads at different moments: keep the parts within their whole.
    let run = run.min(heap_segments);
    let free_pages = heap_segments - run;
    let lg = large::figures();
    let metadata = (meta::used_bytes() + lg.table_bytes + arena::side_table_bytes()) as u64;
    let in_use = run + lg.live_bytes as u64;
    let free = free_pages + pooled_resident + pooled_purged + lg.cached_bytes as u64;
    let committed = in_use + free + metadata;
    Stats {
        lane: if FAST_LANE {
            "fast"
        } else if SECURE {
            "secure"
        } else {
            "scale"
        },
        events_counted: STATS,
        heaps: registry::published() as u64,
        committed_bytes: committed,
        in_use_bytes: in_use,
        free_bytes: free,
        resident_bytes: committed - pooled_purged,
        arena_reserved_bytes: arena::len() as u64,
        arena_segment_bytes: segments,
        run_bytes: run,
        free_page_bytes: free_pages,
        pooled_resident_bytes: pooled_resident,
        pooled_purged_bytes: pooled_purged,
        shared_pool_medium_bytes: registry::shared_pool_medium_bytes() as u64,
        large_live_bytes: lg.live_bytes as u64,
        large_live_blocks: lg.live_blocks as u64,
        large_peak_bytes: lg.peak_bytes as u64,
        large_peak_blocks: lg.peak_blocks as u64,
        large_cached_bytes: lg.cached_bytes as u64,
        large_cached_blocks: lg.cached_blocks as u64,
        metadata_bytes: metadata,
        events: Events::from_counts(&counts),
    }
}

impl Stats {
    /// The figures as `(name, value)`, in the order of the fields; the names are the field
    /// names (and the JSON keys).
    fn figures(&self) -> [(&'static str, u64); 19] {
        [
            ("heaps", self.heaps),
            ("committed_bytes", self.committed_bytes),
            ("in_use_bytes", self.in_use_bytes),
            ("free_bytes", self.free_bytes),
            ("resident_bytes", self.resident_bytes),
            ("arena_reserved_bytes", self.arena_reserved_bytes),
            ("arena_segment_bytes", self.arena_segment_bytes),
            ("run_bytes", self.run_bytes),
            ("free_page_bytes", self.free_page_bytes),
            ("pooled_resident_bytes", self.pooled_resident_bytes),
            ("pooled_purged_bytes", self.pooled_purged_bytes),
            ("shared_pool_medium_bytes", self.shared_pool_medium_bytes),
            ("large_live_bytes", self.large_live_bytes),
            ("large_live_blocks", self.large_live_blocks),
            ("large_peak_bytes", self.large_peak_bytes),
            ("large_peak_blocks", self.large_peak_blocks),
            ("large_cached_bytes", self.large_cached_bytes),
            ("large_cached_blocks", self.large_cached_blocks),
            ("metadata_bytes", self.metadata_bytes),
        ]
    }

    /// Writes the snapshot as one line of JSON: `"version": 1`, then a key per field (`lane`
    /// a string, `events_counted` a boolean, `events` an object of counts, every other value
    /// an integer). This is what `hakozuna_stats_json()` and `HAKOZUNA_STATS=json` produce.
    /// Formatting never allocates.
    pub fn write_json<W: Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        write!(
            w,
            "{{\"version\":1,\"lane\":\"{}\",\"events_counted\":{}",
            self.lane, self.events_counted
        )?;
        for (k, v) in self.figures() {
            write!(w, ",\"{k}\":{v}")?;
        }
        w.write_str(",\"events\":{")?;
        for (i, (k, v)) in self.events.iter().enumerate() {
            write!(w, "{}\"{k}\":{v}", if i == 0 { "" } else { "," })?;
        }
        w.write_str("}}\n")
    }

    /// Writes the text summary: the figures, then one line per event (`hakozuna stats: LABEL:
    /// N`), the lines `HAKOZUNA_STATS=1` prints at exit.
    pub(crate) fn write_text<W: Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        const MIB: u64 = 1 << 20;
        writeln!(
            w,
            "hakozuna stats: {} heaps, {} MiB of arena segments ({} lane)",
            self.heaps,
            self.arena_segment_bytes / MIB,
            self.lane
        )?;
        self.write_memory_line(w)?;
        for (k, v) in self.figures() {
            if k != "heaps" {
                writeln!(w, "hakozuna stats: {}: {v}", k.replace_underscores())?;
            }
        }
        if !self.events_counted {
            return writeln!(w, "hakozuna stats: no event counts (built without `stats`)");
        }
        for (label, (_, v)) in LABELS.iter().zip(self.events.iter()) {
            writeln!(w, "hakozuna stats: {label}: {v}")?;
        }
        Ok(())
    }

    /// The summary's memory line: what is committed and resident now, and (with event counts)
    /// what decay, trim and thread exit gave back so far and the background thread's passes.
    fn write_memory_line<W: Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        write!(
            w,
            "hakozuna stats: memory: {} committed, at most {} resident",
            Mib(self.committed_bytes),
            Mib(self.resident_bytes)
        )?;
        if self.events_counted {
            let e = &self.events;
            write!(
                w,
                "; given back: {} purged, {} medium runs to their segments, {} segments to the \
                 arena's pool, {} large blocks unmapped; {} background thread wake-ups",
                Mib(e.bytes_purged),
                e.medium_runs_returned,
                e.segments_returned,
                e.large_unmaps,
                e.background_wakeups
            )?;
        }
        w.write_char('\n')
    }
}

/// Bytes as MiB with one decimal, without floating point.
struct Mib(u64);

impl fmt::Display for Mib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0 as u128 * 10 + (1 << 19)) >> 20;
        write!(f, "{}.{} MiB", tenths / 10, tenths % 10)
    }
}

/// Field names as words in the text summary, without allocating.
trait Words {
    fn replace_underscores(self) -> UnderscoresAsSpaces;
}

impl Words for &'static str {
    fn replace_underscores(self) -> UnderscoresAsSpaces {
        UnderscoresAsSpaces(self)
    }
}

struct UnderscoresAsSpaces(&'static str);

impl fmt::Display for UnderscoresAsSpaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.0.split('_').enumerate() {
            if i > 0 {
                f.write_char(' ')?;
            }
            f.write_str(part)?;
        }
        Ok(())
    }
}

/// Writes text to a descriptor through a stack buffer (no allocation, no stdio).
pub(crate) fn to_fd(fd: i32, text: impl FnOnce(&mut dyn Write) -> fmt::Result) {
    let mut out = Chunked::new(|b: &[u8]| {
        os::write_fd(fd, b);
    });
    let _ = text(&mut out);
    out.finish();
}

/// The text summary on stderr (`hakozuna_stats_print`, `malloc_stats`).
pub fn print_text() {
    let s = snapshot();
    to_fd(2, |w| s.write_text(w));
}

/// The report at exit, if `HAKOZUNA_STATS` asks for one: the text summary (`1`) or the JSON
/// document (`json`), on stderr.
pub fn print() {
    match options::stats_report() {
        options::REPORT_TEXT => print_text(),
        options::REPORT_JSON => {
            let s = snapshot();
            to_fd(2, |w| s.write_json(w));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;

    #[test]
    fn json_has_every_field_and_event_once() {
        let s = snapshot();
        let mut j = String::new();
        s.write_json(&mut j).unwrap();
        assert!(
            j.starts_with("{\"version\":1,\"lane\":\"") && j.ends_with("}}\n"),
            "{j}"
        );
        for (k, _) in s.figures() {
            assert_eq!(
                j.matches(&std::format!("\"{k}\":")).count(),
                1,
                "{k} in {j}"
            );
        }
        for (k, _) in s.events.iter() {
            assert_eq!(
                j.matches(&std::format!("\"{k}\":")).count(),
                1,
                "{k} in {j}"
            );
        }
    }

    #[test]
    fn figures_add_up() {
        let s = snapshot();
        assert_eq!(
            s.committed_bytes,
            s.in_use_bytes + s.free_bytes + s.metadata_bytes
        );
        assert_eq!(s.in_use_bytes, s.run_bytes + s.large_live_bytes);
        assert!(s.resident_bytes <= s.committed_bytes);
    }

    #[test]
    fn text_names_fields_in_words() {
        let mut t = String::new();
        snapshot().write_text(&mut t).unwrap();
        assert!(t.contains("hakozuna stats: committed bytes: "), "{t}");
        assert!(t.contains("hakozuna stats: large live blocks: "), "{t}");
        assert!(t.contains("hakozuna stats: memory: "), "{t}");
        assert!(t.contains(" committed, at most "), "{t}");
    }

    #[test]
    fn mib_rounds_to_a_tenth() {
        let f = |b| std::format!("{}", Mib(b));
        assert_eq!(f(0), "0.0 MiB");
        assert_eq!(f(1 << 20), "1.0 MiB");
        assert_eq!(f((1 << 20) + (1 << 19)), "1.5 MiB");
        assert_eq!(f(u64::MAX), "17592186044416.0 MiB");
    }
}
