//! The command line: every subcommand and what it dispatches to.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::{client, commands, deploy, follow, server};

#[derive(Debug, Parser)]
#[command(
    name = "wharf",
    version,
    about = "Deploy and run R and Python data work."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the Wharf server.
    Server(server::ServerArgs),
    /// Store the server URL and an API token for the other commands.
    Login(LoginArgs),
    /// Deploy a folder as the next version of an app.
    Deploy(DeployArgs),
    /// List apps.
    Apps(JsonFlag),
    /// List an app's versions.
    Versions(AppJson),
    /// Make an earlier version of an app active again.
    Rollback { app: String, version: i64 },
    /// Delete an app with its versions, runs and logs.
    Delete {
        app: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Run a job and follow its logs until it ends.
    Run(RunArgs),
    /// List runs, newest first.
    Runs(RunsArgs),
    /// Show one run.
    Status(RunJson),
    /// Print a run's logs (RUN id, or APP for its latest run).
    Logs(LogsArgs),
    /// Cancel a queued or running run.
    Cancel { run: String },
    /// List or download the files a run wrote to $WHARF_OUTPUT_DIR.
    Output(OutputArgs),
    /// Print who the stored token belongs to.
    Whoami,
    #[command(name = "__shim", hide = true)]
    Shim { run_dir: PathBuf },
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AppJson {
    pub app: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunJson {
    pub run: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server, e.g. http://127.0.0.1:8080
    pub url: String,
    /// The API token (read from standard input when neither this nor --token-file is given).
    #[arg(long, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// Read the token from this file (e.g. the server's DATA_DIR/admin-token).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The app folder (with wharf.toml, or a single R script, plumber.R, app.R or main.py).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// App name; default: `name` in wharf.toml, else the folder's name.
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub app: String,
    /// A parameter for the job, given to it as JSON in WHARF_PARAMS (repeatable).
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Queue the run and print its id instead of following it.
    #[arg(long, short)]
    pub detach: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this app.
    pub app: Option<String>,
    /// How many (newest first).
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// A run id, or an app name for its latest run.
    pub target: String,
    /// Keep following new lines until the run ends.
    #[arg(long, short)]
    pub follow: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// A run id, or an app name for its latest run.
    pub run: String,
    /// Download every output file into this folder.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub dest: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let ok = Ok(ExitCode::SUCCESS);
    match cli.command {
        Command::Server(args) => server::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Login(args) => client::login(args).await.and(ok),
        Command::Deploy(args) => deploy::deploy(args).await.and(ok),
        Command::Apps(flag) => commands::apps(flag.json).await.and(ok),
        Command::Versions(args) => commands::versions(&args.app, args.json).await.and(ok),
        Command::Rollback { app, version } => commands::rollback(&app, version).await.and(ok),
        Command::Delete { app, yes } => commands::delete(&app, yes).await.and(ok),
        Command::Run(args) => follow::run(args).await,
        Command::Runs(args) => commands::runs(args).await.and(ok),
        Command::Status(args) => commands::status(&args.run, args.json).await.and(ok),
        Command::Logs(args) => follow::logs(args).await,
        Command::Cancel { run } => commands::cancel(&run).await.and(ok),
        Command::Output(args) => commands::output(args).await.and(ok),
        Command::Whoami => commands::whoami().await.and(ok),
        Command::Shim { run_dir } => {
            let code = wharf_runtime::shim_main(&run_dir);
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
    }
}
