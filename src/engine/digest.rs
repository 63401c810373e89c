//! Content digests (`sha256:<64 hex>`), parsed strictly before any use.
