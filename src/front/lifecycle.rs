//! The allocator's life and its threads' (design.md §11): process start-up, a thread cache's
//! activation and retirement, the thread-exit destructor and fork safety.
//!
//! Start-up runs on the first slow-path call of any thread: run-time options, arena
//! reservation, the `pthread_key_create` destructor that retires thread caches, and
//! `pthread_atfork` handlers that hold every lock across `fork` so the child can allocate.

use crate::front::tcache::{ThreadCache, ACTIVE, BUSY, UNINIT};
use crate::front::tls;
use crate::heap::registry;
use crate::page::{arena, large};
use crate::sys::{meta, options, os};
use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering::*};

const NONE: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(NONE);
/// TLS address of the initialising thread, to recognise re-entry from inside start-up.
static INITIALISER: AtomicUsize = AtomicUsize::new(0);
/// Process that ran start-up, to recognise a fork child whose start-up thread is gone.
static INIT_PID: AtomicU32 = AtomicU32::new(0);
static KEY: AtomicU32 = AtomicU32::new(0);
static KEY_OK: AtomicU8 = AtomicU8::new(0);

/// True once start-up has completed. False only for a call re-entering start-up on the
/// initialising thread (the caller then uses the large tier).
pub fn ensure() -> bool {
    if STATE.load(Acquire) == DONE {
        return true;
    }
    let me = tls::tcache() as usize;
    match STATE.compare_exchange(NONE, RUNNING, Acquire, Acquire) {
        Ok(_) => {
            INITIALISER.store(me, Relaxed);
            // SAFETY: getpid has no preconditions.
            INIT_PID.store(unsafe { libc::getpid() } as u32, Relaxed);
            options::init();
            arena::init();
            let mut key: libc::pthread_key_t = 0;
            // SAFETY: valid out-pointer and a destructor with the C signature.
            if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
                KEY.store(key, Relaxed);
                KEY_OK.store(1, Relaxed);
            }
            // Release: everything above is visible to threads that see DONE.
            STATE.store(DONE, Release);
            // After DONE: glibc may allocate here, which must find a working allocator.
            // SAFETY: the handlers are `extern "C"` functions that only take/release our locks.
            unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
            true
        }
        Err(_) => {
            if INITIALISER.load(Relaxed) == me {
                return false;
            }
            while STATE.load(Acquire) != DONE {
                // A fork taken while another thread was starting up leaves a child in which
                // nobody will finish: start over there (a second reservation is harmless).
                // SAFETY: getpid has no preconditions.
                let pid = unsafe { libc::getpid() } as u32;
                let init_pid = INIT_PID.load(Relaxed);
                if init_pid != 0
                    && init_pid != pid
                    && STATE
                        .compare_exchange(RUNNING, NONE, AcqRel, Acquire)
                        .is_ok()
                {
                    return ensure();
                }
                os::yield_now();
            }
            true
        }
    }
}

/// Arms the thread-exit destructor for the calling thread.
pub fn register_thread_exit() {
    if KEY_OK.load(Relaxed) == 1 {
        // SAFETY: the key was created by `ensure`; a non-null value makes the destructor run.
        unsafe {
            libc::pthread_setspecific(KEY.load(Relaxed), core::ptr::dangling::<libc::c_void>())
        };
    }
}

/// Makes the calling thread's cache usable: start-up, then a heap. False if either is
/// impossible (the caller falls back to the large tier), if we are already inside activation,
/// or if the thread has retired: a heap claimed in glibc's last destructor round would never
/// be released, so allocations after our destructor ran take the large tier instead.
///
/// Works through a raw pointer and holds no `&mut` across the external calls (`ensure`,
/// `claim`, `pthread_setspecific`), any of which may re-enter malloc on this thread.
///
/// # Safety
/// `tc` is the calling thread's cache.
pub unsafe fn activate(tc: *mut ThreadCache) -> bool {
    // SAFETY: `tc` is the calling thread's cache (caller contract), valid for the thread's
    // life; this is a plain read through the raw pointer.
    match unsafe { (*tc).state } {
        ACTIVE => return true,
        UNINIT => {}
        _ => return false,
    }
    if !ensure() || arena::len() == 0 {
        return false;
    }
    // Start-up may have allocated on this thread and activated it already.
    // SAFETY: as above: our own thread's cache, accessed through the raw pointer with no
    // reference held across `ensure`, `claim` or the re-reads here.
    unsafe {
        if (*tc).state != UNINIT {
            return (*tc).state == ACTIVE;
        }
        (*tc).state = BUSY;
    }
    let Some(h) = registry::claim() else {
        // SAFETY: as above.
        unsafe { (*tc).state = UNINIT };
        return false;
    };
    // SAFETY: our own thread's cache; this `&mut` lives only for this call, which makes no
    // call that could re-enter the allocator.
    unsafe { (*tc).start(h) };
    // Last: may allocate (glibc's pthread_setspecific for keys >= 32), which now works.
    register_thread_exit();
    true
}

unsafe extern "C" fn on_thread_exit(_: *mut libc::c_void) {
    // SAFETY: destructors run on the exiting thread, which owns its cache, and outside any
    // allocator call, so no other reference to the cache is live.
    if let Some(h) = unsafe { (*tls::tcache()).retire() } {
        registry::release(h);
        registry::decay_released();
    }
}

// Lock order (also the nesting order everywhere else): registry → segment pool → metadata →
// large tier.
unsafe extern "C" fn prepare() {
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
    }
}

unsafe extern "C" fn child() {
    // The child has only the forking thread; other threads' heaps stay claimed (and their
    // memory unreachable), which is what every allocator does.
    // SAFETY: the child is single-threaded and inherited the locks `prepare` took.
    unsafe { parent() };
}
