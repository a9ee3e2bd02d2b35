//! All SQL of Wharf lives here.
//!
//! The store is SQLite (embedded, WAL) today; every statement is written portably
//! (`$1` placeholders, TEXT/BIGINT columns, application-made ids, unix-millisecond times)
//! so a PostgreSQL backend can share it. Repositories are grouped per concept:
//! [`users`], [`apps`], [`runs`], [`objects`] (buckets, objects, multipart uploads),
//! [`events`] (the outbox), [`s3_keys`] and [`git`] (git-backed apps' sources).

pub mod apps;
pub mod events;
pub mod git;
pub mod invocations;
pub mod notifications;
pub mod objects;
pub mod replicas;
pub mod runs;
pub mod s3_keys;
pub mod schedules;
pub mod secrets;
pub mod sessions;
pub mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use crate::apps::{App, AppVersion, NewVersion};
pub use crate::events::{EventRow, NewEvent};
pub use crate::git::GitSource;
pub use crate::invocations::{
    CallOutcome, CallbackOutcome, FinishedCall, Invocation, InvocationAttempt, NewInvocation,
};
pub use crate::notifications::{DeliveryAttempt, NewNotification, Notification, NotificationState};
pub use crate::objects::{Bucket, MultipartUploadRow, ObjectRow, PartRow};
pub use crate::replicas::{ReplicaEnd, ReplicaRow};
pub use crate::runs::{NewRun, Run, RunOutcome};
pub use crate::s3_keys::S3Key;
pub use crate::schedules::{ScheduleAdvance, ScheduleState};
pub use crate::secrets::SecretInfo;
pub use crate::sessions::{SessionRow, UserListing};
pub use crate::users::{ApiToken, User};

/// Errors of the store. Callers map them to user-facing errors; none carries SQL text
/// to the user.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// A row referred to another that does not exist (e.g. an object in a deleted bucket).
    pub fn is_foreign_key_violation(&self) -> bool {
        match self {
            StoreError::Database(error) => error
                .as_database_error()
                .is_some_and(|db| db.is_foreign_key_violation()),
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The metadata store. Cheap to clone (a connection pool inside).
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies the embedded
    /// migrations.
    pub async fn open_sqlite(path: &Path) -> StoreResult<Store> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // WAL lets readers run beside the one writer; four connections (each a thread with
        // its own page cache) keep a small server's memory down, and queries take well
        // under a millisecond.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Opens an in-memory database (tests).
    pub async fn open_in_memory() -> StoreResult<Store> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store { pool })
    }

    /// A transaction that takes the write lock at once (`BEGIN IMMEDIATE`): one that
    /// reads first and writes later would otherwise fail with SQLITE_BUSY_SNAPSHOT when
    /// another connection commits in between, which a busy timeout cannot cure.
    pub(crate) async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'_, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Answers when the database answers a trivial query (readiness).
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Current time as unix milliseconds, the representation of every stored time.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Converts stored unix milliseconds to a UTC timestamp.
pub fn millis_to_utc(millis: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default()
}
