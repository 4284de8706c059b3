//! `[reload]`: whether the config file is watched for changes, and how often it is looked at.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Problems, Validate};

/// How often the config file is read to see whether it changed.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// `[reload]`. SIGHUP always reloads; this says whether a change to the file does too.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Reload when the file's content changes. Polled, not watched through inotify: a
    /// Kubernetes ConfigMap volume swaps a symlink to a new directory, which file watches on the
    /// old path miss, while reading the path again always sees the new text.
    pub watch_file: bool,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self { watch_file: true, poll_interval: DEFAULT_POLL_INTERVAL }
    }
}

impl Validate for ReloadConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        problems.check(
            path,
            "poll_interval",
            self.poll_interval >= Duration::from_millis(100) && self.poll_interval <= Duration::from_secs(3600),
            "must be between 100ms and 1h: each poll reads the whole file",
        );
    }
}
