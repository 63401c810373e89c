//! Early writeback of extracted files. A layer is made durable when its
//! filesystem is unmounted, which writes back everything the layer wrote
//! in one long flush after the last entry. Handing each finished file to
//! a second thread that starts its writeback (`POSIX_FADV_DONTNEED`
//! writes dirty pages back without waiting, then drops the clean ones)
//! lets that work run on another CPU while later entries are extracted;
//! the final flush is then mostly done. Durability still comes from the
//! unmount: this only starts it sooner.

use std::fs::File;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;

use rustix::fs::{fadvise, Advice};

/// Files waiting for the writeback thread; past this many the extracting
/// thread closes them itself rather than wait.
const QUEUE: usize = 256;

pub(super) struct Writeback {
    files: Option<SyncSender<File>>,
    worker: Option<JoinHandle<()>>,
}

impl Writeback {
    /// Starts the thread; without one, files are simply closed.
    pub(super) fn new() -> Writeback {
        let (files, rx) = mpsc::sync_channel::<File>(QUEUE);
        let worker = std::thread::Builder::new()
            .name("writeback".into())
            .spawn(move || {
                for f in rx {
                    // Only a hint: a failure changes nothing but timing.
                    let _ = fadvise(&f, 0, None, Advice::DontNeed);
                }
            })
            .ok();
        Writeback {
            files: worker.as_ref().map(|_| files),
            worker,
        }
    }

    /// Takes a fully written file (closing it once its writeback started).
    pub(super) fn hand_over(&self, f: File) {
        if let Some(tx) = &self.files {
            match tx.try_send(f) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                // The thread is behind: close it here, the unmount flushes it.
                Err(TrySendError::Full(f)) => drop(f),
            }
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.files = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
