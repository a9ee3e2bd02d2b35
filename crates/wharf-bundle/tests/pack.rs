//! Packing folders: round trips, ignore files, determinism, folders that cannot be bundled.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use wharf_bundle::{
    pack, pack_with_progress, unpack, BundleError, PackOptions, PackSummary, UnpackLimits,
};

use crate::common::{describe_tree, set_mode, write_file};

fn pack_to_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    pack(dir, &mut bytes, &PackOptions::default()).unwrap();
    bytes
}

/// Packs `dir`, unpacks it into a fresh folder and returns the unpacked tree description.
fn round_trip(dir: &Path) -> Vec<String> {
    let bytes = pack_to_bytes(dir);
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("dest");
    fs::create_dir(&dest).unwrap();
    unpack(&bytes[..], &dest, &UnpackLimits::default()).unwrap();
    describe_tree(&dest)
}

/// Relative paths of the files and folders a pack of `dir` contains.
fn bundled_names(dir: &Path) -> Vec<String> {
    round_trip(dir)
        .into_iter()
        .map(|line| line.split(' ').next().unwrap().to_string())
        .collect()
}

fn sample_app(root: &Path) {
    write_file(root, "wharf.toml", "name = \"sales\"\n");
    write_file(root, "R/app.R", "print('hi')\n");
    write_file(root, "R/deep/er/helpers.R", "f <- function() 1\n");
    write_file(root, "run.sh", "#!/bin/sh\necho run\n");
    set_mode(root, "run.sh", 0o700);
    write_file(root, "données/été.csv", "a,b\n1,2\n");
    write_file(root, "a file with spaces.txt", "spaces\n");
    write_file(root, ".env.example", "TOKEN=\n");
    fs::create_dir_all(root.join("empty/inner")).unwrap();
    std::os::unix::fs::symlink("données/été.csv", root.join("latest.csv")).unwrap();
    std::os::unix::fs::symlink("../R", root.join("empty/up")).unwrap();
}

#[test]
fn round_trip_keeps_files_folders_modes_and_links() {
    let source = tempfile::tempdir().unwrap();
    sample_app(source.path());
    assert_eq!(
        round_trip(source.path()),
        vec![
            ".env.example file 644 TOKEN=\n",
            "R/ dir 755",
            "R/app.R file 644 print('hi')\n",
            "R/deep/ dir 755",
            "R/deep/er/ dir 755",
            "R/deep/er/helpers.R file 644 f <- function() 1\n",
            "a file with spaces.txt file 644 spaces\n",
            "données/ dir 755",
            "données/été.csv file 644 a,b\n1,2\n",
            "empty/ dir 755",
            "empty/inner/ dir 755",
            "empty/up link -> ../R",
            "latest.csv link -> données/été.csv",
            "run.sh file 755 #!/bin/sh\necho run\n",
            "wharf.toml file 644 name = \"sales\"\n",
        ]
    );
}

#[test]
fn summaries_count_regular_files_and_their_bytes() {
    let source = tempfile::tempdir().unwrap();
    write_file(source.path(), "a.txt", "12345");
    write_file(source.path(), "sub/b.txt", "123");
    fs::create_dir(source.path().join("empty")).unwrap();
    let mut progress = Vec::new();
    let mut bytes = Vec::new();
    let summary = pack_with_progress(
        source.path(),
        &mut bytes,
        &PackOptions::default(),
        |path, size| progress.push((path.to_string(), size)),
    )
    .unwrap();
    assert_eq!(summary, PackSummary { files: 2, bytes: 8 });
    assert_eq!(
        progress,
        vec![("a.txt".to_string(), 5), ("sub/b.txt".to_string(), 3)]
    );

    let parent = tempfile::tempdir().unwrap();
    let unpacked = unpack(&bytes[..], parent.path(), &UnpackLimits::default()).unwrap();
    assert_eq!(unpacked.files, vec!["a.txt", "sub/b.txt"]);
    assert_eq!(unpacked.bytes, 8);
}

#[test]
fn packing_is_deterministic() {
    let source = tempfile::tempdir().unwrap();
    sample_app(source.path());
    let first = pack_to_bytes(source.path());
    let second = pack_to_bytes(source.path());
    assert_eq!(first, second);

    // Times and permission bits other than "executable or not" do not matter.
    let file = fs::File::options()
        .write(true)
        .open(source.path().join("wharf.toml"))
        .unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(86_400))
        .unwrap();
    set_mode(source.path(), "R/app.R", 0o600);
    set_mode(source.path(), "run.sh", 0o755);
    assert_eq!(pack_to_bytes(source.path()), first);

    // The same content in another folder gives the same bytes.
    let copy = tempfile::tempdir().unwrap();
    sample_app(copy.path());
    assert_eq!(pack_to_bytes(copy.path()), first);
}

#[test]
fn ignore_files_are_honoured_at_any_level_outside_git() {
    let source = tempfile::tempdir().unwrap();
    let root = source.path();
    write_file(root, "wharf.toml", "");
    write_file(root, ".gitignore", "*.csv\n!keep.csv\noutput/\n");
    write_file(root, "data.csv", "ignored");
    write_file(root, "keep.csv", "kept");
    write_file(root, "output/result.txt", "ignored");
    write_file(root, "sub/.gitignore", "secret.txt\n");
    write_file(root, "sub/secret.txt", "ignored");
    write_file(root, "sub/public.txt", "kept");
    write_file(root, "sub/other.csv", "ignored by the root .gitignore");
    write_file(root, ".wharfignore", "notes/\n*.log\n");
    write_file(root, "notes/todo.md", "ignored");
    write_file(root, "sub/deeper/.wharfignore", "draft.R\n");
    write_file(root, "sub/deeper/draft.R", "ignored");
    write_file(root, "sub/deeper/final.R", "kept");
    write_file(root, "run.log", "ignored");
    write_file(root, ".git/config", "always skipped");
    write_file(root, "sub/.git", "gitdir: ../.git/modules/sub");
    write_file(root, ".Rhistory", "skipped");
    write_file(root, ".RData", "skipped");
    write_file(root, ".Rproj.user/state", "skipped");
    write_file(root, ".hidden", "kept: only ignore files hide things");
    assert_eq!(
        bundled_names(root),
        vec![
            ".gitignore",
            ".hidden",
            ".wharfignore",
            "keep.csv",
            "sub/",
            "sub/.gitignore",
            "sub/deeper/",
            "sub/deeper/.wharfignore",
            "sub/deeper/final.R",
            "sub/public.txt",
            "wharf.toml",
        ]
    );
}

#[test]
fn wharfignore_can_bring_back_what_gitignore_leaves_out() {
    let source = tempfile::tempdir().unwrap();
    let root = source.path();
    write_file(root, ".gitignore", "model.rds\n.wharfignore\n");
    write_file(root, ".wharfignore", "!model.rds\n");
    write_file(root, "model.rds", "needed in production");
    assert_eq!(bundled_names(root), vec![".gitignore", "model.rds"]);
}

#[test]
fn ignore_files_above_the_folder_are_not_read() {
    let outer = tempfile::tempdir().unwrap();
    write_file(outer.path(), ".gitignore", "*.R\n");
    write_file(outer.path(), "app/main.R", "kept");
    assert_eq!(bundled_names(&outer.path().join("app")), vec!["main.R"]);
}

#[test]
fn inside_a_git_repository_the_same_rules_apply() {
    let source = tempfile::tempdir().unwrap();
    let root = source.path();
    let status = Command::new("git")
        .args(["init", "--quiet"])
        .current_dir(root)
        .status();
    if !matches!(status, Ok(status) if status.success()) {
        eprintln!("git is not available; skipping");
        return;
    }
    write_file(root, ".gitignore", "*.csv\n");
    write_file(root, "data.csv", "ignored");
    write_file(root, "app.R", "kept");
    assert_eq!(bundled_names(root), vec![".gitignore", "app.R"]);
}

#[test]
fn long_paths_and_link_targets_round_trip() {
    let source = tempfile::tempdir().unwrap();
    let long_folder = format!("{}/{}", "f".repeat(90), "g".repeat(90));
    let long_file = format!("{long_folder}/{}.txt", "h".repeat(30));
    assert!(long_file.len() >= 200);
    write_file(source.path(), &long_file, "deep");
    std::os::unix::fs::symlink(&long_file, source.path().join("shortcut")).unwrap();
    let tree = round_trip(source.path());
    assert!(
        tree.contains(&format!("{long_file} file 644 deep")),
        "{tree:?}"
    );
    assert!(
        tree.contains(&format!("shortcut link -> {long_file}")),
        "{tree:?}"
    );
}

fn check_pack_rejected(prepare: impl FnOnce(&Path), options: PackOptions, expected: &[&str]) {
    let source = tempfile::tempdir().unwrap();
    write_file(source.path(), "wharf.toml", "");
    prepare(source.path());
    let mut output = Vec::new();
    let error = pack(source.path(), &mut output, &options).unwrap_err();
    let message = error.to_string();
    for part in expected {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
    assert!(
        output.is_empty(),
        "nothing is written before the folder is checked"
    );
}

#[test]
fn folders_that_cannot_be_bundled_are_refused() {
    check_pack_rejected(
        |root| std::os::unix::fs::symlink("/etc", root.join("config")).unwrap(),
        PackOptions::default(),
        &["bundle entry \"config\" is a link to \"/etc\", which points outside the bundle"],
    );
    check_pack_rejected(
        |root| {
            fs::create_dir(root.join("sub")).unwrap();
            std::os::unix::fs::symlink("../../x", root.join("sub/up")).unwrap();
        },
        PackOptions::default(),
        &["\"sub/up\" is a link to \"../../x\", which points outside"],
    );
    check_pack_rejected(
        |root| std::os::unix::fs::symlink("a/../b", root.join("odd")).unwrap(),
        PackOptions::default(),
        &["\"odd\"", "'..' after a folder name"],
    );
    check_pack_rejected(
        |root| write_file(root, "back\\slash.txt", ""),
        PackOptions::default(),
        &["\"back\\\\slash.txt\"", "backslash"],
    );
    check_pack_rejected(
        |root| {
            let status = Command::new("mkfifo")
                .arg(root.join("pipe"))
                .status()
                .unwrap();
            assert!(status.success());
        },
        PackOptions::default(),
        &[
            "bundle entry \"pipe\" is a fifo (named pipe)",
            ".wharfignore",
        ],
    );
    check_pack_rejected(
        |root| {
            write_file(root, "big.csv", &"x".repeat(600));
            write_file(root, "data/medium.csv", &"x".repeat(400));
        },
        PackOptions {
            max_size: Some(999),
        },
        &[
            "holds 1000 bytes of files to bundle, over the limit of 999 bytes",
            "\"big.csv\" (600 bytes), \"data/medium.csv\" (400 bytes)",
        ],
    );
}

#[test]
fn size_limit_counts_only_bundled_files() {
    let source = tempfile::tempdir().unwrap();
    write_file(source.path(), "small.txt", "12345");
    write_file(source.path(), ".wharfignore", "big.csv\n");
    write_file(source.path(), "big.csv", &"x".repeat(5000));
    let options = PackOptions { max_size: Some(20) };
    let summary = pack(source.path(), &mut Vec::new(), &options).unwrap();
    assert_eq!(
        summary,
        PackSummary {
            files: 2,
            bytes: 13
        }
    );
}

#[test]
fn missing_or_wrong_folders_are_reported() {
    let source = tempfile::tempdir().unwrap();
    let missing = source.path().join("missing");
    let error = pack(&missing, &mut Vec::new(), &PackOptions::default()).unwrap_err();
    assert!(matches!(error, BundleError::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("missing"), "{error}");

    write_file(source.path(), "file.txt", "");
    let error = pack(
        &source.path().join("file.txt"),
        &mut Vec::new(),
        &PackOptions::default(),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("file.txt is not a folder"),
        "{error}"
    );
}

/// Accepts `budget` bytes, then fails every write.
struct FailingWriter {
    written: Vec<u8>,
    budget: usize,
}

impl std::io::Write for FailingWriter {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        if self.written.len() + buffer.len() > self.budget {
            return Err(std::io::Error::other("disk full"));
        }
        self.written.extend_from_slice(buffer);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_output_is_reported_and_never_looks_complete() {
    let source = tempfile::tempdir().unwrap();
    // Incompressible content, so the encoder must write while packing.
    let mut state = 12345u64;
    let noise: String = (0..200_000)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            char::from(b'a' + (state >> 59) as u8)
        })
        .collect();
    write_file(source.path(), "a.txt", &noise);
    write_file(source.path(), "b.txt", &noise);
    let mut output = FailingWriter {
        written: Vec::new(),
        budget: 50_000,
    };
    let error = pack(source.path(), &mut output, &PackOptions::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("could not write the bundle: disk full"),
        "{error}"
    );
    let parent = tempfile::tempdir().unwrap();
    let result = unpack(&output.written[..], parent.path(), &UnpackLimits::default());
    assert!(matches!(result, Err(BundleError::Corrupt(_))), "{result:?}");
}
