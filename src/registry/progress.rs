//! What a pull or push shows while it works: on a terminal one bar per
//! blob (bytes, speed) under indicatif; otherwise one plain line per event,
//! so logs stay readable; nothing at all with `-q`. Everything goes to
//! stderr: stdout carries only the command's result.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::human;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bars,
    Lines,
    Quiet,
}

/// The progress display of one command.
pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
}

/// One blob's progress.
pub struct Task {
    label: String,
    bar: Option<ProgressBar>,
    multi: MultiProgress,
    lines: bool,
}

impl Progress {
    /// Bars on a terminal, lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if terminal_width() > 0 {
            Mode::Bars
        } else {
            Mode::Lines
        };
        let target = if mode == Mode::Bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            mode,
            multi: MultiProgress::with_draw_target(target),
        }
    }

    /// A message line (above the bars on a terminal).
    pub fn line(&self, msg: &str) {
        match self.mode {
            // Printed with the bars out of the way, so it ends its line.
            Mode::Bars => self.multi.suspend(|| eprintln!("{msg}")),
            Mode::Lines => eprintln!("{msg}"),
            Mode::Quiet => {}
        }
    }

    /// A blob that needs no work ("Already exists"): one line, no bar.
    pub fn event(&self, label: &str, msg: &str) {
        self.line(&format!("{label}: {msg}"));
    }

    /// A task of `total` bytes called `label` (a short digest), starting
    /// with `verb` ("Downloading", "Pushing").
    pub fn task(&self, label: &str, verb: &str, total: u64) -> Task {
        let bar = (self.mode == Mode::Bars).then(|| {
            let b = self.multi.add(ProgressBar::new(total));
            let style = ProgressStyle::with_template(
                "{prefix}: {msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            b.set_style(style);
            b.set_prefix(label.to_string());
            b.set_message(verb.to_string());
            b
        });
        if self.mode == Mode::Lines {
            eprintln!("{label}: {verb} ({})", human::size(total));
        }
        Task {
            label: label.to_string(),
            bar,
            multi: self.multi.clone(),
            lines: self.mode == Mode::Lines,
        }
    }
}

impl Task {
    /// `n` more bytes done.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Back to zero (a retry that could not resume).
    pub fn reset(&self) {
        if let Some(b) = &self.bar {
            b.set_position(0);
        }
    }

    /// A note in passing ("Retrying").
    pub fn note(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
        } else if self.lines {
            eprintln!("{}: {msg}", self.label);
        }
    }

    /// Done, with a final word ("Pull complete", "Already exists").
    /// A finished bar becomes a plain line, so that when the last is done
    /// the terminal is left at the start of a fresh line.
    pub fn finish(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
            self.multi.remove(b);
            self.multi.suspend(|| eprintln!("{}: {msg}", self.label));
        } else if self.lines {
            eprintln!("{}: {msg}", self.label);
        }
    }
}

/// Columns of the terminal on stderr; 0 when it is not a terminal or its
/// size is unknown (a serial console), where bars cannot be drawn right.
fn terminal_width() -> u16 {
    let err = std::io::stderr();
    if !err.is_terminal() {
        return 0;
    }
    rustix::termios::tcgetwinsize(&err).map_or(0, |w| w.ws_col)
}
