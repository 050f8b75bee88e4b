//! The `denwa` binary: all of it lives in the library; see `cli`.

// glibc's allocator was about a sixth of the registrar's instructions under
// load (callgrind, bench B1): SIP handling allocates many small strings.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    denwa::cli::main()
}
