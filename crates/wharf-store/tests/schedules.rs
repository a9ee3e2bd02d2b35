//! Schedule state and trigger secrets, against a real (in-memory) SQLite.

use wharf_store::{NewRun, NewVersion, ScheduleAdvance, Store};

async fn store_with_app() -> (Store, String) {
    let store = Store::open_in_memory().await.expect("store");
    let (app, _) = store
        .insert_version(&NewVersion {
            app_name: "report".into(),
            new_app_id: "app1".into(),
            kind: "job".into(),
            manifest: "{\"kind\":\"job\"}".into(),
            bundle_sha256: "00".into(),
            bundle_size: 1,
            file_count: 1,
            created_by: "admin".into(),
        })
        .await
        .expect("version");
    (store, app.id)
}

fn slot_run(app_id: &str, id: &str, slot: &str) -> NewRun {
    NewRun {
        id: id.into(),
        app_id: app_id.into(),
        app_name: "report".into(),
        version: 1,
        trigger_kind: "schedule".into(),
        triggered_by: None,
        params: "{}".into(),
        attempt: 1,
        retry_of: None,
        idempotency_key: Some(format!("schedule:{app_id}:0:{slot}")),
        queued_at: 1,
        not_before: 1,
        event_id: None,
    }
}

fn advance(app_id: &str, last_slot: i64) -> ScheduleAdvance {
    ScheduleAdvance {
        app_id: app_id.into(),
        trigger_index: 0,
        last_slot,
    }
}

#[tokio::test]
async fn a_slot_recorded_twice_inserts_one_run_and_the_slot_only_moves_forward() {
    let (store, app) = store_with_app().await;
    store
        .register_schedule(&app, 0, "* * * * * * @ UTC", 1000)
        .await
        .unwrap();
    let first = [slot_run(&app, "r1", "2026-01-01T00:00:02Z")];
    assert_eq!(
        store
            .record_schedule_fires(&first, &[advance(&app, 2000)], 5)
            .await
            .unwrap(),
        1
    );
    // A second server (or the same one after a restart) records the same slot again.
    let again = [slot_run(&app, "r2", "2026-01-01T00:00:02Z")];
    assert_eq!(
        store
            .record_schedule_fires(&again, &[advance(&app, 2000)], 6)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.list_runs(Some(&app), 10).await.unwrap().len(), 1);
    // An older slot never moves the handled slot back.
    store
        .record_schedule_fires(&[], &[advance(&app, 1500)], 7)
        .await
        .unwrap();
    let states = store.schedule_states().await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].last_slot, 2000);
}

#[tokio::test]
async fn registering_keeps_the_state_of_an_unchanged_schedule_and_resets_a_changed_one() {
    let (store, app) = store_with_app().await;
    store
        .register_schedule(&app, 0, "0 * * * * @ UTC", 1000)
        .await
        .unwrap();
    store
        .set_schedule_paused(&app, 0, "0 * * * * @ UTC", true, "admin", 1100)
        .await
        .unwrap();
    let same = store
        .register_schedule(&app, 0, "0 * * * * @ UTC", 9000)
        .await
        .unwrap();
    assert_eq!((same.last_slot, same.paused), (1000, true));
    let changed = store
        .register_schedule(&app, 0, "5 * * * * @ UTC", 9000)
        .await
        .unwrap();
    assert_eq!((changed.last_slot, changed.paused), (9000, true));
    assert_eq!(changed.paused_by.as_deref(), Some("admin"));
}

#[tokio::test]
async fn resuming_skips_the_slots_that_passed_while_paused() {
    let (store, app) = store_with_app().await;
    // Pausing before the scheduler registered the trigger creates its state.
    store
        .set_schedule_paused(&app, 0, "spec", true, "admin", 1000)
        .await
        .unwrap();
    store
        .set_schedule_paused(&app, 0, "spec", false, "admin", 5000)
        .await
        .unwrap();
    let state = &store.schedule_states().await.unwrap()[0];
    assert_eq!(
        (state.last_slot, state.paused, state.paused_by.as_deref()),
        (5000, false, None)
    );
    // Resuming a trigger that was not paused leaves its slot alone.
    store
        .set_schedule_paused(&app, 0, "spec", false, "admin", 9000)
        .await
        .unwrap();
    assert_eq!(store.schedule_states().await.unwrap()[0].last_slot, 5000);
}

#[tokio::test]
async fn a_trigger_secret_is_replaced_only_when_asked() {
    let (store, app) = store_with_app().await;
    assert_eq!(store.trigger_secret_hash(&app).await.unwrap(), None);
    assert!(store
        .set_trigger_secret(&app, "h1", "admin", false, 1)
        .await
        .unwrap());
    assert!(!store
        .set_trigger_secret(&app, "h2", "admin", false, 2)
        .await
        .unwrap());
    assert_eq!(
        store.trigger_secret_hash(&app).await.unwrap().as_deref(),
        Some("h1")
    );
    assert!(store
        .set_trigger_secret(&app, "h3", "admin", true, 3)
        .await
        .unwrap());
    assert_eq!(
        store.trigger_secret_hash(&app).await.unwrap().as_deref(),
        Some("h3")
    );
}
