//! Pool behaviour on the fake kernel: lifecycle, guards, identity, reboot,
//! and recovery after a crash at every step of every operation.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thinpool::fault::FaultPlan;
use thinpool::pool::pool_dir;
use thinpool::store::DeviceState;
use thinpool::{Bytes, CreateOptions, DataBlocks, Error, FakeKernel, Pool};

fn opts() -> CreateOptions {
    CreateOptions {
        data_size: Bytes(64 << 20),
        metadata_size: Bytes(4 << 20),
        block_size: Bytes(64 << 10),
        low_water: Some(DataBlocks(16)),
        ..CreateOptions::default()
    }
}

fn meta_file(root: &Path) -> PathBuf {
    pool_dir(root).join("metadata")
}

fn open(root: &Path, k: &FakeKernel) -> Pool {
    Pool::open(root, Box::new(k.clone())).unwrap()
}

/// Store and kernel agree one-to-one, nothing is suspended, pending or leaked.
fn assert_consistent(root: &Path, k: &FakeKernel) {
    let mut pool = open(root, k);
    pool.activate().unwrap();
    let store = pool.store().clone();
    let mut store_ids: Vec<u32> = store.devices.keys().map(|i| i.get()).collect();
    store_ids.sort();
    assert_eq!(
        k.thin_ids(&meta_file(root)),
        store_ids,
        "kernel thin ids vs store"
    );
    assert!(
        store
            .devices
            .values()
            .all(|d| d.state == DeviceState::Ready),
        "pending intents left: {:?}",
        store.devices
    );
    assert!(
        store.quarantined.is_empty(),
        "leaked ids: {:?}",
        store.quarantined
    );
    assert!(
        k.suspended().is_empty(),
        "suspended devices: {:?}",
        k.suspended()
    );
    let txid = k.state().metas.get(&meta_file(root)).unwrap().txid;
    assert_eq!(txid, store.transaction_id, "transaction ids out of step");
    for name in k.dm_names() {
        if name.ends_with("-pool") {
            continue;
        }
        let id: u32 = name.rsplit('-').next().unwrap().parse().unwrap();
        let rec = store
            .devices
            .values()
            .find(|d| d.id.get() == id)
            .expect("active dm device without a record");
        assert!(rec.want_active, "{name} active but not wanted");
    }
}

#[test]
fn lifecycle_on_a_loop_pool() {
    let d = tempfile::tempdir().unwrap();
    let k = FakeKernel::new();
    let mut pool = Pool::create(d.path(), Box::new(k.clone()), &opts()).unwrap();
    assert_eq!(
        std::fs::metadata(meta_file(d.path())).unwrap().len(),
        4 << 20
    );
    assert_eq!(
        std::fs::metadata(pool_dir(d.path()).join("data"))
            .unwrap()
            .len(),
        64 << 20
    );
    // The identity device is thin id 0.
    assert_eq!(k.thin_ids(&meta_file(d.path())), vec![0]);
    let a = pool.create_thin("a", "volume", Bytes(16 << 20)).unwrap();
    assert_eq!(a.get(), 1);
    let path = pool.activate_thin("a").unwrap();
    assert!(path.ends_with(pool.thin_dm_name(a)));
    k.write_blocks(&meta_file(d.path()), 1, 5);
    let b = pool.snapshot("a", "b", "volume").unwrap();
    assert_eq!(b.get(), 2);
    assert_eq!(pool.mapped("b").unwrap(), Bytes(5 * (64 << 10)));
    assert!(matches!(
        pool.create_thin("a", "volume", Bytes(1 << 20)),
        Err(Error::DeviceExists { .. })
    ));
    assert!(matches!(
        pool.snapshot("nope", "c", "volume"),
        Err(Error::DeviceNotFound { .. })
    ));
    assert!(pool.deactivate_thin("a").unwrap());
    pool.delete_thin("a").unwrap();
    assert_eq!(k.thin_ids(&meta_file(d.path())), vec![0, 2]);
    // Deleted ids are free again: the next device takes id 1.
    assert_eq!(
        pool.create_thin("c", "volume", Bytes(1 << 20))
            .unwrap()
            .get(),
        1
    );
    let devs = pool.devices().unwrap();
    assert_eq!(
        devs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["c", "b"]
    );
    let st = pool.status().unwrap();
    assert_eq!(st.thin_devices, 2);
    assert_eq!(st.transaction_id, pool.store().transaction_id);
    drop(pool);
    assert_consistent(d.path(), &k);
}

#[test]
fn creating_twice_is_refused_and_options_are_checked() {
    let d = tempfile::tempdir().unwrap();
    let k = FakeKernel::new();
    drop(Pool::create(d.path(), Box::new(k.clone()), &opts()).unwrap());
    assert!(matches!(
        Pool::create(d.path(), Box::new(k.clone()), &opts()),
        Err(Error::PoolExists { .. })
    ));
    let e = tempfile::tempdir().unwrap();
    let bad = CreateOptions {
        block_size: Bytes(96 << 10),
        ..opts()
    };
    assert!(matches!(
        Pool::create(e.path(), Box::new(k.clone()), &bad),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        Pool::open(e.path(), Box::new(k)),
        Err(Error::NoPool { .. })
    ));
}

#[test]
fn free_space_guard_refuses_then_extend_allows() {
    let d = tempfile::tempdir().unwrap();
    let k = FakeKernel::new();
    let mut pool = Pool::create(d.path(), Box::new(k.clone()), &opts()).unwrap();
    // 1024 blocks in all; leave 5% free.
    k.set_extra_used(&meta_file(d.path()), 973);
    let err = pool.create_thin("a", "volume", Bytes(1 << 20)).unwrap_err();
    assert!(
        matches!(err, Error::LowSpace { space: "data", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("thinsnap pool extend"), "{err}");
    assert!(
        pool.store().by_name("a").is_none(),
        "a refused create leaves no record"
    );
    pool.extend(Some(Bytes(128 << 20)), Some(Bytes(8 << 20)))
        .unwrap();
    assert_eq!(
        std::fs::metadata(pool_dir(d.path()).join("data"))
            .unwrap()
            .len(),
        128 << 20
    );
    assert_eq!(
        std::fs::metadata(meta_file(d.path())).unwrap().len(),
        8 << 20
    );
    pool.create_thin("a", "volume", Bytes(1 << 20)).unwrap();
    assert!(matches!(
        pool.extend(Some(Bytes(64 << 20)), None),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn reboot_brings_back_active_devices_and_data() {
    let d = tempfile::tempdir().unwrap();
    let k = FakeKernel::new();
    let mut pool = Pool::create(d.path(), Box::new(k.clone()), &opts()).unwrap();
    pool.create_thin("up", "volume", Bytes(1 << 20)).unwrap();
    pool.create_thin("down", "volume", Bytes(1 << 20)).unwrap();
    let p = pool.activate_thin("up").unwrap();
    drop(pool);
    k.reboot();
    assert!(k.dm_names().is_empty());
    let mut pool = open(d.path(), &k);
    pool.activate().unwrap();
    assert!(
        pool.recovery
            .fixed
            .iter()
            .any(|f| f.contains("re-activated up")),
        "{:?}",
        pool.recovery
    );
    let names = k.dm_names();
    assert!(names.iter().any(|n| p.ends_with(n)), "{names:?}");
    assert_eq!(names.len(), 2, "pool and `up` only: {names:?}");
    drop(pool);
    assert_consistent(d.path(), &k);
}

#[test]
fn a_swapped_metadata_file_is_refused_as_a_different_pool() {
    let k = FakeKernel::new();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut pa = Pool::create(a.path(), Box::new(k.clone()), &opts()).unwrap();
    let mut pb = Pool::create(b.path(), Box::new(k.clone()), &opts()).unwrap();
    pa.deactivate().unwrap();
    pb.deactivate().unwrap();
    drop((pa, pb));
    let other = k.state().metas.get(&meta_file(b.path())).unwrap().clone();
    k.state().metas.insert(meta_file(a.path()), other);
    let mut pa = open(a.path(), &k);
    let err = pa.activate().unwrap_err();
    assert!(matches!(err, Error::IdentityMismatch { .. }), "{err}");
    assert!(err.to_string().contains("different thin pool"), "{err}");
    assert!(
        !k.dm_names().iter().any(|n| n == &pa.record().dm_name),
        "a refused pool is not left active"
    );
}

#[test]
fn destroy_needs_force_while_devices_exist() {
    let d = tempfile::tempdir().unwrap();
    let k = FakeKernel::new();
    let mut pool = Pool::create(d.path(), Box::new(k.clone()), &opts()).unwrap();
    pool.create_thin("a", "volume", Bytes(1 << 20)).unwrap();
    pool.activate_thin("a").unwrap();
    assert!(matches!(
        pool.destroy(false),
        Err(Error::DevicesExist { count: 1 })
    ));
    let pool = open(d.path(), &k);
    pool.destroy(true).unwrap();
    assert!(k.dm_names().is_empty());
    assert!(!pool_dir(d.path()).join("data").exists());
    assert!(!pool_dir(d.path()).join("store").exists());
    assert!(matches!(
        Pool::open(d.path(), Box::new(k)),
        Err(Error::NoPool { .. })
    ));
}

#[test]
fn busy_device_delete_is_marked_and_retried() {
    let d = tempfile::tempdir().unwrap();
    let k = FakeKernel::new();
    let mut pool = Pool::create(d.path(), Box::new(k.clone()), &opts()).unwrap();
    let id = pool.create_thin("a", "volume", Bytes(1 << 20)).unwrap();
    pool.activate_thin("a").unwrap();
    let dm = pool.thin_dm_name(id);
    k.set_open(&dm, 1);
    assert!(matches!(pool.delete_thin("a"), Err(Error::Busy { .. })));
    assert_eq!(
        pool.store().by_name("a").unwrap().state,
        DeviceState::Deleting
    );
    drop(pool);
    k.set_open(&dm, 0);
    // The next command's reconciliation finishes the delete.
    let mut pool = open(d.path(), &k);
    pool.activate().unwrap();
    assert!(pool.store().by_name("a").is_none());
    drop(pool);
    assert_consistent(d.path(), &k);
}

#[test]
fn direct_mode_refuses_a_used_metadata_device_without_force() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data.dev");
    let meta = d.path().join("meta.dev");
    std::fs::write(&data, vec![0u8; 64 << 20]).unwrap();
    let mut junk = vec![0u8; 4 << 20];
    junk[100] = 7;
    std::fs::write(&meta, &junk).unwrap();
    let k = FakeKernel::new();
    let direct = CreateOptions {
        direct: Some((data.clone(), meta.clone())),
        ..opts()
    };
    let root = d.path().join("root");
    let err = Pool::create(&root, Box::new(k.clone()), &direct)
        .err()
        .unwrap();
    assert!(matches!(err, Error::MetadataNotBlank { .. }), "{err}");
    assert_eq!(
        std::fs::read(&meta).unwrap()[100],
        7,
        "refused create must not touch the device"
    );
    let forced = CreateOptions {
        force: true,
        ..direct
    };
    let mut pool = Pool::create(&root, Box::new(k.clone()), &forced).unwrap();
    assert_eq!(pool.status().unwrap().mode, "direct");
    pool.create_thin("v", "volume", Bytes(1 << 20)).unwrap();
}

/// One operation run against a prepared pool.
type Op = fn(&mut Pool) -> thinpool::Result<()>;

fn prepare(root: &Path, k: &FakeKernel) {
    let mut pool = Pool::create(root, Box::new(k.clone()), &opts()).unwrap();
    pool.create_thin("hot", "volume", Bytes(4 << 20)).unwrap();
    pool.activate_thin("hot").unwrap();
    pool.create_thin("cold", "volume", Bytes(4 << 20)).unwrap();
    pool.snapshot("cold", "cold-snap", "volume").unwrap();
}

#[test]
fn recovery_after_a_crash_at_every_step() {
    let ops: Vec<(&str, Op)> = vec![
        ("create", |p| {
            p.create_thin("new", "volume", Bytes(1 << 20)).map(|_| ())
        }),
        ("snapshot active origin", |p| {
            p.snapshot("hot", "new", "volume").map(|_| ())
        }),
        ("snapshot inactive origin", |p| {
            p.snapshot("cold", "new", "volume").map(|_| ())
        }),
        ("delete active", |p| p.delete_thin("hot")),
        ("delete inactive", |p| p.delete_thin("cold-snap")),
        ("activate", |p| p.activate_thin("cold").map(|_| ())),
        ("deactivate", |p| p.deactivate_thin("hot").map(|_| ())),
        ("extend", |p| p.extend(Some(Bytes(96 << 20)), None)),
        ("deactivate pool", |p| p.deactivate()),
    ];
    for (what, op) in ops {
        let mut n = 1;
        loop {
            let d = tempfile::tempdir().unwrap();
            let k = FakeKernel::new();
            prepare(d.path(), &k);
            let plan = Arc::new(FaultPlan::fail_at(n));
            let faulty = Pool::open_with(
                d.path(),
                Box::new(k.with_faults(plan.clone())),
                Some(plan.clone()),
            );
            if let Ok(mut p) = faulty {
                let _ = op(&mut p);
            }
            // The process is gone; a new one opens the pool and recovers.
            assert_consistent(d.path(), &k);
            let mut pool = open(d.path(), &k);
            assert!(pool.device("cold").is_ok(), "{what} step {n}: cold lost");
            pool.create_thin("after", "volume", Bytes(1 << 20))
                .unwrap_or_else(|e| panic!("{what} step {n}: pool unusable after recovery: {e}"));
            drop(pool);
            assert_consistent(d.path(), &k);
            if !plan.fired() {
                break;
            }
            n += 1;
            assert!(n < 200, "{what} never finished");
        }
        assert!(
            n > 2,
            "{what} took only {n} steps: the plan is not reaching it"
        );
    }
}

#[test]
fn a_create_that_fails_in_the_kernel_leaves_the_root_as_it_was() {
    for n in 1..6 {
        let d = tempfile::tempdir().unwrap();
        let k = FakeKernel::new();
        let plan = Arc::new(FaultPlan::fail_once(n));
        let r = Pool::create(d.path(), Box::new(k.with_faults(plan.clone())), &opts());
        assert!(r.is_err(), "step {n} should fail");
        assert!(
            !pool_dir(d.path()).join("store").exists(),
            "step {n}: store left behind"
        );
        assert!(
            !pool_dir(d.path()).join("data").exists(),
            "step {n}: data file left behind"
        );
        assert!(
            k.dm_names().is_empty(),
            "step {n}: dm devices left: {:?}",
            k.dm_names()
        );
        // And a later create succeeds.
        Pool::create(d.path(), Box::new(k.clone()), &opts()).unwrap();
    }
}

#[test]
fn unpublished_staging_devices_are_removed_by_recovery() {
    let d = tempfile::tempdir().unwrap();
    let k = FakeKernel::new();
    let mut pool = Pool::create(d.path(), Box::new(k.clone()), &opts()).unwrap();
    let s = pool
        .create_staging("done", "volume", Bytes(1 << 20))
        .unwrap();
    pool.publish(&s, "done").unwrap();
    let s2 = pool
        .create_staging("dies", "volume", Bytes(1 << 20))
        .unwrap();
    pool.activate_thin(&s2).unwrap();
    assert!(matches!(
        pool.create_staging("done", "volume", Bytes(1)),
        Err(Error::DeviceExists { .. })
    ));
    drop(pool); // the command dies before publishing
    let mut pool = open(d.path(), &k);
    pool.activate().unwrap();
    assert!(pool.device("done").is_ok());
    assert!(
        pool.store().by_name(&s2).is_none(),
        "staging device survived"
    );
    assert!(
        pool.recovery
            .fixed
            .iter()
            .any(|f| f.contains(".partial-dies")),
        "{:?}",
        pool.recovery
    );
    drop(pool);
    assert_consistent(d.path(), &k);
}

#[test]
fn an_unhealthy_pool_refuses_changes_and_says_what_to_run() {
    let d = tempfile::tempdir().unwrap();
    let k = FakeKernel::new();
    let mut pool = Pool::create(d.path(), Box::new(k.clone()), &opts()).unwrap();
    for (health, shown) in [
        ("needs_check", "needs_check"),
        ("ro", "read-only"),
        ("fail", "failed"),
    ] {
        k.set_health(&meta_file(d.path()), Some(health));
        let err = pool.create_thin("x", "volume", Bytes(1 << 20)).unwrap_err();
        assert!(
            matches!(err, Error::PoolUnhealthy { .. }),
            "{health}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(shown) && msg.contains("thinsnap pool check"),
            "{health}: {msg}"
        );
        assert!(
            pool.store().by_name("x").is_none(),
            "{health}: a refused create leaves no record"
        );
    }
    k.set_health(&meta_file(d.path()), None);
    pool.create_thin("x", "volume", Bytes(1 << 20)).unwrap();
    k.set_health(&meta_file(d.path()), Some("needs_check"));
    let st = pool.status().unwrap();
    assert!(st.needs_check, "status reports needs_check");
}

#[test]
fn a_thin_device_grows_and_never_shrinks() {
    let d = tempfile::tempdir().unwrap();
    let k = FakeKernel::new();
    let mut pool = Pool::create(d.path(), Box::new(k.clone()), &opts()).unwrap();
    pool.create_thin("v", "volume", Bytes(1 << 20)).unwrap();
    pool.activate_thin("v").unwrap();
    pool.resize_thin("v", Bytes(4 << 20)).unwrap();
    assert_eq!(pool.device("v").unwrap().size.bytes(), Bytes(4 << 20));
    let err = pool.resize_thin("v", Bytes(2 << 20)).unwrap_err();
    assert!(matches!(err, Error::InvalidSize { .. }), "{err}");
    assert!(k.suspended().is_empty(), "resize leaves nothing suspended");
    drop(pool);
    assert_consistent(d.path(), &k);
}
