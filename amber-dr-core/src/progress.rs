//! Progress reporting: drivers report, the front end (CLI bars, JSON, logs) shows.
//!
//! A driver never prints. It calls [`Progress::set_phase`], [`Progress::add_items`] and
//! [`Progress::add_bytes`] on the handle its context gives it (artifact streams count bytes
//! by themselves); the runner's [`ProgressSink`] receives cumulative [`ProgressEvent`]s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A snapshot of one component's progress.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProgressEvent {
    /// The component's name.
    pub component: String,
    /// What it is doing now (e.g. `archiving`, `extracting`, `checking`).
    pub phase: String,
    /// Uncompressed bytes moved so far.
    pub bytes: u64,
    /// Items (files, rows, objects, ...) moved so far.
    pub items: u64,
    /// Expected total bytes, if known.
    pub total_bytes: Option<u64>,
}

/// Receives progress events. Implemented by the CLI (progress bars) and by tests.
pub trait ProgressSink: Send + Sync {
    /// Called on every update, possibly from several threads at once.
    fn update(&self, event: &ProgressEvent);
}

/// A sink that drops every event.
#[derive(Debug, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn update(&self, _event: &ProgressEvent) {}
}

struct Inner {
    component: String,
    phase: Mutex<String>,
    bytes: AtomicU64,
    items: AtomicU64,
    total: AtomicU64,
    sink: Arc<dyn ProgressSink>,
}

/// A component's progress handle; cheap to clone.
#[derive(Clone)]
pub struct Progress(Arc<Inner>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("component", &self.0.component)
            .finish()
    }
}

impl Progress {
    /// A handle reporting for `component` into `sink`.
    pub fn new(component: impl Into<String>, sink: Arc<dyn ProgressSink>) -> Self {
        Self(Arc::new(Inner {
            component: component.into(),
            phase: Mutex::new(String::new()),
            bytes: AtomicU64::new(0),
            items: AtomicU64::new(0),
            total: AtomicU64::new(u64::MAX),
            sink,
        }))
    }

    /// A handle that reports nowhere.
    pub fn none() -> Self {
        Self::new("", Arc::new(NoProgress))
    }

    /// Start a new phase; byte and item counters restart from zero.
    pub fn set_phase(&self, phase: impl Into<String>) {
        let phase = phase.into();
        tracing::debug!(component = %self.0.component, phase = %phase, "phase");
        if let Ok(mut p) = self.0.phase.lock() {
            *p = phase;
        }
        self.0.bytes.store(0, Ordering::Relaxed);
        self.0.items.store(0, Ordering::Relaxed);
        self.0.total.store(u64::MAX, Ordering::Relaxed);
        self.emit();
    }

    /// Set the expected total of bytes for this phase.
    pub fn set_total_bytes(&self, total: u64) {
        self.0.total.store(total, Ordering::Relaxed);
        self.emit();
    }

    /// Count bytes moved.
    pub fn add_bytes(&self, n: u64) {
        self.0.bytes.fetch_add(n, Ordering::Relaxed);
        self.emit();
    }

    /// Count items moved.
    pub fn add_items(&self, n: u64) {
        self.0.items.fetch_add(n, Ordering::Relaxed);
        self.emit();
    }

    /// The current state.
    pub fn snapshot(&self) -> ProgressEvent {
        let total = self.0.total.load(Ordering::Relaxed);
        ProgressEvent {
            component: self.0.component.clone(),
            phase: self.0.phase.lock().map(|p| p.clone()).unwrap_or_default(),
            bytes: self.0.bytes.load(Ordering::Relaxed),
            items: self.0.items.load(Ordering::Relaxed),
            total_bytes: (total != u64::MAX).then_some(total),
        }
    }

    fn emit(&self) {
        self.0.sink.update(&self.snapshot());
    }
}

/// A byte count for people: `512 B`, `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}
