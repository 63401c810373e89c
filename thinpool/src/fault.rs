//! Fault injection. Two kinds, both off unless asked for:
//! - [`FaultPlan`]: the fake kernel and the store fail at step N and stay
//!   failed (the process "died"), for the host's crash-at-every-step test.
//! - [`crash_point`]: a named point where the real process kills itself
//!   with SIGKILL when `THINSNAP_CRASH_AT` names it, so the VM suite can
//!   `kill -9` a command at an exact step rather than by timing luck.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{Error, KernelError, Result};

/// Counts steps and fails from step `fail_at` on.
#[derive(Debug, Default)]
pub struct FaultPlan {
    fail_at: AtomicU64,
    steps: AtomicU64,
    dead: AtomicBool,
    once: bool,
}

impl FaultPlan {
    /// A plan that fails at step `n` (1-based); 0 never fails.
    pub fn fail_at(n: u64) -> FaultPlan {
        FaultPlan {
            fail_at: AtomicU64::new(n),
            ..FaultPlan::default()
        }
    }

    /// A plan that fails only step `n`: an error the process lives through.
    pub fn fail_once(n: u64) -> FaultPlan {
        FaultPlan {
            fail_at: AtomicU64::new(n),
            once: true,
            ..FaultPlan::default()
        }
    }

    /// Counts one step; fails if this is the chosen step or (unless the
    /// plan fails once) one after it.
    ///
    /// # Errors
    /// A kernel-shaped error naming `what` once the plan has fired.
    pub fn step(&self, what: &str) -> Result<()> {
        let n = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
        let at = self.fail_at.load(Ordering::SeqCst);
        let hit = if self.once {
            n == at
        } else {
            at != 0 && n >= at
        };
        if (self.dead.load(Ordering::SeqCst) && !self.once) || hit {
            self.dead.store(true, Ordering::SeqCst);
            return Err(Error::Kernel {
                op: "continue (injected crash) at",
                target: what.to_string(),
                source: KernelError::Other(format!("injected fault at step {at}")),
            });
        }
        Ok(())
    }

    /// Whether the plan has fired.
    pub fn fired(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Steps counted so far.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::SeqCst)
    }
}

/// Environment variable naming the crash point to die at.
pub const CRASH_ENV: &str = "THINSNAP_CRASH_AT";

/// Kills this process with SIGKILL if `THINSNAP_CRASH_AT` equals `name`.
/// Used only by tests; a normal run never sets the variable.
pub fn crash_point(name: &str) {
    if std::env::var(CRASH_ENV).is_ok_and(|v| v == name) {
        // SIGKILL cannot be caught: nothing after this point runs, exactly
        // as with `kill -9` from outside.
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_fails_at_step_and_stays_failed() {
        let p = FaultPlan::fail_at(3);
        assert!(p.step("a").is_ok());
        assert!(p.step("b").is_ok());
        assert!(p.step("c").is_err());
        assert!(p.step("d").is_err());
        assert!(p.fired());
        let never = FaultPlan::fail_at(0);
        for _ in 0..100 {
            assert!(never.step("x").is_ok());
        }
    }
}
