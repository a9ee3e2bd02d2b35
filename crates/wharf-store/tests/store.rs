//! The store's guarantees, against a real (in-memory) SQLite.

use wharf_model::run::RunState;
use wharf_store::{NewRun, NewVersion, RunOutcome, Store};

async fn store_with_app() -> (Store, String) {
    let store = Store::open_in_memory().await.expect("store");
    let (app, version) = store
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
        .expect("first version");
    assert_eq!(version.number, 1);
    assert_eq!(app.active_version, Some(1));
    (store, app.id)
}

fn new_run(app_id: &str, id: &str, key: Option<&str>) -> NewRun {
    NewRun {
        id: id.into(),
        app_id: app_id.into(),
        app_name: "report".into(),
        version: 1,
        trigger_kind: "manual".into(),
        triggered_by: Some("admin".into()),
        params: "{}".into(),
        attempt: 1,
        retry_of: None,
        idempotency_key: key.map(str::to_owned),
        queued_at: 1,
        not_before: 1,
        event_id: None,
    }
}

fn outcome(state: RunState) -> RunOutcome {
    RunOutcome {
        state,
        exit_code: Some(1),
        exit_signal: None,
        error: None,
        started_at: Some(5),
        finished_at: 10,
    }
}

#[tokio::test]
async fn versions_count_up_and_rollback_activates_an_older_one() {
    let (store, _) = store_with_app().await;
    let second = NewVersion {
        app_name: "report".into(),
        new_app_id: "ignored-because-the-app-exists".into(),
        kind: "job".into(),
        manifest: "{\"kind\":\"job\"}".into(),
        bundle_sha256: "11".into(),
        bundle_size: 2,
        file_count: 2,
        created_by: "admin".into(),
    };
    let (app, version) = store.insert_version(&second).await.expect("second");
    assert_eq!(
        (app.id.as_str(), version.number, app.active_version),
        ("app1", 2, Some(2))
    );
    let app = store.activate_version(&app, 1).await.expect("rollback");
    assert_eq!(app.active_version, Some(1));
    let missing = store.activate_version(&app, 9).await.unwrap_err();
    assert_eq!(missing.to_string(), "app \"report\" has no version 9");
}

#[tokio::test]
async fn an_idempotency_key_makes_a_second_insert_return_the_first_run() {
    let (store, app) = store_with_app().await;
    let (first, inserted) = store
        .insert_run(&new_run(&app, "r1", Some("event-1")))
        .await
        .expect("insert");
    assert!(inserted);
    let (again, inserted) = store
        .insert_run(&new_run(&app, "r2", Some("event-1")))
        .await
        .expect("insert");
    assert!(!inserted);
    assert_eq!(again.id, first.id);
    assert_eq!(
        store.list_runs(Some(&app), 10).await.expect("list").len(),
        1
    );
}

#[tokio::test]
async fn state_changes_are_conditional_so_only_one_actor_wins() {
    let (store, app) = store_with_app().await;
    store
        .insert_run(&new_run(&app, "r1", None))
        .await
        .expect("insert");
    assert!(store
        .transition_run("r1", &[RunState::Queued], RunState::Starting)
        .await
        .expect("claim"));
    assert!(!store
        .transition_run("r1", &[RunState::Queued], RunState::Starting)
        .await
        .expect("claim twice"));
    assert!(store.mark_run_running("r1", 42, 5).await.expect("running"));
    let finished = store
        .finish_run("r1", &outcome(RunState::Failed), None)
        .await
        .expect("finish");
    assert!(finished.is_some());
    // A second end (e.g. a late watcher) changes nothing.
    let again = store
        .finish_run("r1", &outcome(RunState::Lost), None)
        .await
        .expect("finish");
    assert!(again.is_none());
    assert_eq!(store.run("r1").await.expect("run").state, RunState::Failed);
}

#[tokio::test]
async fn a_run_never_ends_before_it_started() {
    let (store, app) = store_with_app().await;
    let check = |started: Option<i64>, outcome_start: Option<i64>, end: i64, expect: (i64, i64)| {
        let (store, app) = (&store, &app);
        async move {
            let id = format!("r{end}-{started:?}-{outcome_start:?}");
            store
                .insert_run(&new_run(app, &id, None))
                .await
                .expect("insert");
            if let Some(started) = started {
                store
                    .transition_run(&id, &[RunState::Queued], RunState::Starting)
                    .await
                    .expect("claim");
                assert!(store
                    .mark_run_running(&id, 42, started)
                    .await
                    .expect("running"));
            }
            let mut ended = outcome(RunState::Failed);
            ended.started_at = outcome_start;
            ended.finished_at = end;
            store.finish_run(&id, &ended, None).await.expect("finish");
            let run = store.run(&id).await.expect("run");
            assert_eq!(
                (run.started_at, run.finished_at),
                (Some(expect.0), Some(expect.1)),
                "{id}"
            );
        }
    };
    // The shim's exit time a moment before the server recorded the start: clamped.
    check(Some(1_000), None, 999, (1_000, 1_000)).await;
    check(Some(1_000), None, 1_500, (1_000, 1_500)).await;
    // Never marked running: the outcome's own start counts.
    check(None, Some(700), 600, (700, 700)).await;
    check(None, Some(700), 900, (700, 900)).await;
}

#[tokio::test]
async fn a_finished_run_and_its_retry_are_written_together() {
    let (store, app) = store_with_app().await;
    store
        .insert_run(&new_run(&app, "r1", None))
        .await
        .expect("insert");
    let mut retry = new_run(&app, "r2", Some("retry:r1"));
    retry.attempt = 2;
    retry.retry_of = Some("r1".into());
    retry.not_before = 1_000;
    let (run, retried) = store
        .finish_run("r1", &outcome(RunState::Failed), Some(&retry))
        .await
        .expect("finish")
        .expect("it was running");
    assert_eq!(run.retried_by.as_deref(), Some("r2"));
    let retried = retried.expect("retry inserted");
    assert_eq!((retried.state, retried.attempt), (RunState::Queued, 2));
    assert!(
        store.due_runs(999, 10).await.expect("due").is_empty(),
        "not due before its backoff"
    );
    assert_eq!(store.due_runs(1_000, 10).await.expect("due").len(), 1);
    assert_eq!(store.next_due_time().await.expect("next"), Some(1_000));
}

#[tokio::test]
async fn tokens_resolve_to_their_user_by_hash() {
    let store = Store::open_in_memory().await.expect("store");
    let user = store
        .create_user("u1", "admin", "admin")
        .await
        .expect("user");
    store
        .create_token("t1", &user.id, "cli", "hash-1")
        .await
        .expect("token");
    let (found, token) = store
        .authenticate_token("hash-1")
        .await
        .expect("auth")
        .expect("found");
    assert_eq!((found.name.as_str(), token.name.as_str()), ("admin", "cli"));
    assert!(store
        .authenticate_token("hash-2")
        .await
        .expect("auth")
        .is_none());
    let duplicate = store
        .create_user("u2", "admin", "viewer")
        .await
        .unwrap_err();
    assert_eq!(duplicate.to_string(), "user \"admin\" already exists");
}

#[tokio::test]
async fn deleting_an_app_removes_its_versions_and_runs() {
    let (store, app_id) = store_with_app().await;
    store
        .insert_run(&new_run(&app_id, "r1", None))
        .await
        .expect("insert");
    let app = store.app("report").await.expect("app");
    store.delete_app(&app).await.expect("delete");
    assert!(store.find_app("report").await.expect("find").is_none());
    assert!(store.find_run("r1").await.expect("find").is_none());
}
