//! Object events in EventBridge shape (the same document Amazon EventBridge delivers for
//! S3, with `source = "wharf.s3"`).

use wharf_store::NewEvent;

/// The event source of Wharf's own buckets.
pub const SOURCE: &str = "wharf.s3";
pub const OBJECT_CREATED: &str = "Object Created";
pub const OBJECT_DELETED: &str = "Object Deleted";

/// Why an object changed (`detail.reason`), as S3 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    PutObject,
    CompleteMultipartUpload,
    CopyObject,
    DeleteObject,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PutObject => "PutObject",
            Reason::CompleteMultipartUpload => "CompleteMultipartUpload",
            Reason::CopyObject => "CopyObject",
            Reason::DeleteObject => "DeleteObject",
        }
    }
}

fn envelope(
    id: &str,
    detail_type: &str,
    bucket: &str,
    now_millis: i64,
    detail: serde_json::Value,
) -> serde_json::Value {
    let time =
        wharf_store::millis_to_utc(now_millis).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    serde_json::json!({
        "version": "0",
        "id": id,
        "detail-type": detail_type,
        "source": SOURCE,
        "account": "wharf",
        "time": time,
        "region": "wharf",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": detail,
    })
}

pub fn new_event_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

/// `Object Created`. The `sequencer` is added when the event is read (it is the event's
/// position in the outbox).
pub fn object_created(
    bucket: &str,
    key: &str,
    size: i64,
    etag: &str,
    reason: Reason,
    requester: &str,
    now_millis: i64,
) -> NewEvent {
    let id = new_event_id();
    let detail = serde_json::json!({
        "version": "0",
        "bucket": {"name": bucket},
        "object": {"key": key, "size": size, "etag": etag},
        "request-id": id,
        "requester": requester,
        "reason": reason.as_str(),
    });
    NewEvent {
        body: envelope(&id, OBJECT_CREATED, bucket, now_millis, detail),
        id,
        source: SOURCE.into(),
        detail_type: OBJECT_CREATED.into(),
        created_at: now_millis,
    }
}

/// `Object Deleted`.
pub fn object_deleted(
    bucket: &str,
    key: &str,
    etag: &str,
    requester: &str,
    now_millis: i64,
) -> NewEvent {
    let id = new_event_id();
    let detail = serde_json::json!({
        "version": "0",
        "bucket": {"name": bucket},
        "object": {"key": key, "etag": etag},
        "request-id": id,
        "requester": requester,
        "reason": Reason::DeleteObject.as_str(),
        "deletion-type": "Permanently Deleted",
    });
    NewEvent {
        body: envelope(&id, OBJECT_DELETED, bucket, now_millis, detail),
        id,
        source: SOURCE.into(),
        detail_type: OBJECT_DELETED.into(),
        created_at: now_millis,
    }
}
