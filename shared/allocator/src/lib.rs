//! The allocator every BFF binary (and the harness that measures them) runs on: mimalloc, with
//! its memory given back to the OS as soon as it is free.
//!
//! Why not glibc's malloc: a request's memory is allocated on one tokio worker and often freed
//! on another. glibc then locks the arena the memory came from, and under load the two workers
//! wait on each other's arenas: in the mobile-home benchmark 18.6 of a request's 28 system calls
//! were `futex` calls from `malloc`, `free` and `realloc`, with 3.9 context switches per request.
//! mimalloc frees to the owning thread without a lock: 9.3 system calls (0.4 `futex`) and 1.5
//! context switches per request. (The README's Performance section has the runs.)
//!
//! Why the options: by default mimalloc keeps freed memory committed for a while and commits
//! its arenas eagerly, which left a replica holding 1,000 idle connections at 86-103 MiB.
//! Purging at once and committing on demand brings it to 57-59 MiB, under glibc's 64-68.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: bff_allocator::Allocator = bff_allocator::Allocator;
//!
//! fn main() {
//!     bff_allocator::configure();
//!     // ...
//! }
//! ```

pub use mimalloc::MiMalloc as Allocator;

/// `mi_option_arena_eager_commit` and `mi_option_purge_delay` in `mimalloc.h` (v3, the version
/// `libmimalloc-sys` builds); its Rust bindings do not name these two.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets the allocator's options, unless the environment set them (`MIMALLOC_PURGE_DELAY`,
/// `MIMALLOC_ARENA_EAGER_COMMIT`). On Linux they are set before `main` (see
/// [`SET_OPTIONS_BEFORE_MAIN`]); call this first thing in `main` anyway, which keeps that
/// constructor linked in and sets them elsewhere.
pub fn configure() {
    #[cfg(target_os = "linux")]
    std::hint::black_box(&SET_OPTIONS_BEFORE_MAIN);
    set_options();
}

/// Set in `main`, the options come too late for the arena mimalloc reserves at the process's
/// first allocation: measured, 86 MiB at 1,000 connections against 59 MiB with the options set
/// from the start. A constructor runs before anything in the process allocates through Rust.
/// Priority 100 orders it before mimalloc's own constructor, which takes its first arena at
/// priority 101 when mimalloc is built by clang (gcc builds give it no priority, so it runs
/// after every prioritised one), and after std's (99), which only records the arguments.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array.00100")]
static SET_OPTIONS_BEFORE_MAIN: extern "C" fn() = set_options;

extern "C" fn set_options() {
    // SAFETY: plain setters of two integer options, which mimalloc reads atomically; neither
    // touches memory the caller owns.
    unsafe {
        libmimalloc_sys::mi_option_set_default(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set_default(PURGE_DELAY, 0);
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::{ARENA_EAGER_COMMIT, PURGE_DELAY};

    fn get(option: libmimalloc_sys::mi_option_t) -> std::os::raw::c_long {
        // SAFETY: a getter of an integer option.
        unsafe { libmimalloc_sys::mi_option_get(option) }
    }

    #[test]
    fn the_options_are_set_before_main() {
        // Neither has been set in this test: the constructor did, before the harness started.
        assert_eq!((get(ARENA_EAGER_COMMIT), get(PURGE_DELAY)), (0, 0));
    }

    /// The constants are the options mimalloc reads from `MIMALLOC_ARENA_EAGER_COMMIT` and
    /// `MIMALLOC_PURGE_DELAY`, and the environment still wins over them.
    #[test]
    fn the_environment_names_the_same_options_and_wins() {
        let exe = std::env::current_exe().expect("the test binary");
        let child = Command::new(exe)
            .args(["--exact", "tests::options_under_the_environment", "--ignored", "--test-threads", "1"])
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "1")
            .env("MIMALLOC_PURGE_DELAY", "7")
            .output()
            .expect("the test binary runs");
        let out = String::from_utf8_lossy(&child.stdout);
        assert!(child.status.success() && out.contains("1 passed"), "{out}{}", String::from_utf8_lossy(&child.stderr));
    }

    #[test]
    #[ignore = "run by the_environment_names_the_same_options_and_wins, with the environment set"]
    fn options_under_the_environment() {
        assert_eq!((get(ARENA_EAGER_COMMIT), get(PURGE_DELAY)), (1, 7));
    }
}
