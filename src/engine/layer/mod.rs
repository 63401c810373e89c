//! Layer tars: applying them onto a snapshot, safely; producing them from
//! the difference of two trees, deterministically.
//!
//! Applying ([`apply_layer`]) never reads or writes outside the root: names
//! are normalised and refused if they climb out, every parent directory is
//! opened with `openat2(RESOLVE_IN_ROOT)`, and leaves are created with
//! `*at` calls that do not follow symlinks. Writing ([`write_layer`],
//! [`write_tree`]) emits sorted entries with fixed header fields, so the
//! same trees give the same diffID.

pub mod apply;
mod compress;
mod create;
pub mod diff;
mod error;
mod fsops;
mod meta;
mod names;
mod resolve;
mod scope;
mod tarread;
mod tarwrite;
mod walk;
mod whiteout;
mod writeback;

pub use apply::{apply_layer, apply_layer_verified, ApplyOptions, ApplyStats};
pub use compress::diff_id_of;
pub(crate) use compress::read_full;
pub use diff::{
    changes, changes_in, write_layer, write_layer_in, write_tree, Change, LayerInfo, Scope,
};
pub use error::{LayerError, Limit, Refusal};
