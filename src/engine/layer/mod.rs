//! Layer tars: applying them onto a snapshot, safely; producing them from
//! the difference of two trees, deterministically.
