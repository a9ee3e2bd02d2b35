//! What an entry name and a link target may look like. Pack and unpack share these rules, so
//! `pack` never produces a bundle that `unpack` refuses. All checks are pure functions on
//! bytes; the file system is not consulted.

/// Why a link target is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LinkTargetProblem {
    /// Absolute, or climbs above the bundle root.
    Escapes,
    /// Written in a way we refuse (reason for the user).
    Refused(String),
}

/// Checks an entry name from an archive (or a relative path found while packing) and returns
/// its components. `""` and `"."` components (from `./a`, `a//b`, `a/`) are dropped, so the
/// result is empty for the bundle root itself (`"./"`); the caller decides whether that is
/// allowed. The error is the reason, worded to follow "bundle entry "x" is not allowed: ".
pub(crate) fn check_entry_path(raw: &[u8]) -> Result<Vec<String>, String> {
    if raw.contains(&0) {
        return Err("its name contains a NUL byte".to_string());
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        return Err("its name is not valid UTF-8; rename it".to_string());
    };
    if text.starts_with('/') {
        return Err("it is an absolute path; paths in a bundle must be relative".to_string());
    }
    if starts_with_drive_letter(text) {
        return Err(
            "it starts with a Windows drive letter; paths in a bundle must be relative".to_string(),
        );
    }
    if text.contains('\\') {
        return Err(
            "its name contains a backslash '\\'; paths in a bundle are separated by '/' and \
             may not contain backslashes (rename it)"
                .to_string(),
        );
    }
    let mut components = Vec::new();
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err("it climbs out of the bundle with '..'".to_string()),
            normal => components.push(normal.to_string()),
        }
    }
    Ok(components)
}

/// Checks the target of a symbolic link at `link_components` (the link's own path, already
/// checked with [`check_entry_path`], not empty).
///
/// Accepted targets are relative and of the form `../../a/b`: any `..` come first, and there
/// are no more of them than folders above the link. Such a target cannot leave the bundle
/// even when it passes through other accepted links, because every `..` is taken from a real
/// folder. A `..` after a folder name (`a/../b`) is refused: if `a` were itself a link, the
/// system would resolve it differently from how it reads.
pub(crate) fn check_link_target(
    link_components: &[String],
    target: &[u8],
) -> Result<(), LinkTargetProblem> {
    if target.is_empty() {
        return Err(LinkTargetProblem::Refused("it has no target".to_string()));
    }
    if target.contains(&0) {
        return Err(LinkTargetProblem::Refused(
            "its target contains a NUL byte".to_string(),
        ));
    }
    let Ok(text) = std::str::from_utf8(target) else {
        return Err(LinkTargetProblem::Refused(
            "its target is not valid UTF-8".to_string(),
        ));
    };
    if text.starts_with('/') || starts_with_drive_letter(text) {
        return Err(LinkTargetProblem::Escapes);
    }
    if text.contains('\\') {
        return Err(LinkTargetProblem::Refused(
            "its target contains a backslash '\\'; link targets are separated by '/'".to_string(),
        ));
    }
    let folders_above_link = link_components.len().saturating_sub(1);
    let mut climbs = 0usize;
    let mut seen_folder_name = false;
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." if seen_folder_name => {
                return Err(LinkTargetProblem::Refused(
                    "its target uses '..' after a folder name; write the target with any '..' \
                     at the start only (\"a/../b\" becomes \"b\")"
                        .to_string(),
                ))
            }
            ".." => {
                climbs += 1;
                if climbs > folders_above_link {
                    return Err(LinkTargetProblem::Escapes);
                }
            }
            _ => seen_folder_name = true,
        }
    }
    Ok(())
}

fn starts_with_drive_letter(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 2
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && (bytes.len() == 2 || bytes[2] == b'/' || bytes[2] == b'\\')
}

#[cfg(test)]
mod tests {
    use crate::rules::{check_entry_path, check_link_target, LinkTargetProblem};

    fn check_path(raw: &str, expected: Result<&[&str], &str>) {
        let actual = check_entry_path(raw.as_bytes());
        match (actual, expected) {
            (Ok(components), Ok(expected)) => assert_eq!(components, expected, "for {raw:?}"),
            (Err(reason), Err(expected)) => {
                assert!(reason.contains(expected), "for {raw:?}: {reason}")
            }
            (actual, expected) => panic!("for {raw:?}: got {actual:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn entry_paths() {
        check_path("a", Ok(&["a"]));
        check_path("a/b.txt", Ok(&["a", "b.txt"]));
        check_path("./a//b/", Ok(&["a", "b"]));
        check_path("./", Ok(&[]));
        check_path("", Ok(&[]));
        check_path("a file with spaces", Ok(&["a file with spaces"]));
        check_path("données/été.csv", Ok(&["données", "été.csv"]));
        check_path("..a/b..", Ok(&["..a", "b.."]));
        check_path("C:", Err("drive letter"));
        check_path("C:/x", Err("drive letter"));
        check_path("c:\\x", Err("drive letter"));
        check_path("C:x", Ok(&["C:x"]));
        check_path("../evil", Err("climbs out of the bundle with '..'"));
        check_path("a/../../evil", Err("climbs out"));
        check_path("a/..", Err("climbs out"));
        check_path("/tmp/evil", Err("absolute"));
        check_path("\\\\server\\share", Err("backslash"));
        check_path("a\\b", Err("backslash"));
        check_path("a\0b", Err("NUL"));
        assert!(check_entry_path(b"a\xffb").unwrap_err().contains("UTF-8"));
    }

    fn check_link(link: &str, target: &str, expected: Result<(), &str>) {
        let components = check_entry_path(link.as_bytes()).unwrap();
        let actual = check_link_target(&components, target.as_bytes());
        match (actual, expected) {
            (Ok(()), Ok(())) => {}
            (Err(LinkTargetProblem::Escapes), Err("escapes")) => {}
            (Err(LinkTargetProblem::Refused(reason)), Err(expected)) if expected != "escapes" => {
                assert!(reason.contains(expected), "{link} -> {target}: {reason}")
            }
            (actual, expected) => {
                panic!("{link} -> {target}: got {actual:?}, expected {expected:?}")
            }
        }
    }

    #[test]
    fn link_targets() {
        check_link("a", "b", Ok(()));
        check_link("a", "./b/c", Ok(()));
        check_link("a", ".", Ok(()));
        check_link("d/a", "..", Ok(()));
        check_link("d/a", "../b", Ok(()));
        check_link("d/e/a", "../../b/c", Ok(()));
        check_link("a", "..", Err("escapes"));
        check_link("a", "../b", Err("escapes"));
        check_link("d/a", "../../b", Err("escapes"));
        check_link("a", "/etc", Err("escapes"));
        check_link("a", "C:/Windows", Err("escapes"));
        check_link("a", "b/../c", Err("after a folder name"));
        check_link("d/a", "b/../../x", Err("after a folder name"));
        check_link("a", "", Err("no target"));
        check_link("a", "b\\c", Err("backslash"));
        check_link("a", "b\0c", Err("NUL"));
    }
}
