//! Service replicas: live, ready, stopped once, listed, removed.

use wharf_store::{ReplicaEnd, Store};

#[tokio::test]
async fn a_replica_lives_and_stops_once() {
    let store = Store::open_in_memory().await.expect("store");
    store
        .insert_replica("r1", "app-id", "api", 1, 40001)
        .await
        .unwrap();
    store
        .insert_replica("r2", "app-id", "api", 1, 40002)
        .await
        .unwrap();
    assert!(store.set_replica_state("r1", "ready").await.unwrap());
    let end = ReplicaEnd {
        exit_code: Some(1),
        exit_signal: None,
        message: "exited with code 1".into(),
    };
    assert!(store.stop_replica("r2", &end).await.unwrap());
    assert!(!store.stop_replica("r2", &end).await.unwrap());
    assert!(!store.set_replica_state("r2", "ready").await.unwrap());
    let live: Vec<_> = store
        .live_replicas()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(live, ["r1"]);
    let listed = store.list_replicas("api", 10).await.unwrap();
    assert_eq!(listed[0].id, "r1");
    assert!(listed[0].ready_at.is_some());
    assert_eq!(listed[1].state, "stopped");
    assert_eq!(listed[1].exit_code, Some(1));
    let removed = store.delete_stopped_replicas(i64::MAX, 100).await.unwrap();
    assert_eq!(removed, ["r2"]);
    assert_eq!(store.delete_app_replicas("api").await.unwrap(), ["r1"]);
}
