//! The allocator's life and its threads' (design.md §11): process start-up, a thread cache's
//! activation and retirement, the thread-exit destructor and fork safety.
//!
//! Thread caches live in metadata memory, one per heap id (`tcache::cache_of`): a cache goes with its
//! heap, so a thread that claims a released heap reuses the cache its last owner retired, and
//! there are never more caches than heaps. Exclusive ownership of the heap (the registry's
//! claim and release, under its lock) is exclusive ownership of the cache.
//!
//! Start-up runs once, from whichever comes first: our constructor (below) or the first
//! slow-path call of any thread (another library's constructor may allocate before ours runs).
//! It reads the environment, reserves the arena, creates the `pthread_key_create` destructor
//! that retires thread caches, and registers the `pthread_atfork` handlers that hold every
//! lock across `fork` so the child can allocate — before it publishes DONE, so no thread can
//! allocate and fork while the handlers are missing.
//!
//! Why a constructor: `fork` runs prepare handlers in reverse registration order and
//! parent/child handlers in registration order. Ours take and release every allocator lock,
//! so they must be registered before any other code's (whose prepare or child handler may call
//! `malloc`): then our prepare runs last and our parent/child run first. Registering on the
//! first allocation is too late for a program that calls `pthread_atfork` before it first
//! allocates (glibc's own start-up does not allocate): its prepare would then call `malloc`
//! while we hold our locks, and wait forever.

use crate::front::background;
use crate::front::tcache::{self, ThreadCache, ACTIVE, UNINIT};
use crate::front::{fallback, orphans, tls};
use crate::heap::registry;
use crate::page::{arena, large};
use crate::sys::{meta, options, os};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

/// `STATE` values: NONE and DONE, or while start-up runs, the pid of the process running it
/// (pids are positive and below 2^22). One word, so that a child forked during start-up reads
/// in one load that the start-up it sees belongs to another process, whose thread running it
/// is gone; the pid is published together with the claim (a separate store after it left a
/// window in which such a child spun forever).
const NONE: u32 = 0;
const DONE: u32 = u32::MAX;

// Orderings (C11 model): `start`'s Release store of DONE pairs with the Acquire loads of
// STATE in `ensure` (the first load, and the CAS's failure ordering) that read it, so a thread
// that sees DONE sees everything start-up wrote with Relaxed stores: the options, the arena's
// statics, KEY and KEY_OK, FORK_HANDLERS. The claim (NONE → pid) publishes nothing, and the
// reset of a dead process's claim in a fork child is Relaxed because the claimant after it
// redoes start-up from the beginning. INITIALISER is Relaxed: it only has to show the
// start-up thread its own earlier store, which program order makes visible to it.
static STATE: AtomicU32 = AtomicU32::new(NONE);
/// Thread pointer of the initialising thread, to recognise re-entry from inside start-up.
static INITIALISER: AtomicUsize = AtomicUsize::new(0);
static KEY: AtomicU32 = AtomicU32::new(0);
static KEY_OK: AtomicU8 = AtomicU8::new(KEY_NONE);
/// 1 once our fork handlers are in glibc's list in this process image. Also set by `child`,
/// so that a child forked between the registration and this flag's store (it inherits the
/// handlers, and ran `child`) does not register them a second time if it restarts start-up.
static FORK_HANDLERS: AtomicU8 = AtomicU8::new(0);

/// The constructor: runs start-up when the loader initialises us, before any code loaded
/// after us (the executable's constructors, `main`) can register a fork handler or allocate.
/// In a preloaded library only the libraries the program links run their constructors
/// before ours; in an executable that links this crate (`#[global_allocator]`) the priority
/// suffix sorts the entry before the executable's unprioritised constructors (C
/// `__attribute__((constructor))`, `.init_array` statics).
#[used]
#[link_section = ".init_array.00101"]
static CONSTRUCTOR: extern "C" fn() = constructor;

extern "C" fn constructor() {
    if ensure() {
        // SAFETY: start-up has completed; a constructor runs outside any allocator call, so no
        // reference to this thread's cache is live.
        unsafe { background::start_if_absent() };
    }
}

/// True once start-up has completed. False only for a call re-entering start-up on the
/// initialising thread (the caller then uses the large tier).
pub fn ensure() -> bool {
    if STATE.load(Acquire) == DONE {
        return true;
    }
    let me = os::thread_pointer();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    loop {
        match STATE.compare_exchange(NONE, pid, Acquire, Acquire) {
            Ok(_) => {
                start(me);
                return true;
            }
            Err(DONE) => return true,
            Err(owner) if owner == pid => {
                // Start-up is running in this process: on this thread (re-entry from a call
                // start-up makes, e.g. `pthread_atfork` growing glibc's handler array), or
                // on another, which we wait for.
                if INITIALISER.load(Relaxed) == me {
                    return false;
                }
                wait_for_start(pid);
            }
            Err(owner) => {
                // A fork taken while another thread was starting up leaves a child in which
                // nobody will finish: start over there (a second reservation is harmless).
                let _ = STATE.compare_exchange(owner, NONE, Relaxed, Relaxed);
            }
        }
    }
}

/// Loads of `STATE` a thread waiting for another thread's start-up makes before it sleeps:
/// start-up is short (an `mmap`, a `pthread_key_create`, a `pthread_atfork`), so a running
/// initialiser usually finishes within them.
const START_SPINS: u32 = 200;

/// Waits while another thread of this process (`pid`) runs start-up: a bounded spin, then a
/// `FUTEX_WAIT` on `STATE` while it still holds `pid`, which `start` ends with a wake of every
/// sleeper after it stores DONE. A sleep, not a `sched_yield` loop: a waiter of higher
/// real-time priority than a preempted initialiser on its CPU would otherwise never let it run
/// (the livelock `sys::sync` avoids for the locks). The kernel compares the word and queues the
/// thread atomically with respect to the wake, so a DONE stored before the wait makes it return
/// at once; it may also return early or spuriously, and the caller's loop re-reads `STATE`.
/// A fork child never sleeps here on its parent's start-up: its pid differs, so `ensure`
/// resets the claim instead of waiting.
fn wait_for_start(pid: u32) {
    for _ in 0..START_SPINS {
        // Relaxed: only chooses when to sleep; `ensure`'s CAS reads DONE with Acquire.
        if STATE.load(Relaxed) != pid {
            return;
        }
        core::hint::spin_loop();
    }
    os::futex_wait(&STATE, pid);
}

/// Start-up proper, on the thread that claimed `STATE`.
fn start(me: usize) {
    INITIALISER.store(me, Relaxed);
    tls::seal();
    options::init();
    if crate::config::SECURE {
        // Before the arena: no free list exists yet.
        crate::sys::secret::init();
    }
    arena::init();
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: valid out-pointer and a destructor with the C signature.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
        KEY.store(key, Relaxed);
        KEY_OK.store(KEY_READY, Relaxed);
    }
    // Before DONE, so every allocation another thread makes, and so every fork after it,
    // finds the handlers registered. glibc keeps its first 48 registrations in static
    // storage and calls `malloc` to grow past them: that call comes back here on this thread,
    // `ensure` returns false, and the large tier serves it (initialised just above; the
    // handlers, not yet registered, cannot run during it).
    if FORK_HANDLERS.load(Relaxed) == 0 {
        // SAFETY: the handlers are `extern "C"` functions that only take/release our locks.
        if unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) } == 0 {
            FORK_HANDLERS.store(1, Relaxed);
        }
    }
    // Release: everything above is visible to threads that see DONE.
    STATE.store(DONE, Release);
    // Once per process image, so no count of sleepers is kept: a wake finding none is cheap.
    os::futex_wake(&STATE, i32::MAX);
}

/// `KEY_OK` values: no key (start-up's `pthread_key_create` failed, e.g. every one of
/// `PTHREAD_KEYS_MAX` keys taken), the key is usable, or a thread is retrying the creation.
const KEY_NONE: u8 = 0;
const KEY_READY: u8 = 1;
const KEY_CREATING: u8 = 2;

extern "C" {
    /// glibc's registration of a thread-local destructor (what C++ `thread_local` and Rust's
    /// `thread_local!` use; glibc 2.18). `dso` pins the object that registered it while the
    /// destructor is pending.
    fn __cxa_thread_atexit_impl(
        dtor: unsafe extern "C" fn(*mut libc::c_void),
        obj: *mut libc::c_void,
        dso: *mut libc::c_void,
    ) -> libc::c_int;
    /// The handle of this object (executable or shared library), defined by the C runtime's
    /// `crtbegin` in every object the toolchain links.
    static __dso_handle: u8;
}

/// Arms the thread-exit destructor for the calling thread: our key's, retrying the key's
/// creation if start-up's failed, else (no key to be had) a thread-local destructor
/// registered with `__cxa_thread_atexit_impl`. The latter runs before every key's destructor
/// rather than after some, so other keys' destructors on that thread use the fallback cache;
/// either way the heap is released at thread exit (design.md §11, "Rare paths"). May
/// allocate (glibc's `pthread_setspecific` for keys ≥ 32, `__cxa_thread_atexit_impl` always):
/// call it last in activation.
fn register_thread_exit() {
    // Acquire: pairs with the Release store of KEY_READY below, after which KEY is readable;
    // start-up's own store is published by DONE.
    if KEY_OK.load(Acquire) == KEY_NONE
        && KEY_OK
            .compare_exchange(KEY_NONE, KEY_CREATING, Acquire, Relaxed)
            .is_ok()
    {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: valid out-pointer and a destructor with the C signature. It does not
        // allocate (glibc claims a slot of a static array).
        let ok = unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0;
        if ok {
            KEY.store(key, Relaxed);
        }
        // Release: a thread that reads KEY_READY reads the KEY stored above.
        KEY_OK.store(if ok { KEY_READY } else { KEY_NONE }, Release);
    }
    if KEY_OK.load(Acquire) == KEY_READY {
        // SAFETY: the key exists (KEY_READY); a non-null value makes the destructor run.
        unsafe {
            libc::pthread_setspecific(KEY.load(Relaxed), core::ptr::dangling::<libc::c_void>())
        };
        return;
    }
    // SAFETY: a destructor with the C signature that ignores its argument, registered for the
    // calling thread; `__dso_handle` is this object's handle (only its address is used).
    unsafe {
        __cxa_thread_atexit_impl(
            on_thread_exit,
            null_mut(),
            &raw const __dso_handle as *mut libc::c_void,
        )
    };
}

/// Heaps released so far (thread exits, and claims given back), and the value it had when a
/// claim last failed (`u64::MAX`: none failed), with the clock of that failure.
static RELEASES: AtomicU64 = AtomicU64::new(0);
static FAILED_AT: AtomicU64 = AtomicU64::new(u64::MAX);
static FAILED_MS: AtomicU64 = AtomicU64::new(0);
/// How often a thread without a heap retries a claim when no heap was released since the
/// last failure (metadata memory may have become available).
const RETRY_MS: u64 = 1000;

/// Whether a claim may succeed now: none failed since the last release, or the last failure
/// is [`RETRY_MS`] old. A thread without a heap keeps its slot at EMPTY and comes back here at
/// every malloc; this keeps it off the registry lock. Relaxed: a hint, re-checked by the claim.
fn claim_worth_trying() -> bool {
    FAILED_AT.load(Relaxed) != RELEASES.load(Relaxed)
        || os::now_ms().saturating_sub(FAILED_MS.load(Relaxed)) >= RETRY_MS
}

fn release(h: crate::heap::OwnedHeap, given_back: bool) {
    registry::release(h, given_back);
    RELEASES.fetch_add(1, Relaxed);
}

/// A heap for the calling thread (`tp`, process `pid`) and its cache, ACTIVE: a dead thread's
/// at the same thread pointer (`orphans`), or a claimed one. `None` when neither is possible.
fn take_cache(tp: usize, pid: u32) -> Option<*mut ThreadCache> {
    if let Some(id) = orphans::adopt(tp, pid) {
        let c = tcache::cache_at(id);
        // SAFETY: the record names a heap its holder, a dead thread of this process, claimed
        // and never released: its cache exists (set up before the record) and nothing else
        // references it. The holder's writes to it happen-before this read: glibc hands a
        // thread's stack to a new thread only after the kernel cleared the dead thread's tid
        // (the guarantee it relies on itself to reuse the stack memory), and our thread was
        // created after that.
        if !c.is_null() && unsafe { (*c).state } == ACTIVE {
            return Some(c);
        }
    }
    let before = RELEASES.load(Relaxed);
    let Some(mut h) = registry::claim() else {
        FAILED_MS.store(os::now_ms(), Relaxed);
        FAILED_AT.store(before, Relaxed);
        return None;
    };
    let id = h.heap().id;
    let Some(c) = tcache::cache_of(id) else {
        // No memory for a cache: give the heap back as a retiring thread would.
        h.enter();
        let given_back = h.retire();
        h.leave();
        release(h, given_back);
        FAILED_MS.store(os::now_ms(), Relaxed);
        FAILED_AT.store(RELEASES.load(Relaxed), Relaxed);
        return None;
    };
    debug_assert!(!tls::is_stand_in(c));
    // SAFETY: `c` is the cache of the heap we now own: ours alone, and no reference to it is
    // live (its previous owner pointed its slot at DEAD before releasing the heap). This
    // `&mut` lives only for this call, which makes no call that could re-enter the allocator.
    unsafe { (*c).start(h) };
    orphans::record(tp, pid, id);
    Some(c)
}

/// Makes the calling thread's cache usable: start-up, then a heap and the cache that goes
/// with it, which the thread's TLS slot then points at. Returns that ACTIVE cache, or null if
/// either is impossible (the caller falls back to [`fallback_alloc`] or the large tier), if
/// we are already inside activation, or if the thread has retired: allocations after our
/// destructor ran are served by the fallback cache, since a heap claimed after it would
/// only be released when another thread starts on this one's stack (`orphans`).
///
/// While it claims, the slot points at `tls::DEAD`, so a call that re-enters the allocator on
/// this thread (any of `ensure`, `claim`, `pthread_setspecific` might) is served as a retired
/// thread's is. No reference to a cache is held across those calls.
///
/// # Safety
/// Not called from inside another allocator call on this thread.
pub unsafe fn activate() -> *mut ThreadCache {
    let tc = tls::tcache();
    // SAFETY: the slot's cache is live for the whole thread; a plain read.
    match unsafe { (*tc).state } {
        ACTIVE => return tc,
        UNINIT => {}
        _ => return null_mut(),
    }
    if !ensure() || arena::len() == 0 {
        return null_mut();
    }
    // Start-up may have allocated on this thread and activated it already.
    let tc = tls::tcache();
    // SAFETY: as above.
    match unsafe { (*tc).state } {
        ACTIVE => return tc,
        UNINIT => {}
        _ => return null_mut(),
    }
    debug_assert!(tc == tls::empty());
    if !claim_worth_trying() {
        return null_mut();
    }
    // SAFETY: DEAD is a stand-in, live for ever.
    unsafe { tls::set(tls::dead()) };
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let Some(c) = take_cache(os::thread_pointer(), pid) else {
        // SAFETY: EMPTY is a stand-in; a later call tries again (`claim_worth_trying`).
        unsafe { tls::set(tls::empty()) };
        return null_mut();
    };
    // SAFETY: `c` is ours and ACTIVE, and stays live (metadata memory is never freed) until
    // `on_thread_exit` points the slot elsewhere.
    unsafe { tls::set(c) };
    // Last: may allocate, which now works.
    register_thread_exit();
    c
}

/// A block of `bin` for a thread without a cache of its own, from the shared fallback cache;
/// null before start-up completed, without an arena, or without memory (the caller then uses
/// the large tier).
pub fn fallback_alloc(bin: usize) -> *mut u8 {
    // Acquire: as in `ensure`; a re-entry from inside start-up sees no DONE and takes the
    // large tier.
    if STATE.load(Acquire) != DONE || arena::len() == 0 {
        return null_mut();
    }
    fallback::alloc(bin)
}

/// The thread-exit destructor: retires the cache, points the thread at `tls::DEAD`, and only
/// then releases the heap, and the cache with it, to the next thread. glibc runs keys'
/// destructors in rounds, other keys' before or after ours, and may run thread-local
/// destructors too: any of them may still call `malloc` or `free`, which DEAD serves.
unsafe extern "C" fn on_thread_exit(_: *mut libc::c_void) {
    let tc = tls::tcache();
    // SAFETY: destructors run on the exiting thread, outside any allocator call. The slot's
    // cache is live; only an ACTIVE one is the thread's own (a stand-in is never written),
    // and no other reference to it is live.
    if unsafe { (*tc).state } != ACTIVE {
        return;
    }
    // SAFETY: as above: our own ACTIVE cache.
    if let Some((h, given_back)) = unsafe { (*tc).retire() } {
        // SAFETY: DEAD is a stand-in; nothing on this thread uses the retired cache again.
        unsafe { tls::set(tls::dead()) };
        orphans::forget(os::thread_pointer());
        release(h, given_back);
        registry::trim_eager();
        registry::decay_released();
    }
}

// Lock order (also the nesting order everywhere else): fallback cache → eager pass → purge
// passes → registry → segment pool → metadata → large tier (`registry::lock_for_fork` takes
// the two pass locks and the registry's; the pass locks never nest with each other, and each
// is held while its pass works on heaps it borrowed outside the registry lock, so the child
// finds none borrowed). The orphan records' lock nests with none; taken first.
unsafe extern "C" fn prepare() {
    orphans::lock_for_fork();
    fallback::lock_for_fork();
    registry::lock_for_fork();
    arena::lock_for_fork();
    meta::lock_for_fork();
    large::lock_for_fork();
}

unsafe extern "C" fn parent() {
    // SAFETY: runs after `prepare` took these locks in this process image (pthread_atfork
    // pairing), released in the reverse order.
    unsafe {
        large::unlock_after_fork();
        meta::unlock_after_fork();
        arena::unlock_after_fork();
        registry::unlock_after_fork();
        fallback::unlock_after_fork();
        orphans::unlock_after_fork();
    }
}

unsafe extern "C" fn child() {
    // The child has only the forking thread; other threads' heaps stay claimed (and their
    // memory unreachable), which is what every allocator does.
    // SAFETY: the child is single-threaded and inherited the locks `prepare` took.
    unsafe { parent() };
    // SAFETY: the child is single-threaded, and the locks are released.
    unsafe { arena::recount_after_fork() };
    registry::forget_eager_runner_after_fork();
    // This image has the handlers (this one is running), whether or not the forking
    // process had stored the flag yet.
    FORK_HANDLERS.store(1, Relaxed);
    // Nor has it a purge thread: the child's first refill starts one (never from here).
    background::forget_after_fork();
    // A thread of the parent that was retrying the key's creation is not here to finish.
    let _ = KEY_OK.compare_exchange(KEY_CREATING, KEY_NONE, Relaxed, Relaxed);
}
