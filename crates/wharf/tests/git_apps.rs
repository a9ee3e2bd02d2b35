//! Git-backed apps against real git: a bare repository on disk, commits pushed to it, and
//! `wharf deploy --git`. Each run fetches the ref; a new commit becomes a new version and
//! the run records its commit; a failed fetch fails the run and keeps the last version.

mod common;

use common::Server;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A bare repository and a working clone that pushes to it.
struct Repository {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Analyst")
        .env("GIT_AUTHOR_EMAIL", "analyst@example.com")
        .env("GIT_COMMITTER_NAME", "Analyst")
        .env("GIT_COMMITTER_EMAIL", "analyst@example.com")
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

impl Repository {
    fn new() -> Repository {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("reports.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&bare).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        git(
            &bare,
            &["init", "--quiet", "--bare", "--initial-branch=main"],
        );
        git(&work, &["init", "--quiet", "--initial-branch=main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Repository {
            _dir: dir,
            bare,
            work,
        }
    }

    /// Writes files, commits and pushes; returns the commit id.
    fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, contents) in files {
            let full = self.work.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, contents).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "--quiet", "-m", message]);
        git(&self.work, &["push", "--quiet", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }
}

const MANIFEST: &str = "name = \"git-report\"\nkind = \"job\"\ncommand = [\"sh\", \"report.sh\"]\n";

fn server() -> Server {
    Server::start_with("kill_grace = \"1s\"\ngit_allow_local = true\n")
}

fn run_to_end(server: &Server, app: &str) -> serde_json::Value {
    let id = server.start_run(app, serde_json::json!({}));
    server.wait_finished(&id, Duration::from_secs(60))
}

#[test]
fn each_run_fetches_the_ref_and_records_its_commit() {
    let repository = Repository::new();
    let first = repository.commit(
        &[
            ("jobs/report/wharf.toml", MANIFEST),
            (
                "jobs/report/report.sh",
                "echo report from the first commit\n",
            ),
            ("README.md", "not part of the app\n"),
        ],
        "first",
    );
    let server = server();
    let printed = server.cli_ok(&[
        "deploy",
        "--git",
        &repository.url(),
        "--ref",
        "main",
        "--path",
        "jobs/report",
    ]);
    assert!(
        printed.contains("Deployed git-report version 1") && printed.contains(&first[..12]),
        "{printed}"
    );
    let source = server.get("/apps/git-report/git");
    assert_eq!(source["ref"], "main");
    assert_eq!(source["path"], "jobs/report");
    assert_eq!(source["last_commit"], first.as_str());
    assert_eq!(source["credential"], "none");

    let run = run_to_end(&server, "git-report");
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["version"], 1);
    assert_eq!(run["source_commit"], first.as_str());
    assert!(server
        .log_text(run["id"].as_str().unwrap())
        .contains("report from the first commit"));
    // Only the app's folder became the version.
    let version_dir = server.data_dir().join("apps/git-report/versions/1");
    assert!(version_dir.join("report.sh").is_file());
    assert!(!version_dir.join("README.md").exists());

    // An unchanged ref reuses the version.
    let again = run_to_end(&server, "git-report");
    assert_eq!(
        (again["version"].as_i64(), again["state"].as_str()),
        (Some(1), Some("succeeded"))
    );

    // A pushed commit is what the next run gets, as a new version.
    let second = repository.commit(
        &[(
            "jobs/report/report.sh",
            "echo report from the second commit\n",
        )],
        "second",
    );
    let run = run_to_end(&server, "git-report");
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["version"], 2);
    assert_eq!(run["source_commit"], second.as_str());
    assert!(server
        .log_text(run["id"].as_str().unwrap())
        .contains("report from the second commit"));

    // A fetch that fails fails the run with the reason and keeps version 2.
    let moved = repository.bare.with_file_name("moved.git");
    std::fs::rename(&repository.bare, &moved).unwrap();
    let failed = run_to_end(&server, "git-report");
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("could not fetch main from")
            && error.contains("keeps version 2")
            && error.contains(&second[..12]),
        "{error}"
    );
    let source = server.get("/apps/git-report/git");
    assert!(source["last_error"].as_str().is_some(), "{source}");
    assert_eq!(server.get("/apps/git-report")["active_version"], 2);

    // Back in place, runs work again without a new version.
    std::fs::rename(&moved, &repository.bare).unwrap();
    let run = run_to_end(&server, "git-report");
    assert_eq!(
        (run["version"].as_i64(), run["state"].as_str()),
        (Some(2), Some("succeeded"))
    );
    assert!(server.get("/apps/git-report/git")["last_error"].is_null());

    // A commit whose files are not a valid app fails the run and changes nothing.
    repository.commit(
        &[(
            "jobs/report/wharf.toml",
            "name = \"git-report\"\nkind = \"jobb\"\n",
        )],
        "broken manifest",
    );
    let broken = run_to_end(&server, "git-report");
    assert_eq!(broken["state"], "failed", "{broken}");
    assert!(
        broken["error"]
            .as_str()
            .unwrap_or_default()
            .contains("kind"),
        "{broken}"
    );
    assert_eq!(server.get("/apps/git-report")["active_version"], 2);
}

#[test]
fn tokens_are_kept_encrypted_and_bad_sources_are_clear_errors() {
    let repository = Repository::new();
    repository.commit(
        &[("wharf.toml", MANIFEST), ("report.sh", "echo hello\n")],
        "first",
    );
    let server = server();
    let token = "ghp_TopSecretTokenValue1234567890";
    let output = server
        .cli_cmd(&[
            "deploy",
            "--git",
            &repository.url(),
            "--token-env",
            "REPO_TOKEN",
        ])
        .env("REPO_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let source = server.get("/apps/git-report/git");
    assert_eq!(source["credential"], "token");
    assert!(!source.to_string().contains(token));
    // Not in the database file, its WAL, or the server's log.
    for file in ["wharf.db", "wharf.db-wal"] {
        let bytes = std::fs::read(server.data_dir().join(file)).unwrap_or_default();
        assert!(
            !bytes
                .windows(token.len())
                .any(|window| window == token.as_bytes()),
            "{file} holds the token in the clear"
        );
    }
    assert!(!server.server_log().contains(token));
    let run = run_to_end(&server, "git-report");
    assert_eq!(run["state"], "succeeded", "{run}");

    // Clear errors for bad sources; none creates an app.
    let cases: [(&[&str], &str); 5] = [
        (
            &["deploy", "--git=--upload-pack=touch /tmp/x"],
            "is not a repository URL",
        ),
        (
            &[
                "deploy",
                "--git",
                "https://bot:secret@example.com/acme/reports.git",
            ],
            "holds a password",
        ),
        (
            &[
                "deploy",
                "--git",
                &repository.url(),
                "--ref",
                "no-such-branch",
                "--name",
                "missing-ref",
            ],
            "could not fetch no-such-branch",
        ),
        (
            &[
                "deploy",
                "--git",
                &repository.url(),
                "--path",
                "../etc",
                "--name",
                "bad-path",
            ],
            "must be a folder inside the repository",
        ),
        (
            &[
                "deploy",
                "--git",
                &repository.url(),
                "--path",
                "nowhere",
                "--name",
                "no-folder",
            ],
            "does not exist at commit",
        ),
    ];
    for (args, expect) in cases {
        let output = server.cli(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
    let apps = server.get("/apps");
    assert_eq!(apps.as_array().map(Vec::len), Some(1), "{apps}");

    // Without git_allow_local, local repositories are refused.
    let strict = Server::start();
    let output = strict.cli(&["deploy", "--git", &repository.url()]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("git_allow_local"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
