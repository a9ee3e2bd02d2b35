//! What the next launches can use, made in the background: standby shims (`standby.rs`) and
//! spare run folders (`spare.rs`), up to [`POOL`] of each. Either may be missing (not made
//! yet, or not possible here); a launch then does that part itself.
//!
//! Making them costs CPU (a standby is the `wharf` binary executed and loaded) and disk
//! work, which would compete with the run just launched, whose shim and sandbox are
//! starting at that very moment. So after a launch that left something in the pool, the
//! refill waits [`REFILL_DELAY`] first; a launch that emptied it makes the refill start at
//! once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::launch::LocalRuntimeConfig;
use crate::spare::{remove_orphaned_spares, SpareRunDir};
use crate::standby::Standby;

/// How many standby shims, and how many spare run folders, are kept ready.
const POOL: usize = 2;

/// How long a refill waits after a launch that left the pool non-empty.
const REFILL_DELAY: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Slots {
    standbys: Vec<Standby>,
    spares: Vec<SpareRunDir>,
    /// The folder of the run folders, learnt from the launches.
    runs_folder: Option<PathBuf>,
    /// Whether orphaned spares were looked for in `runs_folder`.
    orphans_removed: bool,
    /// Set when this system cannot have standbys: runs always get a fresh shim.
    standby_unsupported: bool,
}

/// The standby shims and spare run folders waiting for the next launches.
#[derive(Default)]
pub(crate) struct Prepared {
    slots: Mutex<Slots>,
    refilling: AtomicBool,
    /// Cuts a refill's wait short: the pool ran empty.
    hurry: Notify,
}

/// What a launch takes, and gives back if unused.
#[derive(Default)]
pub(crate) struct Reserve {
    pub(crate) standby: Option<Standby>,
    pub(crate) spare: Option<SpareRunDir>,
}

/// What a refill is to make.
struct Missing {
    standbys: usize,
    spares_in: Option<(PathBuf, usize)>,
    remove_orphans: bool,
}

impl Prepared {
    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn take(&self) -> Reserve {
        let mut slots = self.slots();
        Reserve {
            standby: slots.standbys.pop(),
            spare: slots.spares.pop(),
        }
    }

    /// Keeps what a launch did not use (or a refill made) for the next launches.
    pub(crate) fn put_back(&self, unused: Reserve) {
        let mut slots = self.slots();
        if let Some(standby) = unused.standby {
            if slots.standbys.len() < POOL {
                slots.standbys.push(standby);
            }
        }
        if let Some(spare) = unused.spare {
            if slots.spares.len() < POOL {
                slots.spares.push(spare);
            }
        }
    }

    pub(crate) fn standby_pid(&self) -> Option<libc::pid_t> {
        self.slots().standbys.last().map(|standby| standby.pid)
    }

    /// What is missing from the pool, learning `runs_folder` (where the last run folder
    /// was made). Also says whether the pool is empty. `to_make`: the caller makes it
    /// (and so looks for orphaned spares once per folder).
    fn missing(&self, runs_folder: Option<&Path>, to_make: bool) -> (Missing, bool) {
        let mut slots = self.slots();
        if let Some(folder) = runs_folder {
            if slots.runs_folder.as_deref() != Some(folder) {
                slots.runs_folder = Some(folder.to_path_buf());
                slots.orphans_removed = false;
                slots.spares.clear();
            }
        }
        let standbys = if slots.standby_unsupported {
            0
        } else {
            POOL - slots.standbys.len()
        };
        let spares_in = slots
            .runs_folder
            .clone()
            .map(|folder| (folder, POOL - slots.spares.len()))
            .filter(|(_, count)| *count > 0);
        let remove_orphans = to_make && spares_in.is_some() && !slots.orphans_removed;
        slots.orphans_removed |= remove_orphans;
        let empty = (slots.standbys.is_empty() && !slots.standby_unsupported)
            || (slots.spares.is_empty() && slots.runs_folder.is_some());
        let missing = Missing {
            standbys,
            spares_in,
            remove_orphans,
        };
        (missing, empty)
    }

    /// Makes what is missing in the background: at once if the pool is empty, else after
    /// [`REFILL_DELAY`]. `runs_folder`: where the last run folder was made. Call within a
    /// Tokio runtime.
    pub(crate) fn refill(
        self: &Arc<Self>,
        config: &LocalRuntimeConfig,
        runs_folder: Option<&Path>,
    ) {
        let (missing, empty) = self.missing(runs_folder, false);
        if empty {
            self.hurry.notify_one();
        }
        if (missing.standbys == 0 && missing.spares_in.is_none())
            || self.refilling.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (prepared, config) = (self.clone(), config.clone());
        tokio::spawn(async move {
            if !empty {
                tokio::select! {
                    _ = tokio::time::sleep(REFILL_DELAY) => {}
                    _ = prepared.hurry.notified() => {}
                }
            }
            // What went missing meanwhile is made too.
            let (missing, _) = prepared.missing(None, true);
            let made = tokio::task::spawn_blocking(move || make(&config, missing)).await;
            match made {
                Ok((spares, standbys, unsupported)) => {
                    for standby in &standbys {
                        let pid = standby.pid;
                        tokio::spawn(async move {
                            if let Err(error) = crate::spawn::reap(pid).await {
                                tracing::warn!(pid, %error, "Could not reap a standby shim.");
                            }
                        });
                    }
                    if unsupported {
                        prepared.slots().standby_unsupported = true;
                    }
                    let (mut spares, mut standbys) = (spares.into_iter(), standbys.into_iter());
                    loop {
                        let (spare, standby) = (spares.next(), standbys.next());
                        if spare.is_none() && standby.is_none() {
                            break;
                        }
                        prepared.put_back(Reserve { standby, spare });
                    }
                }
                Err(error) => tracing::warn!(%error, "Preparing the next launches failed."),
            }
            prepared.refilling.store(false, Ordering::Release);
        });
    }
}

/// Makes the missing spares and standbys (blocking). The flag: standbys are unsupported.
fn make(config: &LocalRuntimeConfig, missing: Missing) -> (Vec<SpareRunDir>, Vec<Standby>, bool) {
    let mut spares = Vec::new();
    if let Some((folder, count)) = missing.spares_in {
        if missing.remove_orphans {
            remove_orphaned_spares(&folder);
        }
        for _ in 0..count {
            match SpareRunDir::create(&folder) {
                Ok(spare) => spares.push(spare),
                Err(error) => {
                    tracing::warn!(folder = %folder.display(), %error, "Could not make a spare run folder; launches make their folders themselves.");
                    break;
                }
            }
        }
    }
    let mut standbys = Vec::new();
    for _ in 0..missing.standbys {
        match Standby::spawn(config) {
            Ok(standby) => standbys.push(standby),
            Err(error) => {
                tracing::warn!(%error, "Could not start a standby shim; launches start a fresh shim.");
                return (
                    spares,
                    standbys,
                    error.kind() == std::io::ErrorKind::Unsupported,
                );
            }
        }
    }
    (spares, standbys, false)
}
