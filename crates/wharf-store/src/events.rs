//! The event outbox: events in EventBridge shape, written in the same transaction as the
//! change they describe, dispatched (turned into runs) at least once, kept for the
//! retention period.

use sqlx::{Sqlite, Transaction};

use crate::{Store, StoreResult};

/// An event to store. `body` is the whole EventBridge-shaped JSON document.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub id: String,
    pub source: String,
    pub detail_type: String,
    pub body: serde_json::Value,
    pub created_at: i64,
}

/// A stored event. `seq` orders all events; it is also the S3 `sequencer`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    pub source: String,
    pub detail_type: String,
    pub body: String,
    pub created_at: i64,
    pub dispatched_at: Option<i64>,
}

impl EventRow {
    /// The event as JSON, with `detail.object.sequencer` filled in from `seq` for object
    /// events that have none (zero-padded hex, so later events sort after earlier ones,
    /// as in S3).
    pub fn to_json(&self) -> serde_json::Value {
        let mut value: serde_json::Value =
            serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null);
        if let Some(object) = value
            .get_mut("detail")
            .and_then(|detail| detail.get_mut("object"))
            .and_then(serde_json::Value::as_object_mut)
        {
            // Events from elsewhere (an external bucket's notification) keep theirs.
            object
                .entry("sequencer")
                .or_insert_with(|| serde_json::Value::String(format!("{:016X}", self.seq)));
        }
        value
    }
}

const EVENT_COLUMNS: &str = "seq, id, source, detail_type, body, created_at, dispatched_at";

pub(crate) async fn insert_event_in(
    tx: &mut Transaction<'_, Sqlite>,
    event: &NewEvent,
) -> StoreResult<i64> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (id, source, detail_type, body, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING seq",
    )
    .bind(&event.id)
    .bind(&event.source)
    .bind(&event.detail_type)
    .bind(event.body.to_string())
    .bind(event.created_at)
    .fetch_one(&mut **tx)
    .await?;
    Ok(seq)
}

impl Store {
    /// Stores an event on its own (events that describe no stored change, such as an
    /// external bucket's notification). Returns its sequence number; an event whose id is
    /// already stored is not stored again (returns the existing one's).
    pub async fn insert_event(&self, event: &NewEvent) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        let existing: Option<i64> = sqlx::query_scalar("SELECT seq FROM events WHERE id = $1")
            .bind(&event.id)
            .fetch_optional(&mut *tx)
            .await?;
        let seq = match existing {
            Some(seq) => seq,
            None => insert_event_in(&mut tx, event).await?,
        };
        tx.commit().await?;
        Ok(seq)
    }

    /// Events not dispatched yet, oldest first.
    pub async fn undispatched_events(&self, limit: i64) -> StoreResult<Vec<EventRow>> {
        Ok(sqlx::query_as::<_, EventRow>(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE dispatched_at IS NULL ORDER BY seq LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn mark_events_dispatched(&self, seqs: &[i64], at: i64) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for seq in seqs {
            sqlx::query("UPDATE events SET dispatched_at = $1 WHERE seq = $2")
                .bind(at)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn find_event(&self, id: &str) -> StoreResult<Option<EventRow>> {
        Ok(sqlx::query_as::<_, EventRow>(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Events after `after_seq` in order; `newest` lists the latest `limit` instead
    /// (still returned oldest first).
    pub async fn list_events(
        &self,
        after_seq: i64,
        limit: i64,
        newest: bool,
    ) -> StoreResult<Vec<EventRow>> {
        let order = if newest { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq {order} LIMIT $2"
        );
        let mut rows = sqlx::query_as::<_, EventRow>(&sql)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        if newest {
            rows.reverse();
        }
        Ok(rows)
    }

    /// Deletes dispatched events created before `before` (retention); returns how many.
    pub async fn delete_events_before(&self, before: i64) -> StoreResult<u64> {
        let done =
            sqlx::query("DELETE FROM events WHERE created_at < $1 AND dispatched_at IS NOT NULL")
                .bind(before)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}
