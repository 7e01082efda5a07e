//! The C++ allocation operators (design.md §14): every C++17 `operator new`, `new[]`,
//! `delete` and `delete[]` form under its Itanium-mangled name, exported from the preload
//! libraries (feature `capi`) so C++ programs reach hakozuna without libstdc++'s wrappers.
//!
//! **new.** Each `new` form is a small assembly trampoline (a naked function, so no Rust frame
//! stays on the stack) that calls a Rust *attempt*: the allocation itself, which on success
//! returns the block. When it fails, what the C++ rules ask for next (call the installed
//! `std::new_handler` until it gives up, then throw `std::bad_alloc`; or, for the `nothrow`
//! forms, return null, also when the handler throws) needs C++ exceptions, which Rust code
//! can neither throw nor catch, and with `panic = "abort"` an exception unwinding through a
//! Rust frame aborts the process. So the attempt returns, with a null block, the address of
//! the C++ runtime's own operator of the same form, found with
//! `dlsym(RTLD_NEXT, "<mangled name>")` (libstdc++'s, or libc++'s), and the trampoline
//! *jumps* there with the original arguments, its own frame already popped: that operator
//! runs the handler loop around `malloc`/`aligned_alloc` (ours, through its PLT) and throws
//! `std::bad_alloc` itself, or, for `nothrow`, catches and returns null. The exception never
//! passes a frame of this library.
//!
//! A `nothrow` attempt that fails with no handler installed returns null at once (it reads
//! the handler with `std::get_new_handler()`, found with `dlsym(RTLD_DEFAULT, …)`), so the
//! usual out-of-memory answer costs no exception. If the process has no C++ runtime operator
//! to jump to, a throwing form jumps to `std::__throw_bad_alloc()` and, if even that is
//! missing, prints a line and aborts (what a C++ program built without exceptions does); a
//! `nothrow` form returns null.
//!
//! The symbols are looked up the first time an allocation fails, never before: `dlsym` may
//! call `malloc`, which is safe there because the failed attempt holds no lock and no
//! thread-cache state (it is an ordinary nested call). Each address is cached.
//!
//! **delete.** Every form is `free` (the linker folds them onto its code). The size of a
//! sized delete and the alignment are not used: the page tag `free` reads gives the block's
//! class and its owner, and the owner is needed anyway, so the tag cannot be skipped; trusting
//! the size alone would corrupt a class's lists when it is wrong. A variant that checked the
//! tag against the size saved 2 of 32 instructions per own-heap hit but brought back the
//! own/adopted branch `free` avoids, so it was not kept (docs/ab.md, "Tries not kept").

// The exported names are the mangled C++ ones.
#![allow(non_snake_case)]

use crate::front::alloc;
use crate::sys::os;
use core::ffi::{c_char, c_void, CStr};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// An attempt's answer to its trampoline, returned in `rax:rdx`: the block, or null and the
/// address to jump to (0: return the null).
#[repr(C)]
pub struct Attempt {
    block: *mut c_void,
    next: usize,
}

impl Attempt {
    fn done(block: *mut u8) -> Self {
        Attempt {
            block: block as *mut c_void,
            next: 0,
        }
    }

    fn jump(next: usize) -> Self {
        Attempt {
            block: null_mut(),
            next,
        }
    }
}

/// A function of the C++ runtime, looked up the first time it is needed and cached.
struct Sym {
    name: &'static CStr,
    /// `RTLD_NEXT` (the definition after ours: the runtime's own operator) or `RTLD_DEFAULT`.
    next: bool,
    /// 0 = not looked up yet, 1 = missing, else the address.
    addr: AtomicUsize,
}

impl Sym {
    const fn new(name: &'static CStr, next: bool) -> Self {
        Sym {
            name,
            next,
            addr: AtomicUsize::new(0),
        }
    }

    /// The address, or 0 if the process has no such function.
    fn get(&self) -> usize {
        // Relaxed: the address is a function of an object the loader already mapped; two
        // threads racing here both store the same value.
        match self.addr.load(Relaxed) {
            0 => {}
            1 => return 0,
            a => return a,
        }
        let handle = if self.next {
            libc::RTLD_NEXT
        } else {
            libc::RTLD_DEFAULT
        };
        // SAFETY: a NUL-terminated name; called from this library's code, which `RTLD_NEXT`
        // needs, at a point that holds no allocator state (module doc).
        let a = unsafe { libc::dlsym(handle, self.name.as_ptr() as *const c_char) } as usize;
        self.addr.store(if a == 0 { 1 } else { a }, Relaxed);
        a
    }
}

static GET_NEW_HANDLER: Sym = Sym::new(c"_ZSt15get_new_handlerv", false);
static THROW_BAD_ALLOC: Sym = Sym::new(c"_ZSt17__throw_bad_allocv", false);

/// Where a failed throwing `new` goes: the runtime's operator of the same form, else
/// `std::__throw_bad_alloc`, else an abort.
fn throwing(next: &Sym) -> Attempt {
    let mut to = next.get();
    if to == 0 {
        to = THROW_BAD_ALLOC.get();
    }
    if to == 0 {
        to = no_cxx_runtime as *const () as usize;
    }
    Attempt::jump(to)
}

/// Where a failed `nothrow` `new` goes: null at once when no `new_handler` is installed (or
/// there is no C++ runtime), else the runtime's `nothrow` operator, which calls the handler
/// and catches what it throws.
fn nothrow(next: &Sym) -> Attempt {
    let get = GET_NEW_HANDLER.get();
    if get == 0 {
        return Attempt::jump(0);
    }
    // SAFETY: `std::get_new_handler()` is `noexcept`, takes nothing and returns a function
    // pointer, which the C ABI returns in `rax`.
    let handler = unsafe { core::mem::transmute::<usize, extern "C" fn() -> usize>(get)() };
    if handler == 0 {
        return Attempt::jump(0);
    }
    Attempt::jump(next.get())
}

extern "C" fn no_cxx_runtime() -> ! {
    os::write_stderr(
        b"hakozuna: operator new failed and the process has no C++ runtime to throw \
          std::bad_alloc: aborting\n",
    );
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// An aligned allocation for `new(std::align_val_t)`: null for an alignment that is not a
/// power of two (the C++ runtime's operator then throws, as it does itself).
fn aligned(size: usize, align: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return null_mut();
    }
    // SAFETY: called from C++ code, outside the allocator; `align` is a power of two.
    unsafe { alloc::memalign(align, size) }
}

/// Defines the Rust attempt of a `new` form and its exported trampoline.
///
/// The trampoline saves the argument registers, calls the attempt (which takes the same
/// arguments), restores them, and returns the block, or returns null, or jumps to the address
/// the attempt gave, with the caller's return address on top of the stack as at entry. The
/// stack stays 16-byte aligned at the call (one push for a one-argument form, three
/// otherwise); the CFI directives describe each push and pop, for debuggers and profilers
/// (no exception can pass the trampoline's own frame: the attempt is `extern "C"` and never
/// unwinds).
macro_rules! new_form {
    ($(#[$doc:meta])* $name:ident, $attempt:ident($($arg:ident: $ty:ty),*) $body:block, one_arg) => {
        extern "C" fn $attempt($($arg: $ty),*) -> Attempt $body

        $(#[$doc])*
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn $name($(_: $ty),*) -> *mut c_void {
            core::arch::naked_asm!(
                ".cfi_startproc",
                "push rdi",
                ".cfi_adjust_cfa_offset 8",
                "call {attempt}",
                "mov rcx, rdx",
                "pop rdi",
                ".cfi_adjust_cfa_offset -8",
                "test rax, rax",
                "jnz 2f",
                "test rcx, rcx",
                "jz 2f",
                "jmp rcx",
                "2:",
                "ret",
                ".cfi_endproc",
                attempt = sym $attempt,
            )
        }
    };
    ($(#[$doc:meta])* $name:ident, $attempt:ident($($arg:ident: $ty:ty),*) $body:block) => {
        extern "C" fn $attempt($($arg: $ty),*) -> Attempt $body

        $(#[$doc])*
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn $name($(_: $ty),*) -> *mut c_void {
            core::arch::naked_asm!(
                ".cfi_startproc",
                "push rdi",
                ".cfi_adjust_cfa_offset 8",
                "push rsi",
                ".cfi_adjust_cfa_offset 8",
                "push rdx",
                ".cfi_adjust_cfa_offset 8",
                "call {attempt}",
                "mov rcx, rdx",
                "pop rdx",
                ".cfi_adjust_cfa_offset -8",
                "pop rsi",
                ".cfi_adjust_cfa_offset -8",
                "pop rdi",
                ".cfi_adjust_cfa_offset -8",
                "test rax, rax",
                "jnz 2f",
                "test rcx, rcx",
                "jz 2f",
                "jmp rcx",
                "2:",
                "ret",
                ".cfi_endproc",
                attempt = sym $attempt,
            )
        }
    };
}

/// `std::nothrow_t const&`: an argument the operators never read.
type Nothrow = *const c_void;

macro_rules! plain_new {
    ($(#[$doc:meta])* $name:ident, $attempt:ident, $next:literal) => {
        new_form!($(#[$doc])* $name, $attempt(size: usize) {
            // SAFETY: called from C++ code, outside the allocator.
            let p = unsafe { alloc::malloc(size) };
            if !p.is_null() {
                return Attempt::done(p);
            }
            static NEXT: Sym = Sym::new($next, true);
            throwing(&NEXT)
        }, one_arg);
    };
}

macro_rules! nothrow_new {
    ($(#[$doc:meta])* $name:ident, $attempt:ident, $next:literal) => {
        new_form!($(#[$doc])* $name, $attempt(size: usize, _nt: Nothrow) {
            // SAFETY: called from C++ code, outside the allocator.
            let p = unsafe { alloc::malloc(size) };
            if !p.is_null() {
                return Attempt::done(p);
            }
            static NEXT: Sym = Sym::new($next, true);
            nothrow(&NEXT)
        });
    };
}

macro_rules! aligned_new {
    ($(#[$doc:meta])* $name:ident, $attempt:ident, $next:literal) => {
        new_form!($(#[$doc])* $name, $attempt(size: usize, align: usize) {
            let p = aligned(size, align);
            if !p.is_null() {
                return Attempt::done(p);
            }
            static NEXT: Sym = Sym::new($next, true);
            throwing(&NEXT)
        });
    };
}

macro_rules! aligned_nothrow_new {
    ($(#[$doc:meta])* $name:ident, $attempt:ident, $next:literal) => {
        new_form!($(#[$doc])* $name, $attempt(size: usize, align: usize, _nt: Nothrow) {
            let p = aligned(size, align);
            if !p.is_null() {
                return Attempt::done(p);
            }
            static NEXT: Sym = Sym::new($next, true);
            nothrow(&NEXT)
        });
    };
}

plain_new!(
    /// `operator new(std::size_t)`
    _Znwm, attempt_new, c"_Znwm"
);
plain_new!(
    /// `operator new[](std::size_t)`
    _Znam, attempt_new_array, c"_Znam"
);
nothrow_new!(
    /// `operator new(std::size_t, std::nothrow_t const&)`
    _ZnwmRKSt9nothrow_t, attempt_new_nothrow, c"_ZnwmRKSt9nothrow_t"
);
nothrow_new!(
    /// `operator new[](std::size_t, std::nothrow_t const&)`
    _ZnamRKSt9nothrow_t, attempt_new_array_nothrow, c"_ZnamRKSt9nothrow_t"
);
aligned_new!(
    /// `operator new(std::size_t, std::align_val_t)`
    _ZnwmSt11align_val_t, attempt_new_aligned, c"_ZnwmSt11align_val_t"
);
aligned_new!(
    /// `operator new[](std::size_t, std::align_val_t)`
    _ZnamSt11align_val_t, attempt_new_array_aligned, c"_ZnamSt11align_val_t"
);
aligned_nothrow_new!(
    /// `operator new(std::size_t, std::align_val_t, std::nothrow_t const&)`
    _ZnwmSt11align_val_tRKSt9nothrow_t,
    attempt_new_aligned_nothrow,
    c"_ZnwmSt11align_val_tRKSt9nothrow_t"
);
aligned_nothrow_new!(
    /// `operator new[](std::size_t, std::align_val_t, std::nothrow_t const&)`
    _ZnamSt11align_val_tRKSt9nothrow_t,
    attempt_new_array_aligned_nothrow,
    c"_ZnamSt11align_val_tRKSt9nothrow_t"
);

/// Defines delete forms: each is `free` of its first argument.
macro_rules! delete_forms {
    ($($(#[$doc:meta])* $name:ident($($rest:ty),*);)*) => {
        $(
            $(#[$doc])*
            ///
            /// # Safety
            /// C++ contract: `p` is null or a live block from this allocator, not used again.
            #[no_mangle]
            pub unsafe extern "C" fn $name(p: *mut c_void, $(_: $rest),*) {
                // SAFETY: C++ contract: `p` is null or a live block from this allocator.
                unsafe { alloc::free(p as *mut u8) }
            }
        )*
    };
}

delete_forms! {
    /// `operator delete(void*)`
    _ZdlPv();
    /// `operator delete[](void*)`
    _ZdaPv();
    /// `operator delete(void*, std::size_t)`
    _ZdlPvm(usize);
    /// `operator delete[](void*, std::size_t)`
    _ZdaPvm(usize);
    /// `operator delete(void*, std::nothrow_t const&)`
    _ZdlPvRKSt9nothrow_t(Nothrow);
    /// `operator delete[](void*, std::nothrow_t const&)`
    _ZdaPvRKSt9nothrow_t(Nothrow);
    /// `operator delete(void*, std::align_val_t)`
    _ZdlPvSt11align_val_t(usize);
    /// `operator delete[](void*, std::align_val_t)`
    _ZdaPvSt11align_val_t(usize);
    /// `operator delete(void*, std::size_t, std::align_val_t)`
    _ZdlPvmSt11align_val_t(usize, usize);
    /// `operator delete[](void*, std::size_t, std::align_val_t)`
    _ZdaPvmSt11align_val_t(usize, usize);
    /// `operator delete(void*, std::align_val_t, std::nothrow_t const&)`
    _ZdlPvSt11align_val_tRKSt9nothrow_t(usize, Nothrow);
    /// `operator delete[](void*, std::align_val_t, std::nothrow_t const&)`
    _ZdaPvSt11align_val_tRKSt9nothrow_t(usize, Nothrow);
}
