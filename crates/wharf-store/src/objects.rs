//! Buckets, object metadata and multipart uploads.
//!
//! Blob bytes live elsewhere (wharf-objects); a row names its blob. Every change of an
//! object writes its event in the same transaction (the outbox, see [`crate::events`]),
//! and a blob that lost its last reference is recorded in `blob_garbage` in that same
//! transaction, so a crash never leaks a reference nor deletes bytes still in use.

use sqlx::{Sqlite, Transaction};

use crate::events::{insert_event_in, NewEvent};
use crate::{now_millis, Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Bucket {
    pub name: String,
    pub owner_id: String,
    pub public_read: bool,
    pub created_at: i64,
}

/// The metadata of one object.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ObjectRow {
    pub bucket: String,
    pub key: String,
    /// A blob id, or for completed multipart uploads a JSON list of `[blob id, size]`.
    pub blob_id: String,
    pub size: i64,
    /// Without quotes: the hex MD5 of a single PUT, `HEX-N` for multipart uploads.
    pub etag: String,
    pub content_type: Option<String>,
    /// JSON object of user metadata (`x-amz-meta-*` without the prefix).
    pub metadata: String,
    pub parts_count: Option<i64>,
    pub last_modified: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MultipartUploadRow {
    pub id: String,
    pub bucket: String,
    pub key: String,
    pub content_type: Option<String>,
    pub metadata: String,
    pub initiator: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PartRow {
    pub upload_id: String,
    pub part_number: i64,
    pub blob_id: String,
    pub size: i64,
    pub etag: String,
    pub created_at: i64,
}

const OBJECT_COLUMNS: &str =
    "bucket, key, blob_id, size, etag, content_type, metadata, parts_count, last_modified";
const UPLOAD_COLUMNS: &str = "id, bucket, key, content_type, metadata, initiator, created_at";

/// The blob ids a stored `blob_id` refers to (one, or each part of a multipart object).
pub fn blob_ids(stored: &str) -> Vec<String> {
    if stored.starts_with('[') {
        serde_json::from_str::<Vec<(String, i64)>>(stored)
            .map(|parts| parts.into_iter().map(|(id, _)| id).collect())
            .unwrap_or_default()
    } else {
        vec![stored.to_owned()]
    }
}

/// The smallest string greater than every string starting with `prefix` (byte order of
/// UTF-8 is code point order), or None when there is none (empty prefix).
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(next) = char::from_u32(next) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

async fn garbage_in(tx: &mut Transaction<'_, Sqlite>, stored_blob: &str) -> StoreResult<()> {
    let now = now_millis();
    for id in blob_ids(stored_blob) {
        sqlx::query(
            "INSERT INTO blob_garbage (blob_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn find_object_in(
    tx: &mut Transaction<'_, Sqlite>,
    bucket: &str,
    key: &str,
) -> StoreResult<Option<ObjectRow>> {
    Ok(sqlx::query_as::<_, ObjectRow>(&format!(
        "SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = $1 AND key = $2"
    ))
    .bind(bucket)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?)
}

async fn upsert_object_in(tx: &mut Transaction<'_, Sqlite>, row: &ObjectRow) -> StoreResult<()> {
    if let Some(old) = find_object_in(tx, &row.bucket, &row.key).await? {
        if old.blob_id != row.blob_id {
            garbage_in(tx, &old.blob_id).await?;
        }
    }
    sqlx::query(
        "INSERT INTO objects (bucket, key, blob_id, size, etag, content_type, metadata,
             parts_count, last_modified)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (bucket, key) DO UPDATE SET blob_id = excluded.blob_id,
             size = excluded.size, etag = excluded.etag, content_type = excluded.content_type,
             metadata = excluded.metadata, parts_count = excluded.parts_count,
             last_modified = excluded.last_modified",
    )
    .bind(&row.bucket)
    .bind(&row.key)
    .bind(&row.blob_id)
    .bind(row.size)
    .bind(&row.etag)
    .bind(&row.content_type)
    .bind(&row.metadata)
    .bind(row.parts_count)
    .bind(row.last_modified)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    pub async fn create_bucket(&self, bucket: &Bucket) -> StoreResult<()> {
        let done = sqlx::query(
            "INSERT INTO buckets (name, owner_id, public_read, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(&bucket.name)
        .bind(&bucket.owner_id)
        .bind(bucket.public_read)
        .bind(bucket.created_at)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "bucket \"{}\" already exists",
                bucket.name
            )));
        }
        Ok(())
    }

    pub async fn find_bucket(&self, name: &str) -> StoreResult<Option<Bucket>> {
        Ok(sqlx::query_as::<_, Bucket>(
            "SELECT name, owner_id, public_read, created_at FROM buckets WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn list_buckets(&self) -> StoreResult<Vec<Bucket>> {
        Ok(sqlx::query_as::<_, Bucket>(
            "SELECT name, owner_id, public_read, created_at FROM buckets ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn set_bucket_public_read(&self, name: &str, public_read: bool) -> StoreResult<()> {
        let done = sqlx::query("UPDATE buckets SET public_read = $1 WHERE name = $2")
            .bind(public_read)
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "bucket \"{name}\" does not exist"
            )));
        }
        Ok(())
    }

    /// Deletes an empty bucket. A bucket with objects or unfinished multipart uploads is
    /// a conflict.
    pub async fn delete_bucket(&self, name: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let objects: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM objects WHERE bucket = $1 LIMIT 1) AS o",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let uploads: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM multipart_uploads WHERE bucket = $1 LIMIT 1) AS u",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        if objects > 0 || uploads > 0 {
            return Err(StoreError::Conflict(format!(
                "bucket \"{name}\" is not empty; delete its objects{} first",
                if uploads > 0 {
                    " and abort its multipart uploads"
                } else {
                    ""
                }
            )));
        }
        let done = sqlx::query("DELETE FROM buckets WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "bucket \"{name}\" does not exist"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn find_object(&self, bucket: &str, key: &str) -> StoreResult<Option<ObjectRow>> {
        Ok(sqlx::query_as::<_, ObjectRow>(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = $1 AND key = $2"
        ))
        .bind(bucket)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Writes an object's metadata (replacing any previous version, whose blob becomes
    /// garbage) and its event, in one transaction. Returns the event's sequence number.
    pub async fn put_object(&self, row: &ObjectRow, event: &NewEvent) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        upsert_object_in(&mut tx, row).await?;
        let seq = insert_event_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Deletes an object and writes its event, in one transaction; None (and no event)
    /// when there was no such object.
    pub async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        event: &NewEvent,
    ) -> StoreResult<Option<ObjectRow>> {
        let mut tx = self.begin_write().await?;
        let Some(old) = find_object_in(&mut tx, bucket, key).await? else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM objects WHERE bucket = $1 AND key = $2")
            .bind(bucket)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        garbage_in(&mut tx, &old.blob_id).await?;
        insert_event_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(Some(old))
    }

    /// Objects of `bucket` whose key starts with `prefix` and sorts after `lower` (or at
    /// it, when `inclusive`), in key order: one index range scan with a single lower and
    /// a plain upper bound, so SQLite starts at the right key and stops at the prefix's end.
    pub async fn list_objects_from(
        &self,
        bucket: &str,
        prefix: &str,
        lower: &str,
        inclusive: bool,
        limit: i64,
    ) -> StoreResult<Vec<ObjectRow>> {
        let (lower, inclusive) = if lower >= prefix {
            (lower, inclusive)
        } else {
            (prefix, true)
        };
        let comparison = if inclusive { ">=" } else { ">" };
        let upper = prefix_upper_bound(prefix);
        let upper_clause = if upper.is_some() { "AND key < $3" } else { "" };
        let limit_slot = if upper.is_some() { "$4" } else { "$3" };
        let sql = format!(
            "SELECT {OBJECT_COLUMNS} FROM objects
             WHERE bucket = $1 AND key {comparison} $2 {upper_clause}
             ORDER BY key LIMIT {limit_slot}"
        );
        let mut query = sqlx::query_as::<_, ObjectRow>(&sql)
            .bind(bucket)
            .bind(lower);
        if let Some(upper) = upper {
            query = query.bind(upper);
        }
        Ok(query.bind(limit).fetch_all(&self.pool).await?)
    }

    pub async fn create_multipart_upload(&self, row: &MultipartUploadRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO multipart_uploads (id, bucket, key, content_type, metadata, initiator,
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(&row.bucket)
        .bind(&row.key)
        .bind(&row.content_type)
        .bind(&row.metadata)
        .bind(&row.initiator)
        .bind(row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn find_multipart_upload(&self, id: &str) -> StoreResult<Option<MultipartUploadRow>> {
        Ok(sqlx::query_as::<_, MultipartUploadRow>(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM multipart_uploads WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Unfinished uploads of a bucket in (key, id) order, after the given markers.
    pub async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        upload_id_marker: &str,
        limit: i64,
    ) -> StoreResult<Vec<MultipartUploadRow>> {
        let upper = prefix_upper_bound(prefix);
        Ok(sqlx::query_as::<_, MultipartUploadRow>(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM multipart_uploads
             WHERE bucket = $1 AND key >= $2 AND ($3 IS NULL OR key < $3)
               AND (key > $4 OR (key = $4 AND id > $5))
             ORDER BY key, id LIMIT $6"
        ))
        .bind(bucket)
        .bind(prefix)
        .bind(upper)
        .bind(key_marker)
        .bind(upload_id_marker)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a part (replacing an earlier upload of the same number, whose blob becomes
    /// garbage). False when the upload no longer exists (the blob is then garbage too).
    pub async fn put_part(&self, part: &PartRow) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM multipart_uploads WHERE id = $1")
                .bind(&part.upload_id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            garbage_in(&mut tx, &part.blob_id).await?;
            tx.commit().await?;
            return Ok(false);
        }
        let old: Option<String> = sqlx::query_scalar(
            "SELECT blob_id FROM multipart_parts WHERE upload_id = $1 AND part_number = $2",
        )
        .bind(&part.upload_id)
        .bind(part.part_number)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(old) = old {
            garbage_in(&mut tx, &old).await?;
        }
        sqlx::query(
            "INSERT INTO multipart_parts (upload_id, part_number, blob_id, size, etag, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (upload_id, part_number) DO UPDATE SET blob_id = excluded.blob_id,
                 size = excluded.size, etag = excluded.etag, created_at = excluded.created_at",
        )
        .bind(&part.upload_id)
        .bind(part.part_number)
        .bind(&part.blob_id)
        .bind(part.size)
        .bind(&part.etag)
        .bind(part.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn list_parts(
        &self,
        upload_id: &str,
        after_part: i64,
        limit: i64,
    ) -> StoreResult<Vec<PartRow>> {
        Ok(sqlx::query_as::<_, PartRow>(
            "SELECT upload_id, part_number, blob_id, size, etag, created_at FROM multipart_parts
             WHERE upload_id = $1 AND part_number > $2 ORDER BY part_number LIMIT $3",
        )
        .bind(upload_id)
        .bind(after_part)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Completes a multipart upload: the object (made of the parts named in its
    /// `blob_id`) replaces any previous one, parts not used become garbage, the upload
    /// disappears and the event is written, in one transaction. False when the upload
    /// does not exist (any more).
    pub async fn complete_multipart_upload(
        &self,
        upload_id: &str,
        row: &ObjectRow,
        event: &NewEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let parts: Vec<String> =
            sqlx::query_scalar("SELECT blob_id FROM multipart_parts WHERE upload_id = $1")
                .bind(upload_id)
                .fetch_all(&mut *tx)
                .await?;
        let done = sqlx::query("DELETE FROM multipart_uploads WHERE id = $1")
            .bind(upload_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let used = blob_ids(&row.blob_id);
        for part in parts.iter().filter(|part| !used.contains(part)) {
            garbage_in(&mut tx, part).await?;
        }
        sqlx::query("DELETE FROM multipart_parts WHERE upload_id = $1")
            .bind(upload_id)
            .execute(&mut *tx)
            .await?;
        upsert_object_in(&mut tx, row).await?;
        insert_event_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Aborts an upload; its parts become garbage. False when there was no such upload.
    pub async fn abort_multipart_upload(&self, upload_id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let parts: Vec<String> =
            sqlx::query_scalar("SELECT blob_id FROM multipart_parts WHERE upload_id = $1")
                .bind(upload_id)
                .fetch_all(&mut *tx)
                .await?;
        for part in &parts {
            garbage_in(&mut tx, part).await?;
        }
        sqlx::query("DELETE FROM multipart_parts WHERE upload_id = $1")
            .bind(upload_id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM multipart_uploads WHERE id = $1")
            .bind(upload_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records blobs that are not referenced (e.g. written for a request that then failed).
    pub async fn add_blob_garbage(&self, blob_id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        garbage_in(&mut tx, blob_id).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn blob_garbage(&self, limit: i64) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT blob_id FROM blob_garbage ORDER BY created_at LIMIT $1")
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn forget_blob_garbage(&self, blob_id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM blob_garbage WHERE blob_id = $1")
            .bind(blob_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every blob id referenced by an object or a part (the orphan sweep at start-up).
    pub async fn referenced_blob_ids(&self) -> StoreResult<std::collections::HashSet<String>> {
        let mut ids = std::collections::HashSet::new();
        let objects: Vec<String> = sqlx::query_scalar("SELECT blob_id FROM objects")
            .fetch_all(&self.pool)
            .await?;
        for stored in objects {
            ids.extend(blob_ids(&stored));
        }
        let parts: Vec<String> = sqlx::query_scalar("SELECT blob_id FROM multipart_parts")
            .fetch_all(&self.pool)
            .await?;
        ids.extend(parts);
        Ok(ids)
    }
}
