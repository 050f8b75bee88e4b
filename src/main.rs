//! The `denwa` binary: all of it lives in the library; see `cli`.
fn main() -> std::process::ExitCode {
    denwa::cli::main()
}
