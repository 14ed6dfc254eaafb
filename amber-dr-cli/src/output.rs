//! What the operator sees: human text or JSON on stdout, errors and logs on stderr, and
//! progress bars on a terminal.
//!
//! Rules: in `--json` mode stdout carries exactly one JSON document (errors included, as
//! `{"ok": false, "error": "...", "exit_code": N}`); in human mode results go to stdout and
//! errors to stderr as `error: <message>`. Logs always go to stderr. Config values are never
//! printed, and everything printed (results, notes, errors, JSON, log lines) goes through
//! [`amber_dr_core::redact`] first, so a credential that a server or tool echoes is masked.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amber_dr_core::{redact, ProgressEvent, ProgressSink};
use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::exit::{Failure, INTERRUPTED};

/// Where and how results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// `--json`: one JSON document on stdout.
    pub json: bool,
    /// `-q`: results only, no summaries or notes.
    pub quiet: bool,
}

impl Output {
    /// Print a JSON document on stdout (pretty, one document per run).
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) {
        let text = serde_json::to_value(value)
            .map(|mut v| {
                redact::redact_json(&mut v);
                v
            })
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|e| format!("{{\"ok\":false,\"error\":\"cannot render JSON: {e}\"}}"));
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }

    /// A result line on stdout (human mode only).
    pub fn line(&self, text: impl std::fmt::Display) {
        if !self.json {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{}", redact::redact(&text.to_string()));
        }
    }

    /// An informational line on stdout (human mode, not quiet).
    pub fn info(&self, text: impl std::fmt::Display) {
        if !self.json && !self.quiet {
            self.line(text);
        }
    }

    /// A message on stderr (human mode only): warnings and hints that are not results.
    pub fn note(&self, text: impl std::fmt::Display) {
        if !self.json {
            eprintln!("{}", redact::redact(&text.to_string()));
        }
    }

    /// Report a failure: `error: ...` on stderr, or the JSON error document on stdout.
    pub fn error(&self, failure: &Failure) {
        if self.json {
            self.json(&serde_json::json!({
                "ok": false,
                "error": failure.message,
                "exit_code": failure.code,
            }));
        } else if failure.code == INTERRUPTED {
            eprintln!("{}", redact::redact(&failure.message));
        } else {
            eprintln!("error: {}", redact::redact(&failure.message));
        }
    }

    /// True when progress bars should be drawn: stderr is a terminal, and neither `--json`
    /// nor `-q` was given.
    pub fn bars(&self) -> bool {
        !self.json && !self.quiet && std::io::stderr().is_terminal()
    }
}

pub use amber_dr_core::progress::human_bytes;

/// A UTC time as `2026-01-31 12:00:00 UTC`.
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration between two times, as `12.3 s` or `4 min 05 s`.
pub fn elapsed(from: &DateTime<Utc>, to: &DateTime<Utc>) -> String {
    let ms = (*to - *from).num_milliseconds().max(0);
    if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        let s = ms / 1000;
        if s < 3600 {
            format!("{} min {:02} s", s / 60, s % 60)
        } else {
            format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
        }
    }
}

/// Statistics or markers as `key=value, key=value` (strings unquoted, the rest as JSON).
pub fn inline_map(map: &BTreeMap<String, serde_json::Value>) -> String {
    map.iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Render rows as a left-aligned table with a header; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let render = |cells: Vec<&str>| -> String {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = render(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&render(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The bars being drawn, if any, so that log lines can be printed above them.
static ACTIVE_BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Progress bars on stderr, one per component: phase, bytes (against a total when the driver
/// gives one), items and rate.
pub struct BarSink {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, (ProgressBar, bool)>>,
    width: usize,
}

impl std::fmt::Debug for BarSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BarSink").finish_non_exhaustive()
    }
}

impl BarSink {
    /// Bars for `components`, shown in this order as "waiting" until they start.
    pub fn new(components: &[String]) -> Arc<Self> {
        let multi = MultiProgress::new();
        let width = components
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(8)
            .clamp(8, 24);
        let sink = Arc::new(Self {
            multi: multi.clone(),
            bars: Mutex::new(HashMap::new()),
            width,
        });
        if let Ok(mut bars) = sink.bars.lock() {
            for c in components {
                let bar = sink.new_bar(c);
                bar.set_message("waiting");
                bars.insert(c.clone(), (bar, false));
            }
        }
        if let Ok(mut active) = ACTIVE_BARS.lock() {
            *active = Some(multi);
        }
        sink
    }

    fn new_bar(&self, component: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(spinner_style());
        bar.set_prefix(format!("{component:<w$}", w = self.width));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// Remove the bars (before the summary is printed).
    pub fn finish(&self) {
        if let Ok(mut active) = ACTIVE_BARS.lock() {
            *active = None;
        }
        if let Ok(bars) = self.bars.lock() {
            for (bar, _) in bars.values() {
                bar.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
    }
}

impl Drop for BarSink {
    fn drop(&mut self) {
        self.finish();
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner:.green} {prefix:.bold} {bytes:>10} {binary_bytes_per_sec:>12}  {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner:.green} {prefix:.bold} [{bar:24.cyan/blue}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta}  {msg}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl ProgressSink for BarSink {
    fn update(&self, event: &ProgressEvent) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        if !bars.contains_key(&event.component) {
            let bar = self.new_bar(&event.component);
            bars.insert(event.component.clone(), (bar, false));
        }
        let Some((bar, has_length)) = bars.get_mut(&event.component) else {
            return;
        };
        match event.total_bytes {
            Some(total) => {
                if !*has_length {
                    bar.set_style(bar_style());
                    *has_length = true;
                }
                bar.set_length(total);
            }
            None if *has_length => {
                bar.set_style(spinner_style());
                bar.unset_length();
                *has_length = false;
            }
            None => {}
        }
        bar.set_position(event.bytes);
        let phase = if event.phase.is_empty() {
            "working"
        } else {
            event.phase.as_str()
        };
        if event.items > 0 {
            let s = if event.items == 1 { "" } else { "s" };
            bar.set_message(format!("{phase} · {} item{s}", event.items));
        } else {
            bar.set_message(phase.to_string());
        }
    }
}

/// Write `line` to stderr above any progress bars (for lines printed while a command runs).
pub fn eprint_line(line: &str) {
    let line = redact::redact(line);
    let write = || {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
        let _ = err.flush();
    };
    let multi = ACTIVE_BARS.lock().ok().and_then(|m| m.clone());
    match multi {
        Some(m) => m.suspend(write),
        None => write(),
    }
}

/// A log line writer: buffers one event, then writes it to stderr above any progress bars.
struct LogWriter(Vec<u8>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = redact::redact(&String::from_utf8_lossy(&self.0));
        self.0 = text.into_bytes();
        let write = |buf: &[u8]| {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(buf);
            let _ = err.flush();
        };
        let multi = ACTIVE_BARS.lock().ok().and_then(|m| m.clone());
        match multi {
            Some(m) => m.suspend(|| write(&self.0)),
            None => write(&self.0),
        }
    }
}

/// Logs to stderr: warnings by default, errors only with `-q`, info with `-v`, debug with
/// `-vv`, trace with `-vvv`. `RUST_LOG` overrides all of it.
pub fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| LogWriter(Vec::new()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(300 * 1024 * 1024), "300.0 MiB");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["ID", "STATUS", "TAGS"],
            &[vec!["a".into(), "complete".into(), "".into()]],
        );
        assert_eq!(t, "ID  STATUS    TAGS\na   complete");
    }
}
