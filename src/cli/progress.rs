//! One progress reporter for every command, fed by the stages' events: a bar with rate and
//! ETA on a terminal (indicatif), a plain line every few seconds (and at the end of each
//! phase) when stderr is not a terminal, nothing with `--quiet`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static QUIET: AtomicBool = AtomicBool::new(false);

/// `--quiet`: no progress and no stage messages (results and errors still print).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bars,
    Lines,
    Quiet,
}

/// Seconds between two plain lines of one phase when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// The phase in progress: what it is, how far, since when.
struct Phase {
    name: String,
    total: u64,
    /// Units done when the phase was first seen (a resumed run starts past 0).
    first: u64,
    started: Instant,
    last_line: Option<Instant>,
    bar: Option<ProgressBar>,
}

/// The reporter of one command (or of one of its parallel parts).
pub struct Reporter {
    mode: Mode,
    phase: Option<Phase>,
    /// The bars of parallel parts share the terminal through this.
    group: Option<MultiProgress>,
}

impl Default for Reporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter {
    /// Bars on a terminal, lines otherwise, nothing under `--quiet`.
    pub fn new() -> Self {
        let mode = if QUIET.load(Ordering::Relaxed) {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Reporter { mode, phase: None, group: None }
    }

    /// A reporter of one of several parts that run at once: its bar is drawn in `group`,
    /// under the others'.
    pub fn in_group(group: &MultiProgress) -> Self {
        let mut reporter = Self::new();
        reporter.group = Some(group.clone());
        reporter
    }

    /// A message line (a stage begins, a stage was skipped), printed above any bar.
    pub fn message(&self, text: &str) {
        match (self.mode, self.phase.as_ref().and_then(|p| p.bar.as_ref()), &self.group) {
            (Mode::Quiet, _, _) => {}
            (Mode::Bars, _, Some(group)) => {
                if group.println(text).is_err() {
                    eprintln!("{text}");
                }
            }
            (_, Some(bar), _) => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }

    /// Progress of phase `name`: `done` of `total` units (steps, problems), with a detail
    /// (`loss 0.1234`). A new name or total starts a new phase (the previous one is finished).
    pub fn update(&mut self, name: &str, done: u64, total: u64, detail: &str) {
        if self.mode == Mode::Quiet {
            return;
        }
        let same = self.phase.as_ref().is_some_and(|p| p.name == name && p.total == total);
        if !same {
            self.finish();
            let bar = (self.mode == Mode::Bars).then(|| {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template(
                    "{prefix} [{bar:28}] {pos}/{len} {msg} · {per_sec} · {elapsed_precise} · ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(name.to_string());
                match &self.group {
                    Some(group) => group.add(bar),
                    None => bar,
                }
            });
            if let Some(bar) = &bar {
                bar.set_position(done);
                bar.reset_eta();
            }
            self.phase = Some(Phase {
                name: name.to_string(),
                total,
                first: done,
                started: Instant::now(),
                last_line: None,
                bar,
            });
        }
        let Some(phase) = self.phase.as_mut() else { return };
        match &phase.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(detail.to_string());
                if done >= total {
                    bar.finish();
                }
            }
            None => {
                let due = phase.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY);
                if due || done >= total {
                    eprintln!("{}", line(&phase.name, phase.first, done, total, detail, phase.started.elapsed()));
                    phase.last_line = Some(Instant::now());
                }
            }
        }
        if done >= total {
            self.phase = None;
        }
    }

    /// Ends the phase in progress (a bar stays on screen where it stopped).
    pub fn finish(&mut self) {
        if let Some(Phase { bar: Some(bar), .. }) = self.phase.take() {
            bar.abandon();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `name done/total detail · rate/s · elapsed · ETA` (what a bar shows, as one line); the
/// rate and ETA count from `first`, the units already done when the phase was first seen.
fn line(name: &str, first: u64, done: u64, total: u64, detail: &str, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let since = done.saturating_sub(first);
    let rate = if secs > 0.0 && since > 0 { since as f64 / secs } else { 0.0 };
    let eta = if since > 0 && done < total { Some(secs / since as f64 * (total - done) as f64) } else { None };
    let mut s = format!("{name} {done}/{total}");
    if !detail.is_empty() {
        s.push(' ');
        s.push_str(detail);
    }
    s.push_str(&format!(" · {rate:.2}/s · {}", clock(secs)));
    match eta {
        Some(e) => s.push_str(&format!(" · ETA {}", clock(e))),
        None if done >= total => s.push_str(" · done"),
        None => {}
    }
    s
}

/// `h:mm:ss`.
fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_has_rate_elapsed_and_eta() {
        let l = line("stage II", 0, 25, 100, "loss 0.5000", Duration::from_secs(50));
        assert_eq!(l, "stage II 25/100 loss 0.5000 · 0.50/s · 0:00:50 · ETA 0:02:30");
        let l = line("eval", 0, 100, 100, "", Duration::from_secs(3725));
        assert_eq!(l, "eval 100/100 · 0.03/s · 1:02:05 · done");
        // A phase first seen at its first step (or after a resume) counts from there.
        let l = line("stage II", 1, 1, 4, "", Duration::from_millis(1));
        assert_eq!(l, "stage II 1/4 · 0.00/s · 0:00:00");
        let l = line("stage II", 40, 50, 100, "", Duration::from_secs(10));
        assert_eq!(l, "stage II 50/100 · 1.00/s · 0:00:10 · ETA 0:00:50");
    }
}
