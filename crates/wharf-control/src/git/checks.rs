//! What a git source may be: the URL, the ref and the folder, checked before git sees
//! them (nothing git could read as an option, no credentials in URLs, no local
//! repositories unless allowed, no folder outside the repository).

use crate::{ControlError, ControlResult};

/// Accepts https/http/ssh/git URLs and scp-like `user@host:path`; local paths and
/// `file://` only when allowed. Rejects anything git could read as an option, and
/// credentials written into the URL.
pub(crate) fn check_url(url: &str, allow_local: bool) -> ControlResult<()> {
    let invalid = |why: &str| ControlError::Invalid(format!("the git URL \"{url}\" {why}"));
    if url.is_empty() || url.starts_with('-') || url.chars().any(char::is_control) {
        return Err(invalid("is not a repository URL"));
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        match scheme {
            "https" | "http" | "ssh" | "git" => {
                let authority = rest.split('/').next().unwrap_or_default();
                if let Some((user_info, _)) = authority.rsplit_once('@') {
                    if user_info.contains(':') {
                        return Err(invalid(
                            "holds a password; pass the token with --token-env or --token-file instead",
                        ));
                    }
                }
                Ok(())
            }
            "file" if allow_local => Ok(()),
            "file" => Err(invalid(
                "is a local repository; the server allows those only with git_allow_local = true",
            )),
            other => Err(invalid(&format!(
                "uses \"{other}\"; use https://, ssh://, git:// or user@host:path"
            ))),
        }
    } else if url.starts_with('/') || url.starts_with('.') {
        if allow_local {
            Ok(())
        } else {
            Err(invalid(
                "is a local path; the server allows those only with git_allow_local = true",
            ))
        }
    } else if url.contains('@') && url.contains(':') {
        // scp-like syntax: user@host:path
        Ok(())
    } else {
        Err(invalid(
            "is not a repository URL; use https://host/owner/repo.git or git@host:owner/repo.git",
        ))
    }
}

pub(crate) fn check_ref(git_ref: &str) -> ControlResult<()> {
    let bad = git_ref.is_empty()
        || git_ref.starts_with('-')
        || git_ref.contains("..")
        || git_ref
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
    if bad {
        return Err(ControlError::Invalid(format!(
            "\"{git_ref}\" is not a git branch, tag or commit id"
        )));
    }
    Ok(())
}

/// A folder inside the repository: relative, no `..`, no leading or trailing slash.
pub(crate) fn normalise_subdir(subdir: &str) -> ControlResult<String> {
    let trimmed = subdir.trim_matches('/');
    let parts: Vec<&str> = trimmed
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts
        .iter()
        .any(|part| *part == ".." || part.starts_with('-'))
        || trimmed.chars().any(char::is_control)
        || trimmed.contains(':')
    {
        return Err(ControlError::Invalid(format!(
            "--path \"{subdir}\" must be a folder inside the repository, such as jobs/report"
        )));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use crate::git::checks::{check_ref, check_url, normalise_subdir};

    fn check_url_case(url: &str, allow_local: bool, expect_ok: bool) {
        assert_eq!(
            check_url(url, allow_local).is_ok(),
            expect_ok,
            "{url:?} allow_local={allow_local}: {:?}",
            check_url(url, allow_local)
        );
    }

    #[test]
    fn urls() {
        check_url_case("https://github.com/acme/reports.git", false, true);
        check_url_case("http://git.internal/acme/reports", false, true);
        check_url_case("ssh://git@github.com/acme/reports.git", false, true);
        check_url_case("git@github.com:acme/reports.git", false, true);
        check_url_case("https://bot@github.com/acme/reports.git", false, true);
        check_url_case(
            "https://bot:secret@github.com/acme/reports.git",
            false,
            false,
        );
        check_url_case("file:///srv/git/reports.git", false, false);
        check_url_case("file:///srv/git/reports.git", true, true);
        check_url_case("/srv/git/reports.git", false, false);
        check_url_case("/srv/git/reports.git", true, true);
        check_url_case("--upload-pack=touch /tmp/x", true, false);
        check_url_case("ext::sh -c touch% /tmp/x", true, false);
        check_url_case("reports", false, false);
        check_url_case("", false, false);
    }

    #[test]
    fn refs_and_folders() {
        for good in ["main", "release/2026-11", "v1.2.3", "0123abcd"] {
            assert!(check_ref(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a..b", "a b", "a:b", "HEAD~1", "x^", "a\nb"] {
            assert!(check_ref(bad).is_err(), "{bad:?}");
        }
        assert_eq!(normalise_subdir("").unwrap(), "");
        assert_eq!(normalise_subdir("/jobs/report/").unwrap(), "jobs/report");
        assert_eq!(normalise_subdir("jobs//./report").unwrap(), "jobs/report");
        for bad in ["../x", "jobs/../../x", "-x", "a:b"] {
            assert!(normalise_subdir(bad).is_err(), "{bad}");
        }
    }
}
