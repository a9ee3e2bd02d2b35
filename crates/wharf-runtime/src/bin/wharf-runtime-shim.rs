//! A stand-alone shim binary, used by this crate's integration tests (the real server runs
//! the shim as `wharf __shim RUN`).
fn main() {
    let Some(run_dir) = std::env::args_os().nth(1) else {
        eprintln!("Usage: wharf-runtime-shim RUN_DIR");
        std::process::exit(2);
    };
    std::process::exit(wharf_runtime::shim_main(std::path::Path::new(&run_dir)));
}
