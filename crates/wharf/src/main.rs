//! `wharf`: the server and its command-line client in one binary.

mod buckets;
mod cli;
mod client;
mod commands;
mod deploy;
mod events;
mod follow;
mod git;
mod invocations_config;
mod invoke;
mod notify;
mod notify_config;
mod s3client;
mod s3cmd;
mod s3ls;
mod s3xml;
mod schedules;
mod secrets;
mod server;
mod services;
mod sse;
mod users;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The per-workload supervisor is this binary re-executed; it must start before any
    // runtime or thread exists.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == "__shim" {
        let code = wharf_runtime::shim_main(std::path::Path::new(&args[2]));
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }

    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(cli::dispatch(cli));
    // Watchers of live runs and replicas wait on their supervisors' locks in blocking
    // threads that end only with the workload; the server must not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
