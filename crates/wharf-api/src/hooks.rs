//! `POST /hooks/s3`: bucket notifications of another S3 server (Amazon S3 through SNS or a
//! webhook, MinIO's webhook target) stored as events in Amazon EventBridge's S3 shape
//! (`source = "aws.s3"`), so triggers written for EventBridge match them unchanged.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wharf_store::NewEvent;

use crate::auth::Caller;
use crate::dto::{ErrorBody, HookResult};
use crate::{ApiError, ApiResult, ApiState};

/// The source of events received from other S3 servers, as Amazon EventBridge names it.
pub const SOURCE: &str = "aws.s3";

/// Stores the records of an S3 or MinIO bucket notification as events. A redelivered
/// notification is stored once: an event's id is a hash of the bucket, key, sequencer
/// (or ETag) and event name.
#[utoipa::path(post, path = "/api/v1/hooks/s3",
    request_body(content = Object, description = "an S3 bucket notification: {\"Records\": [...]}, MinIO's webhook body, or an SNS notification wrapping one"),
    responses((status = 200, body = HookResult),
        (status = 400, body = ErrorBody, description = "the body is not a notification; the message names the field")))]
pub async fn s3_hook(
    _caller: Caller,
    State(state): State<ApiState>,
    body: Bytes,
) -> ApiResult<Json<HookResult>> {
    let now = wharf_store::now_millis();
    let records = notification_events(&body, now).map_err(ApiError::bad_request)?;
    let store = state.control.store();
    let mut result = HookResult {
        received: records.len(),
        stored: 0,
        duplicates: 0,
        ignored: 0,
        event_ids: Vec::new(),
    };
    for record in records {
        let Some(event) = record else {
            result.ignored += 1;
            continue;
        };
        if store.find_event(&event.id).await?.is_some() {
            result.duplicates += 1;
        } else {
            store.insert_event(&event).await?;
            result.stored += 1;
        }
        result.event_ids.push(event.id);
    }
    if result.stored > 0 {
        state.control.objects().announce_events();
        tracing::info!(
            stored = result.stored,
            duplicates = result.duplicates,
            "Stored events from an S3 bucket notification."
        );
    }
    Ok(Json(result))
}

/// What an S3 event name means in EventBridge's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Change {
    detail_type: &'static str,
    reason: &'static str,
    deletion_type: Option<&'static str>,
}

fn change_for(event_name: &str) -> Option<Change> {
    let name = event_name.strip_prefix("s3:").unwrap_or(event_name);
    let created = |reason| {
        Some(Change {
            detail_type: "Object Created",
            reason,
            deletion_type: None,
        })
    };
    let deleted = |deletion_type| {
        Some(Change {
            detail_type: "Object Deleted",
            reason: "DeleteObject",
            deletion_type: Some(deletion_type),
        })
    };
    match name {
        "ObjectCreated:Put" => created("PutObject"),
        "ObjectCreated:Post" => created("POST Object"),
        "ObjectCreated:Copy" => created("CopyObject"),
        "ObjectCreated:CompleteMultipartUpload" => created("CompleteMultipartUpload"),
        "ObjectRemoved:Delete" => deleted("Permanently Deleted"),
        "ObjectRemoved:DeleteMarkerCreated" => deleted("Delete Marker Created"),
        _ => None,
    }
}

/// The events of a notification body, one per record in order; None for a record of a
/// kind that is not stored (reads, tagging, restores...). An error names the problem.
pub(crate) fn notification_events(
    body: &[u8],
    now_millis: i64,
) -> Result<Vec<Option<NewEvent>>, String> {
    let mut document: Value = serde_json::from_slice(body).map_err(|error| {
        format!("the body is not JSON ({error}); send an S3 bucket notification")
    })?;
    // Amazon S3 → SNS → HTTPS wraps the notification in an SNS message.
    if document.get("Type").and_then(Value::as_str) == Some("Notification") {
        let message = document
            .get("Message")
            .and_then(Value::as_str)
            .ok_or("the SNS notification has no Message string")?;
        document = serde_json::from_str(message)
            .map_err(|error| format!("the SNS notification's Message is not JSON ({error})"))?;
    }
    if !document.is_object() {
        return Err("the body must be a JSON object like {\"Records\": [...]}".into());
    }
    // The test message S3 sends when notifications are configured.
    if document.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let records = match document.get("Records") {
        Some(Value::Array(records)) => records,
        Some(_) => return Err("Records is not an array".into()),
        None => {
            return Err(
                "the body has no Records array; send an S3 or MinIO bucket notification \
                 ({\"Records\": [{\"eventName\": ..., \"s3\": {...}}]})"
                    .into(),
            )
        }
    };
    records
        .iter()
        .enumerate()
        .map(|(index, record)| record_event(index, record, now_millis))
        .collect()
}

/// A field of a record, read by its path, with errors that name `Records[i].path`.
struct Field<'a> {
    index: usize,
    record: &'a Value,
}

impl<'a> Field<'a> {
    fn get(&self, path: &str) -> Option<&'a Value> {
        path.split('.')
            .try_fold(self.record, |value, name| value.get(name))
            .filter(|value| !value.is_null())
    }

    fn name(&self, path: &str) -> String {
        format!("Records[{}].{path}", self.index)
    }

    fn optional_str(&self, path: &str) -> Result<Option<&'a str>, String> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(format!("{} is not a string", self.name(path))),
        }
    }

    fn required_str(&self, path: &str) -> Result<&'a str, String> {
        match self.optional_str(path)? {
            Some(text) if !text.is_empty() => Ok(text),
            Some(_) => Err(format!("{} is empty", self.name(path))),
            None => Err(format!("{} is missing", self.name(path))),
        }
    }
}

fn record_event(index: usize, record: &Value, now_millis: i64) -> Result<Option<NewEvent>, String> {
    if !record.is_object() {
        return Err(format!("Records[{index}] is not an object"));
    }
    let field = Field { index, record };
    let event_name = field.required_str("eventName")?;
    let Some(change) = change_for(event_name) else {
        return Ok(None);
    };
    let bucket = field.required_str("s3.bucket.name")?;
    let raw_key = field.required_str("s3.object.key")?;
    let key = url_decode(raw_key).ok_or_else(|| {
        format!(
            "{} {raw_key:?} is not URL-encoded UTF-8 (S3 notifications URL-encode keys)",
            field.name("s3.object.key")
        )
    })?;
    let size = match field.get("s3.object.size") {
        None => None,
        Some(value) => Some(value.as_u64().ok_or_else(|| {
            format!(
                "{} is not a whole number of bytes",
                field.name("s3.object.size")
            )
        })?),
    };
    let etag = match field.optional_str("s3.object.eTag")? {
        Some(etag) => Some(etag),
        None => field.optional_str("s3.object.etag")?,
    }
    .map(|etag| etag.trim_matches('"').to_owned());
    let sequencer = field.optional_str("s3.object.sequencer")?;
    let version_id = field.optional_str("s3.object.versionId")?;
    let event_time = field.optional_str("eventTime")?;
    let time = match event_time {
        None => wharf_store::millis_to_utc(now_millis),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|_| {
                format!(
                    "{} {text:?} is not an RFC 3339 time",
                    field.name("eventTime")
                )
            })?
            .with_timezone(&chrono::Utc),
    };
    let requester = field
        .optional_str("userIdentity.principalId")?
        .unwrap_or_default();
    let region = field
        .optional_str("awsRegion")?
        .filter(|region| !region.is_empty())
        .unwrap_or("wharf");

    let marker = sequencer
        .or(etag.as_deref())
        .or(event_time)
        .unwrap_or_default();
    let id = event_id(&[bucket, &key, marker, event_name]);
    let mut object = json!({"key": key});
    if let Some(size) = size {
        object["size"] = json!(size);
    }
    if let Some(etag) = &etag {
        object["etag"] = json!(etag);
    }
    if let Some(sequencer) = sequencer {
        object["sequencer"] = json!(sequencer);
    }
    if let Some(version_id) = version_id {
        object["version-id"] = json!(version_id);
    }
    let mut detail = json!({
        "version": "0",
        "bucket": {"name": bucket},
        "object": object,
        "request-id": field.optional_str("responseElements.x-amz-request-id")?.unwrap_or_default(),
        "requester": requester,
        "reason": change.reason,
    });
    if let Some(ip) = field.optional_str("requestParameters.sourceIPAddress")? {
        detail["source-ip-address"] = json!(ip);
    }
    if let Some(deletion_type) = change.deletion_type {
        detail["deletion-type"] = json!(deletion_type);
    }
    let body = json!({
        "version": "0",
        "id": id,
        "detail-type": change.detail_type,
        "source": SOURCE,
        "account": "wharf",
        "time": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": region,
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": detail,
    });
    Ok(Some(NewEvent {
        id,
        source: SOURCE.into(),
        detail_type: change.detail_type.into(),
        body,
        created_at: now_millis,
    }))
}

/// A deterministic id in UUID form from the parts that identify one change.
fn event_id(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hex::encode(&hasher.finalize()[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &digest[0..8],
        &digest[8..12],
        &digest[12..16],
        &digest[16..20],
        &digest[20..32]
    )
}

/// Decodes an S3 notification key: `+` is a space, `%XX` a byte; None when an escape is
/// broken or the bytes are not UTF-8.
fn url_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(at + 1..at + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                at += 2;
            }
            byte => out.push(byte),
        }
        at += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event_name: &str, key: &str) -> Value {
        json!({
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2024-05-01T12:30:45.123Z",
            "eventName": event_name,
            "userIdentity": {"principalId": "minioadmin"},
            "requestParameters": {"sourceIPAddress": "10.0.0.7"},
            "responseElements": {"x-amz-request-id": "17C4"},
            "s3": {
                "bucket": {"name": "input", "arn": "arn:aws:s3:::input"},
                "object": {"key": key, "size": 12, "eTag": "\"0a1b\"", "sequencer": "17C4A1"},
            },
        })
    }

    fn events(body: Value) -> Vec<Option<NewEvent>> {
        notification_events(body.to_string().as_bytes(), 0).expect("a valid notification")
    }

    fn check_error(body: &str, expect: &str) {
        match notification_events(body.as_bytes(), 0) {
            Ok(events) => panic!("{body} was accepted: {events:?}"),
            Err(message) => assert!(
                message.contains(expect),
                "{body}: {message:?} does not contain {expect:?}"
            ),
        }
    }

    #[test]
    fn malformed_bodies_are_named() {
        check_error("not json", "not JSON");
        check_error("[]", "JSON object");
        check_error("{}", "no Records array");
        check_error(r#"{"Records": {}}"#, "Records is not an array");
        check_error(r#"{"Records": [1]}"#, "Records[0] is not an object");
        check_error(r#"{"Records": [{}]}"#, "Records[0].eventName is missing");
        check_error(
            r#"{"Records": [{"eventName": 5}]}"#,
            "Records[0].eventName is not a string",
        );
        let good = record("s3:ObjectCreated:Put", "a");
        let mut no_key = record("s3:ObjectCreated:Put", "a");
        no_key["s3"]["object"]
            .as_object_mut()
            .expect("object")
            .remove("key");
        check_error(
            &json!({"Records": [good.clone(), good.clone(), no_key]}).to_string(),
            "Records[2].s3.object.key is missing",
        );
        let mut no_bucket = good.clone();
        no_bucket["s3"]["bucket"]["name"] = json!("");
        check_error(
            &json!({"Records": [no_bucket]}).to_string(),
            "Records[0].s3.bucket.name is empty",
        );
        let mut bad_size = good.clone();
        bad_size["s3"]["object"]["size"] = json!(-1);
        check_error(
            &json!({"Records": [bad_size]}).to_string(),
            "Records[0].s3.object.size is not a whole number",
        );
        let mut bad_time = good.clone();
        bad_time["eventTime"] = json!("yesterday");
        check_error(
            &json!({"Records": [bad_time]}).to_string(),
            "Records[0].eventTime \"yesterday\" is not an RFC 3339 time",
        );
        check_error(
            &json!({"Records": [record("s3:ObjectCreated:Put", "bad%zzescape")]}).to_string(),
            "Records[0].s3.object.key \"bad%zzescape\" is not URL-encoded",
        );
    }

    #[test]
    fn event_names_map_to_eventbridge_types() {
        let check = |name: &str, expect: Option<(&str, &str)>| {
            let found = change_for(name).map(|change| (change.detail_type, change.reason));
            assert_eq!(found, expect, "{name}");
        };
        check(
            "s3:ObjectCreated:Put",
            Some(("Object Created", "PutObject")),
        );
        check("ObjectCreated:Put", Some(("Object Created", "PutObject")));
        check(
            "s3:ObjectCreated:Post",
            Some(("Object Created", "POST Object")),
        );
        check(
            "s3:ObjectCreated:Copy",
            Some(("Object Created", "CopyObject")),
        );
        check(
            "s3:ObjectCreated:CompleteMultipartUpload",
            Some(("Object Created", "CompleteMultipartUpload")),
        );
        check(
            "s3:ObjectRemoved:Delete",
            Some(("Object Deleted", "DeleteObject")),
        );
        check(
            "s3:ObjectRemoved:DeleteMarkerCreated",
            Some(("Object Deleted", "DeleteObject")),
        );
        check("s3:ObjectAccessed:Get", None);
        check("s3:ObjectCreated:PutTagging", None);
        check("", None);
    }

    #[test]
    fn keys_are_url_decoded() {
        let check = |raw: &str, expect: Option<&str>| {
            assert_eq!(url_decode(raw).as_deref(), expect, "{raw}");
        };
        check("plain.csv", Some("plain.csv"));
        check("a+b", Some("a b"));
        check("dir%2Fx%20y.csv", Some("dir/x y.csv"));
        check("caf%C3%A9", Some("café"));
        check("100%25", Some("100%"));
        check("%", None);
        check("%4", None);
        check("%zz", None);
        check("%FF", None);
    }

    #[test]
    fn a_minio_body_becomes_an_eventbridge_event() {
        let body = json!({
            "EventName": "s3:ObjectCreated:Put",
            "Key": "input/dir/x y.csv",
            "Records": [record("s3:ObjectCreated:Put", "dir%2Fx+y.csv")],
        });
        let found = events(body);
        let event = found[0].as_ref().expect("stored");
        assert_eq!(event.source, "aws.s3");
        assert_eq!(event.detail_type, "Object Created");
        let body = &event.body;
        assert_eq!(body["id"], json!(event.id));
        assert_eq!(body["source"], "aws.s3");
        assert_eq!(body["detail-type"], "Object Created");
        assert_eq!(body["time"], "2024-05-01T12:30:45Z");
        assert_eq!(body["resources"], json!(["arn:aws:s3:::input"]));
        assert_eq!(
            body["detail"],
            json!({
                "version": "0",
                "bucket": {"name": "input"},
                "object": {"key": "dir/x y.csv", "size": 12, "etag": "0a1b", "sequencer": "17C4A1"},
                "request-id": "17C4",
                "requester": "minioadmin",
                "source-ip-address": "10.0.0.7",
                "reason": "PutObject",
            })
        );
    }

    #[test]
    fn ids_are_stable_across_deliveries_and_differ_between_changes() {
        let id = |record: Value| {
            events(json!({ "Records": [record] }))[0]
                .as_ref()
                .expect("stored")
                .id
                .clone()
        };
        let first = id(record("s3:ObjectCreated:Put", "a.csv"));
        assert_eq!(first, id(record("s3:ObjectCreated:Put", "a.csv")));
        assert_eq!(first.len(), 36);
        assert_ne!(first, id(record("s3:ObjectCreated:Put", "b.csv")));
        assert_ne!(first, id(record("s3:ObjectRemoved:Delete", "a.csv")));
        let mut later = record("s3:ObjectCreated:Put", "a.csv");
        later["s3"]["object"]["sequencer"] = json!("17C4A2");
        assert_ne!(first, id(later));
    }

    #[test]
    fn deletes_reads_test_events_and_sns_envelopes() {
        let mut delete = record("s3:ObjectRemoved:Delete", "a.csv");
        let object = delete["s3"]["object"].as_object_mut().expect("object");
        object.remove("size");
        object.remove("eTag");
        let found = events(json!({
            "Records": [delete, record("s3:ObjectAccessed:Get", "a.csv")]
        }));
        assert_eq!(found.len(), 2);
        let deleted = found[0].as_ref().expect("stored");
        assert_eq!(deleted.detail_type, "Object Deleted");
        assert_eq!(
            deleted.body["detail"]["deletion-type"],
            "Permanently Deleted"
        );
        assert_eq!(
            deleted.body["detail"]["object"],
            json!({"key": "a.csv", "sequencer": "17C4A1"})
        );
        assert!(found[1].is_none(), "reads are not stored");

        assert!(events(json!({"Service": "Amazon S3", "Event": "s3:TestEvent"})).is_empty());
        let inner = json!({ "Records": [record("s3:ObjectCreated:Copy", "c")] });
        let wrapped = json!({"Type": "Notification", "Message": inner.to_string()});
        let found = events(wrapped);
        assert_eq!(
            found[0].as_ref().expect("stored").body["detail"]["reason"],
            "CopyObject"
        );
    }
}
