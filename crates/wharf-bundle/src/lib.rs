//! The bundle format of Wharf: an app folder packed as a gzip-compressed tar.
//!
//! The CLI packs a folder with [`pack`] (`wharf deploy DIR`); the server unpacks the upload
//! with [`unpack`] into a fresh folder that becomes a new app version.
//!
//! **Architecture invariant:** [`unpack`] treats its input as hostile. It never writes outside
//! its destination, never follows a link while writing, never panics, and bounds memory, disk
//! and work by [`UnpackLimits`]. [`pack`] applies the same name and link rules, so anything
//! it produces unpacks.
//!
//! **API boundary:** this crate knows nothing of apps, versions or storage: bytes in, folder
//! out (and back).

mod error;
mod pack;
mod rules;
mod unpack;

pub use crate::error::BundleError;
pub use crate::pack::{
    pack, pack_with_progress, PackOptions, PackSummary, ALWAYS_SKIPPED_NAMES, IGNORE_FILE_NAME,
};
pub use crate::unpack::{unpack, UnpackLimits, UnpackSummary};
