//! The image engine: digests and references, content-addressed blobs,
//! layer application and diffs, and the image store. It reaches storage
//! only through the [`crate::snapshot::Snapshotter`] interface.

pub mod digest;
pub mod layer;
pub mod reference;
