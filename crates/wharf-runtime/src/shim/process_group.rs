//! Signalling the workload's process group.

/// Sends `signal` to every process of the group `pgid`. Already-gone groups are fine.
pub(crate) fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety requirements; a negative pid names a group.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Sends `signal` to every process of the group except `spared` (the outer bwrap process,
/// which would die of SIGTERM at once and take the sandbox with it, before the workload
/// inside could shut down cleanly). Falls back to the whole group if /proc cannot be read.
pub(crate) fn signal_group_sparing(pgid: libc::pid_t, spared: libc::pid_t, signal: libc::c_int) {
    match live_group_members(pgid) {
        Ok(members) => {
            for pid in members.into_iter().filter(|&pid| pid != spared) {
                // SAFETY: as above. A member that exited since the scan gives ESRCH, which is
                // fine (its pid being reused within these microseconds is not a real risk).
                unsafe {
                    libc::kill(pid, signal);
                }
            }
        }
        Err(_) => signal_group(pgid, signal),
    }
}

/// The processes (not zombies) whose process group is `pgid`, from /proc.
pub(crate) fn live_group_members(pgid: libc::pid_t) -> std::io::Result<Vec<libc::pid_t>> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // The process may be gone by now; skip it then.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((state, group)) = parse_stat_state_and_group(&stat) {
            if group == pgid && state != 'Z' && state != 'X' {
                members.push(pid);
            }
        }
    }
    Ok(members)
}

/// From the text of `/proc/PID/stat` ("PID (comm) STATE PPID PGRP ..."), the state letter and
/// the process group. The command name may contain spaces and parentheses, so parse from
/// the last ')'.
fn parse_stat_state_and_group(stat: &str) -> Option<(char, libc::pid_t)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

#[cfg(test)]
mod tests {
    use crate::shim::process_group::{live_group_members, parse_stat_state_and_group};

    fn check(stat: &str, expect: Option<(char, i32)>) {
        assert_eq!(parse_stat_state_and_group(stat), expect, "{stat:?}");
    }

    #[test]
    fn parses_proc_stat() {
        check(
            "123 (sleep) S 1 123 123 0 -1 4194560 91 0",
            Some(('S', 123)),
        );
        check("9 (a b) c) (d) R 8 77 9 0", Some(('R', 77)));
        check("9 (zombie) Z 1 5 5", Some(('Z', 5)));
        check("9 (x) S 1", None);
        check("garbage", None);
        check("9 (x) S 1 notanumber", None);
    }

    #[test]
    fn finds_own_group() {
        // SAFETY: getpgrp/getpid have no requirements.
        let (group, pid) = unsafe { (libc::getpgrp(), libc::getpid()) };
        let members = live_group_members(group).unwrap();
        assert!(members.contains(&pid), "{members:?} should contain {pid}");
    }
}
