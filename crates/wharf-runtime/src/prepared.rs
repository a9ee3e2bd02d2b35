//! What the next launch can use, made in the background after each launch: a standby shim
//! (`standby.rs`) and a spare run folder (`spare.rs`). Either may be missing (not made yet,
//! or not possible here); a launch then does that part itself.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::launch::LocalRuntimeConfig;
use crate::spare::{remove_orphaned_spares, SpareRunDir};
use crate::standby::Standby;

#[derive(Default)]
struct Slots {
    standby: Option<Standby>,
    spare: Option<SpareRunDir>,
    /// The folder of the run folders, learnt from the launches.
    runs_folder: Option<PathBuf>,
    /// Whether orphaned spares were looked for in `runs_folder`.
    orphans_removed: bool,
    /// Set when this system cannot have standbys: runs always get a fresh shim.
    standby_unsupported: bool,
}

/// The standby shim and spare run folder waiting for the next launch.
#[derive(Default)]
pub(crate) struct Prepared {
    slots: Mutex<Slots>,
    refilling: AtomicBool,
}

/// What a launch takes, and gives back if unused.
#[derive(Default)]
pub(crate) struct Reserve {
    pub(crate) standby: Option<Standby>,
    pub(crate) spare: Option<SpareRunDir>,
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
            standby: slots.standby.take(),
            spare: slots.spare.take(),
        }
    }

    /// Keeps what a launch did not use for the next one.
    pub(crate) fn put_back(&self, unused: Reserve) {
        let mut slots = self.slots();
        if slots.standby.is_none() {
            slots.standby = unused.standby;
        }
        if slots.spare.is_none() {
            slots.spare = unused.spare;
        }
    }

    pub(crate) fn standby_pid(&self) -> Option<libc::pid_t> {
        self.slots().standby.as_ref().map(|standby| standby.pid)
    }

    /// Makes what is missing in the background; `runs_folder`: where the last run folder
    /// was made. Call within a Tokio runtime.
    pub(crate) fn refill(
        self: &Arc<Self>,
        config: &LocalRuntimeConfig,
        runs_folder: Option<&Path>,
    ) {
        let (make_standby, make_spare_in, remove_orphans) = {
            let mut slots = self.slots();
            if let Some(folder) = runs_folder {
                if slots.runs_folder.as_deref() != Some(folder) {
                    slots.runs_folder = Some(folder.to_path_buf());
                    slots.orphans_removed = false;
                    slots.spare = None;
                }
            }
            let make_standby = slots.standby.is_none() && !slots.standby_unsupported;
            let make_spare_in = slots.runs_folder.clone().filter(|_| slots.spare.is_none());
            let remove_orphans = !slots.orphans_removed;
            slots.orphans_removed = true;
            (make_standby, make_spare_in, remove_orphans)
        };
        if (!make_standby && make_spare_in.is_none()) || self.refilling.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (prepared, config) = (self.clone(), config.clone());
        tokio::spawn(async move {
            let made = tokio::task::spawn_blocking(move || {
                let spare = make_spare_in.and_then(|folder| {
                    if remove_orphans {
                        remove_orphaned_spares(&folder);
                    }
                    SpareRunDir::create(&folder)
                        .inspect_err(|error| tracing::warn!(folder = %folder.display(), %error, "Could not make a spare run folder; the next launch makes its folder itself."))
                        .ok()
                });
                let standby = make_standby.then(|| Standby::spawn(&config));
                (spare, standby)
            })
            .await;
            match made {
                Ok((spare, standby)) => {
                    let standby = match standby {
                        Some(Ok(standby)) => {
                            let pid = standby.pid;
                            tokio::spawn(async move {
                                if let Err(error) = crate::spawn::reap(pid).await {
                                    tracing::warn!(pid, %error, "Could not reap a standby shim.");
                                }
                            });
                            Some(standby)
                        }
                        Some(Err(error)) => {
                            tracing::warn!(%error, "Could not start a standby shim; the next run starts a fresh shim.");
                            if error.kind() == std::io::ErrorKind::Unsupported {
                                prepared.slots().standby_unsupported = true;
                            }
                            None
                        }
                        None => None,
                    };
                    prepared.put_back(Reserve { standby, spare });
                }
                Err(error) => tracing::warn!(%error, "Preparing the next launch failed."),
            }
            prepared.refilling.store(false, Ordering::Release);
        });
    }
}
