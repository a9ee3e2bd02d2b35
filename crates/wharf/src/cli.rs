//! The command line: every subcommand and what it dispatches to.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::{
    buckets, client, commands, deploy, events, follow, notify, s3cmd, s3ls, schedules, secrets,
    server, services, users,
};

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
    /// Print logs: of a run (RUN id, or a job APP for its latest run), of a service
    /// APP's replicas, or of one REPLICA.
    Logs(LogsArgs),
    /// List a service app's replicas with their state and load.
    Ps {
        app: String,
        /// Include stopped replicas (with how they ended).
        #[arg(long, short)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a queued or running run.
    Cancel { run: String },
    /// List or download the files a run wrote to $WHARF_OUTPUT_DIR.
    Output(OutputArgs),
    /// Print who the stored token belongs to.
    Whoami,
    /// Create, list and delete buckets.
    Bucket {
        #[command(subcommand)]
        command: BucketCommand,
    },
    /// S3 access keys for aws-cli, boto3, paws and other S3 clients.
    S3 {
        #[command(subcommand)]
        command: S3Command,
    },
    /// Copy files to, from and between buckets (s3://BUCKET/KEY).
    Cp(CpArgs),
    /// List buckets, or the objects of s3://BUCKET[/PREFIX].
    Ls(LsArgs),
    /// Print stored events (object changes and bucket notifications).
    Events(EventsArgs),
    /// Notification channels: list them, send a test message, show a run's deliveries.
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
    },
    /// List schedule triggers with their next fire times; pause or resume them.
    Schedules(SchedulesArgs),
    /// Make an app's trigger URL, which starts runs without an API token (shown once).
    TriggerUrl(TriggerUrlArgs),
    /// Local users (admins only): add, list, change a password, delete.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Named secrets that apps receive as environment variables (admins and publishers).
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Call a service app (through the proxy), or queue an asynchronous invocation (--async).
    Invoke(crate::invoke::InvokeArgs),
    /// List a service app's asynchronous invocations: what it was asked and answered.
    Invocations(crate::invoke::InvocationsArgs),
    #[command(name = "__shim", hide = true)]
    Shim { run_dir: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. Without --password-stdin the password is asked twice on a terminal,
    /// or else generated and printed once.
    Add {
        name: String,
        /// admin, publisher or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Read the password from standard input (one trailing newline is removed).
        #[arg(long, conflicts_with = "no_password")]
        password_stdin: bool,
        /// No password: the user cannot log in to the browser pages.
        #[arg(long)]
        no_password: bool,
        #[arg(long)]
        json: bool,
    },
    /// List users with their role, whether they have a password, and live sessions.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password; the user's browser sessions end.
    Passwd {
        name: String,
        /// Read the password from standard input (one trailing newline is removed).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user with its API tokens, sessions and S3 keys.
    #[command(alias = "rm")]
    Delete {
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a secret or replace its value. The value is read from standard input (one
    /// trailing newline removed), typed without echo on a terminal, or taken whole from
    /// --from-file.
    Set {
        name: String,
        #[arg(long)]
        from_file: Option<PathBuf>,
    },
    /// List secrets by name (values are never shown).
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret. One that apps use is kept unless --force (they would fail to start).
    #[command(alias = "rm")]
    Delete {
        name: String,
        /// Delete it even if apps use it.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SchedulesArgs {
    #[command(subcommand)]
    pub command: Option<SchedulesCommand>,
    /// Only this app's schedule triggers.
    #[arg(long)]
    pub app: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Stop an app's schedule triggers from starting runs (all, or one with --trigger).
    Pause(ScheduleTarget),
    /// Start them again; fire times that passed while paused are not run.
    Resume(ScheduleTarget),
}

#[derive(Debug, Args)]
pub struct ScheduleTarget {
    pub app: String,
    /// The trigger's position in the app's [[job.trigger]] list, from 0 (see `wharf schedules`).
    #[arg(long, value_name = "N")]
    pub trigger: Option<i64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TriggerUrlArgs {
    pub app: String,
    /// Replace the app's trigger URL with a new one; the old one stops working.
    #[arg(long)]
    pub rotate: bool,
    #[arg(long)]
    pub json: bool,
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
    #[arg(default_value = ".", conflicts_with = "git")]
    pub dir: PathBuf,
    /// App name; default: `name` in wharf.toml, else the folder's (or repository's) name.
    #[arg(long)]
    pub name: Option<String>,
    /// Deploy from a git repository instead: its files are fetched again at each run start.
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
    /// The branch, tag or commit id to fetch (with --git); default main.
    #[arg(long = "ref", value_name = "REF", requires = "git")]
    pub git_ref: Option<String>,
    /// The app's folder inside the repository (with --git); default its root.
    #[arg(long, value_name = "FOLDER", requires = "git")]
    pub path: Option<String>,
    /// An environment variable holding an HTTPS token (or user:token) for a private repository.
    #[arg(long, value_name = "VAR", requires = "git", conflicts_with_all = ["token_file", "ssh_key"])]
    pub token_env: Option<String>,
    /// A file holding an HTTPS token (or user:token) for a private repository.
    #[arg(
        long,
        value_name = "FILE",
        requires = "git",
        conflicts_with = "ssh_key"
    )]
    pub token_file: Option<PathBuf>,
    /// A file holding an SSH deploy key (private key) for a private repository.
    #[arg(long, value_name = "FILE", requires = "git")]
    pub ssh_key: Option<PathBuf>,
    /// For a service: return at once instead of waiting for a replica of the new version
    /// to be ready.
    #[arg(long)]
    pub no_wait: bool,
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
    /// A run id, an app name (a job's latest run, or a service's replicas), or a replica id.
    pub target: String,
    /// Keep following new lines (until the run ends; for a service, until interrupted).
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

#[derive(Debug, Subcommand)]
pub enum BucketCommand {
    /// Create a bucket.
    Create {
        /// 3 to 63 lowercase letters, digits, '-' and '.'.
        name: String,
        /// Let anyone read its objects without credentials.
        #[arg(long)]
        public_read: bool,
        #[arg(long)]
        json: bool,
    },
    /// List buckets.
    #[command(alias = "list")]
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Turn anonymous read access on or off.
    Set {
        name: String,
        #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
        public_read: bool,
    },
    /// Delete an empty bucket.
    #[command(alias = "delete")]
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum S3Command {
    /// Create, list and revoke your S3 access keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is shown once.
    Create {
        /// What the key is for, e.g. "laptop".
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List your keys (secrets are never shown again).
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key; requests signed with it fail from then on.
    Revoke { access_key: String },
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// A file or folder, s3://BUCKET/KEY.
    pub source: String,
    /// A file or folder, s3://BUCKET/KEY (ending in '/': keep the file name), or '-' for
    /// standard output.
    pub destination: String,
    /// Copy a folder, or every object under a prefix.
    #[arg(long, short)]
    pub recursive: bool,
    /// Files larger than this are uploaded in parts of 16MiB, 4 at a time.
    #[arg(long, default_value = "64MiB", value_name = "SIZE")]
    pub multipart_threshold: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// s3://BUCKET or s3://BUCKET/PREFIX; without it, the buckets.
    pub target: Option<String>,
    /// Every object under the prefix, without grouping by '/'.
    #[arg(long, short)]
    pub recursive: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events as they are stored.
    #[arg(long, short)]
    pub follow: bool,
    /// How many of the newest events to show (1 to 1000).
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: i64,
    /// One JSON object per line: {"seq", "event", "dispatched"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// List the server's notification channels (without their credentials).
    Channels {
        #[arg(long)]
        json: bool,
    },
    /// Send a test message to a channel and report whether it was delivered.
    Test { channel: String },
    /// Show the notifications of a run and how their delivery went.
    Deliveries {
        run: String,
        #[arg(long)]
        json: bool,
    },
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
        Command::Ps { app, all, json } => services::ps(&app, all, json).await.and(ok),
        Command::Cancel { run } => commands::cancel(&run).await.and(ok),
        Command::Output(args) => commands::output(args).await.and(ok),
        Command::Whoami => commands::whoami().await.and(ok),
        Command::Bucket { command } => buckets::bucket(command).await.and(ok),
        Command::S3 {
            command: S3Command::Keys { command },
        } => buckets::keys(command).await.and(ok),
        Command::Cp(args) => s3cmd::cp(args).await.and(ok),
        Command::Ls(args) => s3ls::ls(args).await.and(ok),
        Command::Events(args) => events::events(args).await.and(ok),
        Command::Notify { command } => notify::notify(command).await.and(ok),
        Command::Schedules(args) => schedules::schedules(args).await.and(ok),
        Command::TriggerUrl(args) => schedules::trigger_url(args).await.and(ok),
        Command::User { command } => users::user(command).await.and(ok),
        Command::Secret { command } => secrets::secret(command).await.and(ok),
        Command::Invoke(args) => crate::invoke::invoke(args).await,
        Command::Invocations(args) => crate::invoke::invocations(args).await.and(ok),
        Command::Shim { run_dir } => {
            let code = wharf_runtime::shim_main(&run_dir);
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
    }
}
