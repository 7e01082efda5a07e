//! Small runs side by side (design.md §7, "Runs side by side"): a thread that keeps carving
//! three small classes in turn gets each class's runs next to each other, so its objects of
//! one class run on in address order across page boundaries. With one run per take, first fit
//! laid the three classes' pages in turn and every page boundary of a class jumped over the
//! other two's pages. Its own test binary (its own process).

use hakozuna::Hakozuna;
use std::alloc::{GlobalAlloc, Layout};
use std::thread;

#[global_allocator]
static A: Hakozuna = Hakozuna;

/// Three classes of one page run each (993–1,008, 689–704 and 497–512 bytes).
const SIZES: [usize; 3] = [1000, 700, 500];
/// Objects of each class: about 250, 170 and 125 pages.
const N: usize = 1000;

#[test]
fn a_class_runs_on_across_its_runs() {
    thread::spawn(|| {
        let mut addrs: [Vec<usize>; 3] = Default::default();
        for _ in 0..N {
            for (c, &n) in SIZES.iter().enumerate() {
                let l = Layout::from_size_align(n, 8).unwrap();
                // SAFETY: a non-zero size; the block is kept (leaked) until the thread ends.
                let p = unsafe { A.alloc(l) };
                assert!(!p.is_null());
                addrs[c].push(p as usize);
            }
        }
        for (c, a) in addrs.iter().enumerate() {
            let (mut crossings, mut next_page) = (0, 0);
            for w in a.windows(2) {
                let (from, to) = (w[0] >> 12, w[1] >> 12);
                if from != to {
                    crossings += 1;
                    if to == from + 1 {
                        next_page += 1;
                    }
                }
            }
            // Groups grow 1, 2, 4 … to 16 pages: all but a few crossings go to the next page.
            assert!(crossings > 100, "class {c}: {crossings} page crossings");
            assert!(
                next_page * 10 >= crossings * 9,
                "class {c}: {next_page} of {crossings} page crossings to the next page"
            );
        }
    })
    .join()
    .unwrap();
}
