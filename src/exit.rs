//! Maps error kinds to exit codes, so scripts can tell "not found" from
//! "pool full" without parsing messages.

use thinpool::Error as P;

/// Success.
pub const OK: i32 = 0;
/// Any other failure.
pub const FAILURE: i32 = 1;
/// Bad usage or input (also clap's code).
pub const USAGE: i32 = 2;
/// The named thing (pool, device, image) does not exist.
pub const NOT_FOUND: i32 = 3;
/// It exists already, or is in use.
pub const CONFLICT: i32 = 4;
/// The pool is out of space or unhealthy.
pub const POOL_SPACE: i32 = 5;
/// The host lacks what the command needs (device-mapper).
pub const UNSUPPORTED: i32 = 7;
/// Store and pool need attention (`pool check`).
pub const NEEDS_ATTENTION: i32 = 6;

/// The exit code for an error chain: the first error in it we know.
pub fn code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<P>() {
            return pool_code(e);
        }
        if let Some(c) = cause
            .downcast_ref::<crate::engine::EngineError>()
            .and_then(engine_code)
        {
            return c;
        }
        if let Some(c) = cause
            .downcast_ref::<crate::snapshot::SnapshotError>()
            .and_then(snapshot_code)
        {
            return c;
        }
        if let Some(c) = cause
            .downcast_ref::<crate::registry::RegistryError>()
            .and_then(registry_code)
        {
            return c;
        }
        if cause.downcast_ref::<crate::Problems>().is_some() {
            return NEEDS_ATTENTION;
        }
        if cause.downcast_ref::<crate::config::ConfigError>().is_some() {
            return USAGE;
        }
    }
    FAILURE
}

fn pool_code(e: &P) -> i32 {
    match e {
        P::NoPool { .. } | P::DeviceNotFound { .. } => NOT_FOUND,
        P::PoolExists { .. }
        | P::DeviceExists { .. }
        | P::DevicesExist { .. }
        | P::Busy { .. }
        | P::MetadataNotBlank { .. } => CONFLICT,
        P::LowSpace { .. } | P::PoolUnhealthy { .. } => POOL_SPACE,
        P::InvalidSize { .. }
        | P::InvalidName { .. }
        | P::InvalidConfig { .. }
        | P::ThinIdOutOfRange { .. } => USAGE,
        P::IdentityMismatch { .. } | P::Unreconciled { .. } | P::StoreCorrupt { .. } => {
            NEEDS_ATTENTION
        }
        P::NoDeviceMapper { .. } => UNSUPPORTED,
        _ => FAILURE,
    }
}

/// Engine errors; pool and snapshot errors inside are transparent, so
/// they are looked into here rather than found further down the chain.
fn engine_code(e: &crate::engine::EngineError) -> Option<i32> {
    use crate::engine::EngineError as E;
    Some(match e {
        E::Pool(p) => pool_code(p),
        E::Snapshot(s) => return snapshot_code(s),
        E::ImageNotFound { .. } | E::ContainerNotFound { .. } => NOT_FOUND,
        E::Conflict { .. } | E::DriverMismatch { .. } => CONFLICT,
        E::AmbiguousId { .. }
        | E::Reference(_)
        | E::Digest(_)
        | E::InvalidChange { .. }
        | E::InvalidArchive { .. }
        | E::DigestMismatch { .. }
        | E::DiffIdMismatch { .. }
        | E::TooLarge { .. }
        | E::Json { .. }
        | E::Layer { .. }
        | E::InvalidArgument(_) => USAGE,
        E::Unsupported(_) => UNSUPPORTED,
        _ => return None,
    })
}

/// Registry errors; a store error inside is transparent, so looked into.
fn registry_code(e: &crate::registry::RegistryError) -> Option<i32> {
    use crate::registry::RegistryError as R;
    Some(match e {
        R::Engine(e) => return engine_code(e),
        R::NotFound { .. } => NOT_FOUND,
        R::InvalidArgument(_) => USAGE,
        _ => return None,
    })
}

fn snapshot_code(e: &crate::snapshot::SnapshotError) -> Option<i32> {
    use crate::snapshot::SnapshotError as S;
    Some(match e {
        S::Pool(p) => pool_code(p),
        S::NotFound { .. } => NOT_FOUND,
        S::Exists { .. } | S::Precondition { .. } => CONFLICT,
        S::InvalidKey { .. } => USAGE,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes_follow_the_first_known_error_in_the_chain() {
        let e: anyhow::Result<()> =
            Err(P::DeviceNotFound { name: "x".into() }).context("failed to remove volume x");
        assert_eq!(code(&e.unwrap_err()), NOT_FOUND);
        let e = anyhow::Error::new(P::LowSpace {
            space: "data",
            free_pct: 1.0,
            min_pct: 10,
        });
        assert_eq!(code(&e), POOL_SPACE);
        assert_eq!(code(&anyhow::anyhow!("other")), FAILURE);
    }
}
