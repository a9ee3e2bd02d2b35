//! The event outbox: order, dispatch marks, idempotent external events, retention, and
//! objects written together with their events.

use wharf_store::{Bucket, NewEvent, ObjectRow, Store};

fn event(id: &str, created_at: i64) -> NewEvent {
    NewEvent {
        id: id.into(),
        source: "wharf.s3".into(),
        detail_type: "Object Created".into(),
        body: serde_json::json!({
            "source": "wharf.s3",
            "detail": {"bucket": {"name": "in"}, "object": {"key": id}},
        }),
        created_at,
    }
}

#[tokio::test]
async fn events_are_dispatched_in_order_kept_until_retention_and_stored_once() {
    let store = Store::open_in_memory().await.expect("store");
    let first = store.insert_event(&event("e1", 100)).await.expect("e1");
    let second = store.insert_event(&event("e2", 200)).await.expect("e2");
    assert!(second > first);
    assert_eq!(
        store.insert_event(&event("e1", 300)).await.expect("again"),
        first
    );

    let pending = store.undispatched_events(10).await.expect("pending");
    assert_eq!(
        pending.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e1", "e2"]
    );
    let json = pending[0].to_json();
    assert_eq!(
        json["detail"]["object"]["sequencer"],
        format!("{:016X}", first)
    );

    store
        .mark_events_dispatched(&[first], 150)
        .await
        .expect("mark");
    let pending = store.undispatched_events(10).await.expect("pending");
    assert_eq!(pending.len(), 1);
    // Retention deletes old dispatched events only.
    assert_eq!(store.delete_events_before(1_000).await.expect("sweep"), 1);
    assert!(store.find_event("e1").await.expect("find").is_none());
    assert!(store.find_event("e2").await.expect("find").is_some());
}

#[tokio::test]
async fn an_external_sequencer_is_kept() {
    let store = Store::open_in_memory().await.expect("store");
    let mut external = event("x1", 1);
    external.body["detail"]["object"]["sequencer"] = "0055AED6DCD90281E5".into();
    store.insert_event(&external).await.expect("insert");
    let row = store.find_event("x1").await.expect("find").expect("stored");
    assert_eq!(
        row.to_json()["detail"]["object"]["sequencer"],
        "0055AED6DCD90281E5"
    );
}

#[tokio::test]
async fn an_object_and_its_event_commit_together_or_not_at_all() {
    let store = Store::open_in_memory().await.expect("store");
    store
        .create_bucket(&Bucket {
            name: "in".into(),
            owner_id: "admin".into(),
            public_read: false,
            created_at: 1,
        })
        .await
        .expect("bucket");
    let row = |bucket: &str, blob: &str| ObjectRow {
        bucket: bucket.into(),
        key: "k".into(),
        blob_id: blob.into(),
        size: 1,
        etag: "00".into(),
        content_type: None,
        metadata: "{}".into(),
        parts_count: None,
        last_modified: 1,
    };
    store
        .put_object(&row("in", "b1"), &event("p1", 1))
        .await
        .expect("put");
    // A bucket that does not exist: the object is refused, and so is its event.
    let error = store
        .put_object(&row("missing", "b2"), &event("p2", 2))
        .await
        .expect_err("no such bucket");
    assert!(error.is_foreign_key_violation(), "{error}");
    assert!(store.find_event("p2").await.expect("find").is_none());
    // Replacing the object makes its old blob garbage, in the same transaction.
    store
        .put_object(&row("in", "b3"), &event("p3", 3))
        .await
        .expect("replace");
    assert_eq!(store.blob_garbage(10).await.expect("garbage"), ["b1"]);
    assert!(store.find_event("p3").await.expect("find").is_some());
}
