//! The background purge thread (`HAKOZUNA_BACKGROUND=1`, design.md §10), like jemalloc's
//! `background_thread`: decay otherwise runs only from some thread's slow path, so memory that
//! exited threads left behind stays resident while the process idles or calls the allocator
//! only on its fast paths. This thread wakes every half decay interval and runs the pass of
//! released heaps ([`registry::decay_released`]), which also runs the process-wide part (the
//! segment pool, every large-cache shard). That pass elects one caller per interval, so a
//! slow-path caller and this thread never both run it within an interval, and it runs at
//! least once per 1.5 intervals while the option is on. The thread never claims a heap and
//! never allocates; it counts into the global counters as that pass does.
//!
//! **Start.** From the constructor in the process that loads us, outside any allocator call,
//! and, in a `fork` child (which has no such thread: the child handler only marks it absent),
//! from the first refill there, at the end of `malloc`'s slow path. `pthread_create` may call
//! `calloc` (glibc allocates the new thread's TLS vector): inside `malloc` our own thread
//! cache is in use, so the calling thread's slot points at `tls::DEAD` for the call, and what
//! glibc allocates is served as a retired thread's mallocs are (the shared fallback cache,
//! whose heap this first use claims) without touching that cache — as during activation.
//! Never from a fork handler: the child handlers of other libraries (after ours) have not run
//! yet, and ours runs with our locks just released.
//!
//! **Exit and fork.** It is detached, blocks every signal (process-directed signals go to the
//! program's threads) and holds a lock only inside the decay pass, whose lock order is every
//! slow path's, so `exit` (which ends it with the process) and the fork prepare handler (which
//! takes those locks) wait at most for that pass to finish. A process whose main thread left
//! with `pthread_exit` ends when its last thread does: this thread checks at each wake-up
//! whether it is the only one left (`/proc/self/stat`: a dead leader and two threads, the
//! leader's zombie and this one) and then returns, so glibc ends the process as it would have.
//! Until it sees that (up to [`SLEEP_MAX_MS`]), or for ever if `/proc` cannot be read, signals
//! sent to such a process wait, blocked by its only live thread (`SIGKILL` still ends it).

use crate::front::tls;
use crate::heap::registry;
use crate::stats::{Ev, GLOBAL};
use crate::sys::options;
use core::mem::MaybeUninit;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// `STATE` values. Relaxed throughout: the word only elects the one thread that starts the
/// purge thread; `pthread_create` orders everything the new thread reads.
///
/// ABSENT: not decided yet in this process, or a fork child whose purge thread is gone.
const ABSENT: u32 = 0;
const STARTING: u32 = 1;
const RUNNING: u32 = 2;
/// The option is off, or `pthread_create` failed: nothing more to do in this process.
const OFF: u32 = 3;

static STATE: AtomicU32 = AtomicU32::new(ABSENT);

/// Shortest and longest sleep between passes (ms): `HAKOZUNA_DECAY_MS=0` must not spin, and a
/// process whose main thread left with `pthread_exit` ends within a second of its last thread.
const SLEEP_MIN_MS: u64 = 10;
const SLEEP_MAX_MS: u64 = 1000;

/// Stack of the thread: the decay pass needs a few KiB.
const STACK_BYTES: usize = 256 << 10;

/// Starts the purge thread if nothing has been decided in this process yet (the constructor,
/// then a fork child's first refill) and `HAKOZUNA_BACKGROUND=1`. One load when there is
/// nothing to do, so every refill calls it.
///
/// # Safety
/// Start-up has completed, and the calling thread uses no reference to its own thread cache
/// during the call (its slot points elsewhere meanwhile).
#[inline]
pub unsafe fn start_if_absent() {
    if STATE.load(Relaxed) == ABSENT {
        // SAFETY: caller contract.
        unsafe { start() };
    }
}

#[cold]
#[inline(never)]
unsafe fn start() {
    if !options::background() {
        STATE.store(OFF, Relaxed);
        return;
    }
    if STATE
        .compare_exchange(ABSENT, STARTING, Relaxed, Relaxed)
        .is_err()
    {
        return;
    }
    let own = tls::tcache();
    // SAFETY: DEAD is a stand-in; `own` is restored below and no reference to it is used
    // meanwhile (caller contract), so an allocation glibc makes in `pthread_create` re-enters
    // as a retired thread's would (the fallback cache) and leaves our cache alone.
    unsafe { tls::set(tls::dead()) };
    let ok = spawn();
    // SAFETY: `own` is what the slot held: a stand-in or this thread's own cache, which is
    // still live and still ours.
    unsafe { tls::set(own) };
    STATE.store(if ok { RUNNING } else { OFF }, Relaxed);
}

/// The fork child has no purge thread: its first refill starts one. Only marks it, taking no
/// lock and starting nothing (the child is single-threaded here).
pub fn forget_after_fork() {
    if matches!(STATE.load(Relaxed), STARTING | RUNNING) {
        STATE.store(ABSENT, Relaxed);
    }
}

/// Creates the detached thread with every signal blocked. Returns whether it was created.
fn spawn() -> bool {
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    let mut all = MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
    let mut tid = MaybeUninit::<libc::pthread_t>::uninit();
    // SAFETY: valid out-pointers; the attribute object is initialised before use and destroyed
    // after; the signal mask the thread inherits is restored on the calling thread. None of
    // these calls allocates but `pthread_create` (see the module doc).
    unsafe {
        if libc::pthread_attr_init(attr.as_mut_ptr()) != 0 {
            return false;
        }
        libc::pthread_attr_setdetachstate(attr.as_mut_ptr(), libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(attr.as_mut_ptr(), STACK_BYTES);
        libc::sigfillset(all.as_mut_ptr());
        let masked = libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr()) == 0;
        let rc = libc::pthread_create(tid.as_mut_ptr(), attr.as_ptr(), run, null_mut());
        if rc == 0 {
            // Named before this returns, so the thread can be told apart at once (`ps -L`,
            // tests); glibc writes the name to /proc without allocating. `tid` is still
            // valid: the thread ends only as the last one, and this one is alive.
            libc::pthread_setname_np(tid.assume_init(), c"hakozuna-bg".as_ptr());
        }
        if masked {
            libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), null_mut());
        }
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        rc == 0
    }
}

/// The thread: sleep half an interval, run the released-heap pass, until it is the last
/// thread of the process.
extern "C" fn run(_: *mut libc::c_void) -> *mut libc::c_void {
    loop {
        sleep_ms((options::decay_ms() / 2).clamp(SLEEP_MIN_MS, SLEEP_MAX_MS));
        if last_thread() {
            return null_mut();
        }
        registry::decay_released();
        GLOBAL.add_shared(Ev::BackgroundWakeups, 1);
    }
}

fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is a valid timespec; no remainder is asked for (a signal cannot arrive:
    // all are blocked, and an early wake-up only runs a pass early, which the pass's own
    // clock gates).
    unsafe { libc::nanosleep(&ts, null_mut()) };
}

/// Whether the process's other threads have all exited and its main thread left with
/// `pthread_exit` (its zombie stays counted until the process ends). False if
/// `/proc/self/stat` cannot be read.
fn last_thread() -> bool {
    let mut buf = [0u8; 512];
    // SAFETY: a NUL-terminated path; `buf` is valid for writes of its length; the descriptor
    // is closed on every path that opened it.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/stat".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        let n = libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len());
        libc::close(fd);
        n
    };
    // `get`: no index check left to panic (`n` is at most the buffer's length).
    match buf.get(..n.max(0) as usize) {
        Some(stat) if n > 0 => sole_survivor(stat),
        _ => false,
    }
}

/// Parses `/proc/<pid>/stat` (proc(5)): after the command name in parentheses (which may hold
/// spaces and parentheses, so the last `)` ends it) come field 3, the leader's state, and
/// field 20, the number of threads.
fn sole_survivor(stat: &[u8]) -> bool {
    let Some(close) = stat.iter().rposition(|&c| c == b')') else {
        return false;
    };
    let mut fields = stat
        .get(close + 1..)
        .unwrap_or(&[])
        .split(|&c| c == b' ')
        .filter(|f| !f.is_empty());
    let leader_dead = matches!(fields.next(), Some(b"Z") | Some(b"X"));
    let threads = fields
        .nth(16)
        .and_then(|f| crate::sys::diag::parse_u64(f.trim_ascii_end()));
    leader_dead && threads.is_some_and(|t| t <= 2)
}

#[cfg(test)]
mod tests {
    use super::sole_survivor;

    #[test]
    fn reads_leader_state_and_thread_count() {
        let zombie2 = b"22517 (a b) c) Z 22508 22508 13134 0 -1 4227084 92 0 0 0 0 0 0 0 20 0 2 0 1109182 0 0\n";
        assert!(sole_survivor(zombie2));
        let zombie3 =
            b"22517 (z) Z 22508 22508 13134 0 -1 4227084 92 0 0 0 0 0 0 0 20 0 3 0 1109182\n";
        assert!(!sole_survivor(zombie3));
        let running2 =
            b"22517 (z) S 22508 22508 13134 0 -1 4227084 92 0 0 0 0 0 0 0 20 0 2 0 1109182\n";
        assert!(!sole_survivor(running2));
        assert!(!sole_survivor(b"22517 (z"));
        assert!(!sole_survivor(b"22517 (z) Z 1 2"));
    }
}
