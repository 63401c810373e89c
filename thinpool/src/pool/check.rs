//! `pool check`: reconcile the store with the pool, verify the kernel's
//! metadata with thin-provisioning-tools where installed (`thin_check` on a
//! deactivated pool, `thin_dump` of a reserved metadata snapshot of a live
//! one), and cross-check the thin ids the metadata holds against the store.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use super::{Pool, RecoveryReport};
use crate::error::Result;
use crate::store::{Backing, DeviceState};
use crate::tool::output;
use crate::units::ThinId;

/// What `pool check` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    /// Whether the pool was live during the check.
    pub active: bool,
    /// Reconciliation's repairs and problems.
    pub recovery: RecoveryReport,
    /// The metadata tool that ran, if any.
    pub tool: Option<String>,
    /// Whether the metadata passed the tool's check.
    pub metadata_ok: Option<bool>,
    /// The tool's messages when it failed.
    pub tool_output: Option<String>,
    /// Thin ids found in the kernel's metadata.
    pub pool_ids: Option<Vec<u32>>,
    /// Store devices the metadata lacks.
    pub missing_in_pool: Vec<String>,
    /// Thin ids in the metadata the store never recorded (now quarantined).
    pub unknown_in_pool: Vec<u32>,
}

impl CheckReport {
    /// True when nothing is wrong or left to do.
    pub fn clean(&self) -> bool {
        self.recovery.problems.is_empty()
            && self.metadata_ok != Some(false)
            && self.missing_in_pool.is_empty()
            && self.unknown_in_pool.is_empty()
    }
}

/// Thin ids named in `thin_dump` XML (`<device dev_id="N" ...>`).
pub fn parse_dump_ids(xml: &str) -> Vec<u32> {
    xml.split("dev_id=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .collect()
}

impl Pool {
    /// Where the metadata is read: a loop pool's file (its loop device
    /// when `live`), or a direct pool's device.
    pub(super) fn metadata_path(&self, live: bool) -> Result<PathBuf> {
        match &self.rec.backing {
            Backing::Loop { metadata_file, .. } if live => Ok(self
                .kernel
                .loop_find(metadata_file)?
                .unwrap_or_else(|| metadata_file.clone())),
            Backing::Loop { metadata_file, .. } => Ok(metadata_file.clone()),
            Backing::Direct { metadata_dev, .. } => Ok(metadata_dev.clone()),
        }
    }

    /// Checks the pool. `tools` runs thin-provisioning-tools as well.
    ///
    /// # Errors
    /// Kernel errors, or [`crate::Error::Tool`] when a tool cannot be started.
    pub fn check(&mut self, tools: bool) -> Result<CheckReport> {
        let mut rep = CheckReport {
            active: self
                .kernel
                .dm_info(&self.rec.dm_name)?
                .is_some_and(|i| i.live_table),
            ..CheckReport::default()
        };
        if rep.active {
            self.activate()?;
            rep.recovery = self.recovery.clone();
        } else {
            for d in self
                .store
                .data
                .devices
                .values()
                .filter(|d| d.state != DeviceState::Ready)
            {
                rep.recovery.problems.push(format!(
                    "{} (thin id {}) has an unfinished operation, resolved at the next activation",
                    d.name, d.id
                ));
            }
        }
        if !tools {
            return Ok(rep);
        }
        let meta = self.metadata_path(rep.active)?;
        let meta_s = meta.to_string_lossy().into_owned();
        let dump = if rep.active {
            rep.tool = Some("thin_dump --metadata-snap".into());
            self.with_metadata_snap(|| output("thin_dump", &["--metadata-snap", &meta_s]))?
        } else {
            rep.tool = Some("thin_check".into());
            let (ok, out, err) = output("thin_check", &[&meta_s])?;
            if !ok {
                rep.metadata_ok = Some(false);
                rep.tool_output = Some(format!("{out}{err}"));
                return Ok(rep);
            }
            output("thin_dump", &[&meta_s])?
        };
        let (ok, xml, err) = dump;
        rep.metadata_ok = Some(ok);
        if !ok {
            rep.tool_output = Some(err);
            return Ok(rep);
        }
        self.cross_check(parse_dump_ids(&xml), &mut rep)?;
        Ok(rep)
    }

    fn cross_check(&mut self, ids: Vec<u32>, rep: &mut CheckReport) -> Result<()> {
        let in_pool: BTreeSet<u32> = ids.iter().copied().collect();
        for d in self.store.data.devices.values() {
            if d.state == DeviceState::Ready && !in_pool.contains(&d.id.get()) {
                rep.missing_in_pool
                    .push(format!("{} (thin id {})", d.name, d.id));
            }
        }
        let mut quarantined = false;
        for id in &in_pool {
            let tid = ThinId::new(u64::from(*id))?;
            if !self.store.data.devices.contains_key(&tid) {
                rep.unknown_in_pool.push(*id);
                quarantined |= self.store.data.quarantined.insert(tid);
            }
        }
        if quarantined {
            self.save()?;
        }
        rep.pool_ids = Some(ids);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_dump_ids;

    #[test]
    fn reads_ids_from_thin_dump() {
        let xml = r#"<superblock uuid="" time="1" transaction="4" version="2" data_block_size="128" nr_data_blocks="160">
  <device dev_id="0" mapped_blocks="1" transaction="0" creation_time="0" snap_time="0">
  </device>
  <device dev_id="17" mapped_blocks="0" transaction="1" creation_time="0" snap_time="0">
  </device>
</superblock>"#;
        assert_eq!(parse_dump_ids(xml), vec![0, 17]);
        assert!(parse_dump_ids("<superblock/>").is_empty());
    }
}
