//! Reconciliation of the store with the kernel, run on every activation:
//! resume what a crash left suspended, check the transaction id, resolve
//! every recorded intent, and bring dm devices in line with what the store
//! wants active. What cannot be resolved safely is reported, not guessed.

use serde::Serialize;

use super::Pool;
use crate::error::{Error, Result};
use crate::store::DeviceState;
use crate::units::ThinId;

/// What reconciliation found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Repairs made.
    pub fixed: Vec<String>,
    /// Problems left for the user.
    pub problems: Vec<String>,
}

impl Pool {
    pub(super) fn reconcile(&mut self) -> Result<RecoveryReport> {
        let mut rep = RecoveryReport::default();
        let ours = self.resume_suspended(&mut rep)?;
        let k = self.kernel_status()?.transaction_id;
        let t = self.store.data.transaction_id;
        let pending: Vec<(ThinId, DeviceState)> = self
            .store
            .data
            .devices
            .values()
            .filter(|d| d.state != DeviceState::Ready)
            .map(|d| (d.id, d.state.clone()))
            .collect();
        // Each operation bumps the kernel's id once, after its message, so
        // a crash leaves it at the store's value or one past it.
        if k != t && (k != t + 1 || pending.is_empty()) {
            return Err(Error::Unreconciled {
                detail: format!(
                    "the pool's transaction id is {k} but the store expects {t}; the pool was changed by another tool or the store is from another pool"
                ),
            });
        }
        let mut changed = k != t;
        self.store.data.transaction_id = k;
        if !pending.is_empty() {
            self.finish_pending(pending, &mut rep)?;
            changed = true;
        }
        changed |= self.remove_partials(&mut rep)?;
        changed |= self.align_activation(&ours, &mut rep)?;
        if changed {
            self.save()?;
        }
        Ok(rep)
    }

    /// Lists this pool's dm devices (the pool itself aside) and resumes any
    /// left suspended: a crash during a snapshot leaves its origin
    /// suspended, and I/O to it would hang until resumed.
    fn resume_suspended(&mut self, rep: &mut RecoveryReport) -> Result<Vec<String>> {
        let prefix = format!(
            "{}-",
            self.rec
                .dm_name
                .strip_suffix("-pool")
                .unwrap_or(&self.rec.dm_name)
        );
        let ours: Vec<String> = self
            .kernel
            .dm_list()?
            .into_iter()
            .filter(|n| n.starts_with(&prefix) && *n != self.rec.dm_name)
            .collect();
        for name in &ours {
            if self.kernel.dm_info(name)?.is_some_and(|i| i.suspended) {
                self.kernel.dm_resume(name)?;
                rep.fixed.push(format!(
                    "resumed {name}, left suspended by an interrupted snapshot"
                ));
            }
        }
        Ok(ours)
    }

    /// Finishes the deletes that were under way and rolls back the creates.
    /// A device still open stays marked, for a later open to retry.
    fn finish_pending(
        &mut self,
        pending: Vec<(ThinId, DeviceState)>,
        rep: &mut RecoveryReport,
    ) -> Result<()> {
        for (id, state) in pending {
            let name = self
                .store
                .data
                .devices
                .get(&id)
                .map(|d| d.name.clone())
                .unwrap_or_default();
            if state == DeviceState::Creating {
                // Rolled back, never forward: the command that made it never
                // reported success, so nobody relies on it.
                if let Some(d) = self.store.data.devices.get_mut(&id) {
                    d.state = DeviceState::Deleting;
                }
            }
            match self.finish_delete(id, false) {
                Ok(()) => rep.fixed.push(match state {
                    DeviceState::Creating => {
                        format!("rolled back interrupted create of {name} (thin id {id})")
                    }
                    _ => format!("finished interrupted delete of {name} (thin id {id})"),
                }),
                Err(Error::Busy { .. }) => rep.problems.push(format!(
                    "{name} (thin id {id}) is still open; its delete will be retried"
                )),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes staging devices whose command died before publishing them.
    /// The lock is held for a whole command, so none can be in use by a
    /// live one.
    fn remove_partials(&mut self, rep: &mut RecoveryReport) -> Result<bool> {
        let partials: Vec<(ThinId, String)> = self
            .store
            .data
            .devices
            .values()
            .filter(|d| d.name.starts_with(super::thin::PARTIAL_PREFIX))
            .map(|d| (d.id, d.name.clone()))
            .collect();
        for (id, name) in &partials {
            if let Some(d) = self.store.data.devices.get_mut(id) {
                d.state = DeviceState::Deleting;
                d.want_active = false;
            }
            self.save()?;
            match self.finish_delete(*id, true) {
                Ok(()) => rep.fixed.push(format!(
                    "removed {name}, left unfinished by an interrupted command"
                )),
                Err(Error::Busy { .. }) => rep
                    .problems
                    .push(format!("{name} is still open; its delete will be retried")),
                Err(e) => return Err(e),
            }
        }
        Ok(!partials.is_empty())
    }

    /// Activates devices the store wants active (after a reboot) and
    /// removes dm devices the store does not want.
    fn align_activation(&mut self, ours: &[String], rep: &mut RecoveryReport) -> Result<bool> {
        let mut changed = false;
        let wanted: Vec<_> = self
            .store
            .data
            .devices
            .values()
            .filter(|d| d.state == DeviceState::Ready && d.want_active)
            .map(|d| (d.id, d.size, d.name.clone()))
            .collect();
        for (id, size, name) in wanted {
            if !self.is_active(id)? {
                self.bring_up(id, size)?;
                rep.fixed.push(format!("re-activated {name}"));
            }
        }
        for dm in ours {
            let known = self
                .store
                .data
                .devices
                .values()
                .find(|d| self.thin_dm_name(d.id) == *dm)
                .map(|d| (d.id, d.want_active));
            match known {
                Some((_, true)) => {}
                Some((id, false)) => {
                    if self.kernel.dm_info(dm)?.is_some_and(|i| i.open_count > 0) {
                        // In use (mounted): keep it and record the truth.
                        if let Some(d) = self.store.data.devices.get_mut(&id) {
                            d.want_active = true;
                        }
                        changed = true;
                    } else if self.kernel.dm_info(dm)?.is_some() {
                        self.take_down(id)?;
                        rep.fixed.push(format!(
                            "deactivated {dm}, left active by an interrupted command"
                        ));
                    }
                }
                None => {
                    if self.kernel.dm_info(dm)?.is_some_and(|i| i.open_count == 0) {
                        self.kernel.dm_remove(dm, false)?;
                        self.kernel.remove_node(dm)?;
                        rep.fixed.push(format!("removed stale device {dm}"));
                    } else {
                        rep.problems
                            .push(format!("{dm} is active and open but unknown to the store"));
                    }
                }
            }
        }
        Ok(changed)
    }
}
