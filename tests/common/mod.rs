//! Helpers shared by integration tests (`mod common;` in each test that uses them).

/// Minor page faults of the calling thread so far.
pub fn thread_faults() -> i64 {
    // SAFETY: `ru` is a valid out-parameter; RUSAGE_THREAD reads the calling thread's usage.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut ru), 0);
        ru.ru_minflt
    }
}
