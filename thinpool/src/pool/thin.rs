//! Thin devices: create, snapshot, activate, deactivate, delete, mapped
//! size. Each kernel message is preceded by a saved intent and followed by
//! a transaction id bump, so recovery can tell what happened.

use std::path::PathBuf;

use nix::errno::Errno;

use super::Pool;
use crate::error::{Error, Result};
use crate::fault::crash_point;
use crate::status::parse_thin_status;
use crate::store::{Backing, DeviceRecord, DeviceState};
use crate::units::{Bytes, Sectors, ThinId};

/// How many ids to skip past when `create_thin` finds an id the store did
/// not know (a leak from outside); each such id is quarantined.
const EEXIST_RETRIES: usize = 16;

/// Checks a user-chosen device name.
///
/// # Errors
/// [`Error::InvalidName`].
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 128 {
        return bad("must be 1 to 128 characters");
    }
    if name.starts_with(['.', '-']) {
        return bad("must not start with '.' or '-'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return bad("may hold only letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Name prefix of staging devices: filled first, published by a rename, and
/// deleted by recovery if their command died before publishing them.
pub const PARTIAL_PREFIX: &str = ".partial-";

impl Pool {
    /// Creates an empty staging device for `name`; fill it, then
    /// [`Pool::publish`] it. Returns the staging name.
    ///
    /// # Errors
    /// As [`Pool::create_thin`].
    pub fn create_staging(&mut self, name: &str, owner: &str, size: Bytes) -> Result<String> {
        validate_name(name)?;
        if self.store.data.by_name(name).is_some() {
            return Err(Error::DeviceExists {
                name: name.to_string(),
            });
        }
        if size.0 == 0 {
            return Err(Error::InvalidSize {
                input: "0".into(),
                reason: "a device needs a size above zero".into(),
            });
        }
        let staging = format!("{PARTIAL_PREFIX}{name}");
        self.create_thin_inner(&staging, owner, Sectors(size.0.div_ceil(512)), 1)?;
        Ok(staging)
    }

    /// Gives a filled staging device its real name, in one store write.
    ///
    /// # Errors
    /// [`Error::DeviceNotFound`], [`Error::DeviceExists`], store errors.
    pub fn publish(&mut self, staging: &str, name: &str) -> Result<()> {
        validate_name(name)?;
        if self.store.data.by_name(name).is_some() {
            return Err(Error::DeviceExists {
                name: name.to_string(),
            });
        }
        let id = self.device(staging)?.id;
        if let Some(d) = self.store.data.devices.get_mut(&id) {
            d.name = name.to_string();
        }
        self.save()
    }

    /// Sends a pool message and bumps the transaction id after it.
    fn message_with_txid(&mut self, msg: &str) -> Result<()> {
        let pool = self.rec.dm_name.clone();
        self.kernel.dm_message(&pool, msg)?;
        let t = self.store.data.transaction_id;
        self.kernel
            .dm_message(&pool, &format!("set_transaction_id {t} {}", t + 1))?;
        self.store.data.transaction_id = t + 1;
        Ok(())
    }

    /// A ready device by name.
    ///
    /// # Errors
    /// [`Error::DeviceNotFound`] when there is none (or it is being made or removed).
    pub fn device(&self, name: &str) -> Result<DeviceRecord> {
        match self.store.data.by_name(name) {
            Some(d) if d.state == DeviceState::Ready => Ok(d.clone()),
            _ => Err(Error::DeviceNotFound {
                name: name.to_string(),
            }),
        }
    }

    /// Creates an empty thin device of `size` (rounded up to whole sectors).
    ///
    /// # Errors
    /// [`Error::DeviceExists`], [`Error::InvalidName`], [`Error::LowSpace`],
    /// [`Error::PoolUnhealthy`], kernel errors.
    pub fn create_thin(&mut self, name: &str, owner: &str, size: Bytes) -> Result<ThinId> {
        validate_name(name)?;
        if size.0 == 0 {
            return Err(Error::InvalidSize {
                input: "0".into(),
                reason: "a device needs a size above zero".into(),
            });
        }
        self.create_thin_inner(name, owner, Sectors(size.0.div_ceil(512)), 1)
    }

    pub(super) fn create_thin_inner(
        &mut self,
        name: &str,
        owner: &str,
        size: Sectors,
        first_id: u32,
    ) -> Result<ThinId> {
        self.activate()?;
        if self.store.data.by_name(name).is_some() {
            return Err(Error::DeviceExists {
                name: name.to_string(),
            });
        }
        self.guard_space()?;
        for _ in 0..EEXIST_RETRIES {
            let id = self.store.data.free_id(first_id)?;
            self.record_intent(id, name, owner, size, None)?;
            crash_point("create-after-intent");
            match self.message_with_txid(&format!("create_thin {id}")) {
                Ok(()) => {
                    crash_point("create-after-message");
                    return self.mark_ready(id);
                }
                Err(e) if e.errno() == Some(Errno::EEXIST) => {
                    // The kernel has an id the store never recorded: never
                    // touch it, never reuse it, and try the next one.
                    self.store.data.devices.remove(&id);
                    self.store.data.quarantined.insert(id);
                    self.save()?;
                }
                Err(e) => return Err(self.undo_intent(id, e)),
            }
        }
        Err(Error::ThinIdsExhausted)
    }

    fn record_intent(
        &mut self,
        id: ThinId,
        name: &str,
        owner: &str,
        size: Sectors,
        origin: Option<String>,
    ) -> Result<()> {
        self.store.data.devices.insert(
            id,
            DeviceRecord {
                id,
                name: name.to_string(),
                owner: owner.to_string(),
                size,
                origin,
                state: DeviceState::Creating,
                want_active: false,
                created: super::now(),
            },
        );
        self.save()
    }

    fn mark_ready(&mut self, id: ThinId) -> Result<ThinId> {
        if let Some(d) = self.store.data.devices.get_mut(&id) {
            d.state = DeviceState::Ready;
        }
        self.save()?;
        Ok(id)
    }

    /// After a failed message (the process lives on): drop the intent if the
    /// kernel surely has no such device, else leave it for recovery.
    fn undo_intent(&mut self, id: ThinId, err: Error) -> Error {
        let pool = self.rec.dm_name.clone();
        let gone = match self.kernel.dm_message(&pool, &format!("delete {id}")) {
            Ok(_) => true,
            Err(e) => e.errno() == Some(Errno::ENODATA),
        };
        if gone {
            self.store.data.devices.remove(&id);
            if let Err(save) = self.save() {
                return Error::Unreconciled {
                    detail: format!("{err}; and then {save}"),
                };
            }
        }
        err
    }

    /// Snapshots `origin` as a new device `name` (same size). An active
    /// origin is suspended around the snapshot and always resumed.
    ///
    /// # Errors
    /// As [`Pool::create_thin`], plus [`Error::DeviceNotFound`] for the origin.
    pub fn snapshot(&mut self, origin: &str, name: &str, owner: &str) -> Result<ThinId> {
        validate_name(name)?;
        self.activate()?;
        let o = self.device(origin)?;
        if self.store.data.by_name(name).is_some() {
            return Err(Error::DeviceExists {
                name: name.to_string(),
            });
        }
        self.guard_space()?;
        let id = self.store.data.free_id(1)?;
        self.record_intent(id, name, owner, o.size, Some(o.name.clone()))?;
        let origin_dm = self.thin_dm_name(o.id);
        let active = self
            .kernel
            .dm_info(&origin_dm)?
            .is_some_and(|i| i.live_table);
        if active {
            // The kernel requires an active origin to be quiesced around
            // create_snap, or the snapshot may miss in-flight writes.
            if let Err(e) = self.kernel.dm_suspend(&origin_dm) {
                return Err(self.undo_intent(id, e));
            }
        }
        crash_point("snapshot-suspended");
        let sent = self
            .kernel
            .dm_message(&self.rec.dm_name, &format!("create_snap {id} {}", o.id));
        crash_point("snapshot-after-create-snap");
        let resumed = if active {
            self.kernel.dm_resume(&origin_dm)
        } else {
            Ok(())
        };
        if let Err(e) = sent {
            return Err(self.undo_intent(id, e));
        }
        resumed?;
        let t = self.store.data.transaction_id;
        self.kernel.dm_message(
            &self.rec.dm_name,
            &format!("set_transaction_id {t} {}", t + 1),
        )?;
        self.store.data.transaction_id = t + 1;
        self.mark_ready(id)
    }

    /// Activates a device and returns its block device path.
    ///
    /// # Errors
    /// [`Error::DeviceNotFound`], kernel errors.
    pub fn activate_thin(&mut self, name: &str) -> Result<PathBuf> {
        self.activate()?;
        let d = self.device(name)?;
        if !d.want_active {
            if let Some(r) = self.store.data.devices.get_mut(&d.id) {
                r.want_active = true;
            }
            self.save()?;
        }
        self.bring_up(d.id, d.size)
    }

    /// Makes sure the dm device for `id` is live and has a node.
    pub(super) fn bring_up(&mut self, id: ThinId, size: Sectors) -> Result<PathBuf> {
        let dm = self.thin_dm_name(id);
        if let Some(info) = self.kernel.dm_info(&dm)? {
            if info.live_table {
                if info.suspended {
                    self.kernel.dm_resume(&dm)?;
                }
                return self.kernel.ensure_node(&dm, &info);
            }
            self.kernel.dm_remove(&dm, false)?;
        }
        let table = self.thin_table(id, size)?;
        let info = self.kernel.dm_create(&dm, None, &table)?;
        self.kernel.ensure_node(&dm, &info)
    }

    /// Deactivates a device. Returns `false` when it is still open and its
    /// removal was deferred to its last close.
    ///
    /// # Errors
    /// [`Error::DeviceNotFound`], kernel errors.
    pub fn deactivate_thin(&mut self, name: &str) -> Result<bool> {
        let d = self.device(name)?;
        if d.want_active {
            if let Some(r) = self.store.data.devices.get_mut(&d.id) {
                r.want_active = false;
            }
            self.save()?;
        }
        self.take_down(d.id)
    }

    /// Removes the dm device of `id` if present: plain removal (the crate
    /// retries EBUSY), then deferred removal if it is still held open.
    pub(super) fn take_down(&mut self, id: ThinId) -> Result<bool> {
        let dm = self.thin_dm_name(id);
        if self.kernel.dm_info(&dm)?.is_none() {
            self.kernel.remove_node(&dm)?;
            return Ok(true);
        }
        match self.kernel.dm_remove(&dm, false) {
            Ok(()) => {
                self.kernel.remove_node(&dm)?;
                Ok(true)
            }
            Err(e) if e.errno() == Some(Errno::ENXIO) => Ok(true),
            Err(e) if e.errno() == Some(Errno::EBUSY) => {
                self.kernel.dm_remove(&dm, true)?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a device and frees its id. On loop pools the device is
    /// discarded first, so the data file shrinks and no stale data survives.
    ///
    /// # Errors
    /// [`Error::DeviceNotFound`]; [`Error::Busy`] when it is held open (it
    /// stays marked and later commands retry); kernel errors.
    pub fn delete_thin(&mut self, name: &str) -> Result<()> {
        self.activate()?;
        let id = match self.store.data.by_name(name) {
            Some(d) if d.state == DeviceState::Ready && d.id.get() != super::IDENTITY_ID => d.id,
            _ => {
                return Err(Error::DeviceNotFound {
                    name: name.to_string(),
                })
            }
        };
        if let Some(d) = self.store.data.devices.get_mut(&id) {
            d.state = DeviceState::Deleting;
            d.want_active = false;
        }
        self.save()?;
        crash_point("delete-after-intent");
        self.finish_delete(id, true)
    }

    /// Completes a delete whose intent is saved. `bump` sends the
    /// transaction id after the delete (recovery settles it itself).
    pub(super) fn finish_delete(&mut self, id: ThinId, bump: bool) -> Result<()> {
        let name = self
            .store
            .data
            .devices
            .get(&id)
            .map(|d| d.name.clone())
            .unwrap_or_default();
        let dm = self.thin_dm_name(id);
        if matches!(self.rec.backing, Backing::Loop { .. }) {
            self.discard_if_unused(id)?;
        }
        if !self.take_down(id)? {
            return Err(Error::Busy { name });
        }
        let msg = format!("delete {id}");
        let sent = if bump {
            self.message_with_txid(&msg)
        } else {
            self.kernel.dm_message(&self.rec.dm_name, &msg).map(|_| ())
        };
        match sent {
            Ok(()) => {}
            Err(e) if e.errno() == Some(Errno::ENODATA) => {}
            Err(e) if e.errno() == Some(Errno::EBUSY) => return Err(Error::Busy { name: dm }),
            Err(e) => return Err(e),
        }
        crash_point("delete-after-message");
        self.store.data.devices.remove(&id);
        self.save()
    }

    /// Bytes of pool data a device maps (activating it briefly if needed).
    ///
    /// # Errors
    /// [`Error::DeviceNotFound`], kernel errors.
    pub fn mapped(&mut self, name: &str) -> Result<Bytes> {
        self.activate()?;
        let d = self.device(name)?;
        let dm = self.thin_dm_name(d.id);
        let was_up = self.kernel.dm_info(&dm)?.is_some_and(|i| i.live_table);
        if !was_up {
            self.bring_up(d.id, d.size)?;
        }
        let line = self.kernel.dm_status(&dm);
        if !was_up {
            self.take_down(d.id)?;
        }
        Ok(parse_thin_status(&line?)
            .map(|s| s.bytes())
            .unwrap_or_default())
    }

    /// Grows a device to `size` (whole sectors): the record first, then,
    /// if it is active, a table reload (suspend, always resume). An inactive
    /// device picks up the recorded size when next activated, so a crash in
    /// between loses nothing.
    ///
    /// # Errors
    /// [`Error::DeviceNotFound`], [`Error::InvalidSize`] for a shrink,
    /// kernel errors.
    pub fn resize_thin(&mut self, name: &str, size: Bytes) -> Result<()> {
        self.activate()?;
        let d = self.device(name)?;
        let new = Sectors(size.0.div_ceil(512));
        if new < d.size {
            return Err(Error::InvalidSize {
                input: crate::units::format_size(size),
                reason: format!("{name} is {}; thin devices only grow", d.size.bytes()),
            });
        }
        if new == d.size {
            return Ok(());
        }
        if let Some(r) = self.store.data.devices.get_mut(&d.id) {
            r.size = new;
        }
        self.save()?;
        let dm = self.thin_dm_name(d.id);
        if self.kernel.dm_info(&dm)?.is_some_and(|i| i.live_table) {
            let table = self.thin_table(d.id, new)?;
            self.kernel.dm_load(&dm, &table)?;
            self.kernel.dm_suspend(&dm)?;
            crash_point("resize-suspended");
            self.kernel.dm_resume(&dm)?;
        }
        Ok(())
    }

    /// Whether a device's dm device is live now.
    ///
    /// # Errors
    /// Kernel errors.
    pub fn is_active(&self, id: ThinId) -> Result<bool> {
        Ok(self
            .kernel
            .dm_info(&self.thin_dm_name(id))?
            .is_some_and(|i| i.live_table))
    }
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn names_are_checked() {
        for ok in ["a", "golden-disk.v2", "x_1"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
