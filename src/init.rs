//! Process-wide start-up, thread-exit registration and fork safety.
//!
//! Start-up runs on the first slow-path call of any thread: environment, arena reservation,
//! the `pthread_key_create` destructor that retires thread caches, and `pthread_atfork`
//! handlers that hold every lock across `fork` so the child can allocate.

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
    let me = crate::tls::tcache() as usize;
    match STATE.compare_exchange(NONE, RUNNING, Acquire, Acquire) {
        Ok(_) => {
            INITIALISER.store(me, Relaxed);
            // SAFETY: getpid has no preconditions.
            INIT_PID.store(unsafe { libc::getpid() } as u32, Relaxed);
            crate::stats::init();
            crate::large::init();
            crate::arena::init();
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
                crate::os::yield_now();
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

unsafe extern "C" fn on_thread_exit(_: *mut libc::c_void) {
    // SAFETY: destructors run on the exiting thread, which owns its cache, and outside any
    // allocator call, so no other reference to the cache is live.
    unsafe { (*crate::tls::tcache()).retire() };
}

// Lock order (also the nesting order everywhere else): registry → segment pool → metadata →
// large tier.
unsafe extern "C" fn prepare() {
    crate::heap::lock_for_fork();
    crate::arena::lock_for_fork();
    crate::meta::lock_for_fork();
    crate::large::lock_for_fork();
}

unsafe extern "C" fn parent() {
    // SAFETY: runs after `prepare` took these locks in this process image (pthread_atfork
    // pairing), released in the reverse order.
    unsafe {
        crate::large::unlock_after_fork();
        crate::meta::unlock_after_fork();
        crate::arena::unlock_after_fork();
        crate::heap::unlock_after_fork();
    }
}

unsafe extern "C" fn child() {
    // The child has only the forking thread; other threads' heaps stay claimed (and their
    // memory unreachable), which is what every allocator does.
    // SAFETY: the child is single-threaded and inherited the locks `prepare` took.
    unsafe { parent() };
}
