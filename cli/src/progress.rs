//! Progress while a run works: a bar on a terminal, periodic log lines otherwise.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Makes one counter per stage.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    quiet: bool,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Self {
        Self { quiet }
    }

    /// A bar towards a known `total`, for work whose size is known up front.
    pub(crate) fn sized(&self, stage: &'static str, unit: &'static str, total: u64) -> Counter {
        let counter = self.counter(stage, unit);
        counter.bar.set_length(total);
        counter.bar.set_style(
            ProgressStyle::with_template("{prefix:>8} {bar:30} {human_pos}/{human_len} {msg} ({per_sec}, eta {eta})")
                .expect("valid template"),
        );
        counter
    }

    pub(crate) fn counter(&self, stage: &'static str, unit: &'static str) -> Counter {
        let bar = if self.quiet {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>8} {spinner} {human_pos} {msg} ({per_sec}, {elapsed})")
                    .expect("valid template"),
            );
            bar.set_prefix(stage);
            bar.set_message(unit);
            bar
        };
        Counter {
            bar,
            stage,
            unit,
            last_log: std::sync::Mutex::new(Instant::now()),
        }
    }
}

/// A counter of one stage.
#[derive(Debug)]
pub(crate) struct Counter {
    bar: ProgressBar,
    stage: &'static str,
    unit: &'static str,
    last_log: std::sync::Mutex<Instant>,
}

impl Counter {
    pub(crate) fn set(&self, n: u64) {
        self.bar.set_position(n);
        // Without a terminal the bar is invisible: say something every few seconds.
        if self.bar.is_hidden() {
            let mut last = self.last_log.lock().expect("progress lock");
            if last.elapsed() >= Duration::from_secs(5) {
                *last = Instant::now();
                tracing::info!(stage = self.stage, unit = self.unit, done = n, "progress");
            }
        }
    }

    pub(crate) fn finish(&self, n: u64) {
        self.bar.set_position(n);
        self.bar.finish_and_clear();
        tracing::info!(stage = self.stage, unit = self.unit, done = n, "stage done");
    }
}
