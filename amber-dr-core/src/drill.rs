//! Drills: prove that a backup restores, by restoring it into throwaway ("scratch") targets,
//! checking it there, timing it, and removing everything that was created.
//!
//! A drill never writes the live stores. Each driver says where its scratch copy goes
//! ([`crate::Component::scratch_plan`]: a database name, a directory, bucket names, a prefix,
//! collection names, derived from the drill's [`Scratch::token`]; or a separate server from
//! `[drill.targets]`) and how to remove it ([`crate::Component::remove_scratch`]). The runner
//! ([`crate::Runner::drill`]) records every scratch target in the drill's report in the
//! repository *before* creating it, so that a drill killed with SIGKILL leaves a list that
//! the next drill (or `amber-dr drill --cleanup`) removes.
//!
//! The report ([`DrillReport`]) is stored as `drills/<drill id>/report.json` (and the page
//! rendered from it as `report.html`), beside the backups, never inside one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::progress::{ProgressEvent, ProgressSink};
use crate::references::ReferenceCheck;
use crate::repository::Repository;
use crate::{Error, Result};

pub mod html;

/// The repository prefix under which drill reports live.
pub const DRILLS_PREFIX: &str = "drills";

/// `[drill]` in `amber-dr.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// Where scratch directories are created (default: the system's temporary directory).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// A separate Neo4j server for the drills of every `neo4j` component without an entry in
    /// `targets` (Community has one database, so a scratch copy needs its own server). Every
    /// node of that server is deleted by the drill's cleanup.
    #[serde(default)]
    pub neo4j_uri: Option<String>,
    /// A scratch target per component name, in the driver's `--target` syntax, overriding
    /// the one the driver derives.
    #[serde(default)]
    pub targets: BTreeMap<String, String>,
    /// The recovery-time budget: a drill whose RTO exceeds it is reported over budget (and
    /// the metric lets an alert fire).
    #[serde(default)]
    pub rto_budget_seconds: Option<f64>,
}

impl DrillConfig {
    /// The configured scratch target of component `name` of driver `kind`, if any.
    pub fn configured_target(&self, name: &str, kind: &str) -> Option<String> {
        self.targets
            .get(name)
            .cloned()
            .or_else(|| (kind == "neo4j").then(|| self.neo4j_uri.clone()).flatten())
    }
}

/// What a driver gets to derive its scratch targets from.
#[derive(Debug, Clone)]
pub struct Scratch {
    /// A short token unique to this drill (`drill_` and 8 lowercase hex digits): every derived
    /// name contains it (or its [`Scratch::dashed`] form), and [`crate::Runner::drill`] removes only targets that do (or that
    /// were configured explicitly).
    pub token: String,
    /// Where to create scratch directories (a directory named after the token is created
    /// inside).
    pub dir: PathBuf,
    /// `[drill.targets] NAME` (or `neo4j_uri`), if the config sets one.
    pub configured: Option<String>,
}

impl Scratch {
    /// A new scratch token for a drill.
    pub fn new_token() -> String {
        format!("drill_{:08x}", rand::random::<u32>())
    }

    /// The token with `-` for `_`, for names that cannot hold `_` (S3 buckets).
    pub fn dashed(token: &str) -> String {
        token.replace('_', "-")
    }

    /// Whether `target` carries `token` (as is, or [`Self::dashed`]).
    pub fn marks(target: &str, token: &str) -> bool {
        target.contains(token) || target.contains(&Self::dashed(token))
    }
}

/// One restore of a drill: which parts of the component, into which scratch target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScratchRestore {
    /// The parts restored (databases, collections; empty: all of the component).
    #[serde(default)]
    pub items: Vec<String>,
    /// The scratch target, in the driver's `--target` syntax.
    pub target: String,
}

/// Where a drill restores a component.
#[derive(Debug, Clone)]
pub enum ScratchPlan {
    /// These restores, one after the other.
    Restores(Vec<ScratchRestore>),
    /// The component cannot be drilled here; why (e.g. no scratch server configured).
    NotDrilled(String),
}

/// The end state of a drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillState {
    /// Still running (or killed: its report was never finished).
    Running,
    /// Every drilled component restored and checked, every reference resolved.
    Passed,
    /// A component or a reference check failed.
    Failed,
    /// Interrupted by a signal; the scratch targets were cleaned up.
    Interrupted,
}

impl DrillState {
    /// How the CLI names the state.
    pub fn label(self) -> &'static str {
        match self {
            DrillState::Running => "running (or killed)",
            DrillState::Passed => "passed",
            DrillState::Failed => "FAILED",
            DrillState::Interrupted => "interrupted",
        }
    }
}

/// The result of one component in a drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentResult {
    /// Restored into its scratch targets and compared with the record.
    Passed,
    /// Its restore or its check failed.
    Failed,
    /// Not drilled: its driver has no scratch target here (the reason says why).
    NotDrilled,
}

/// One component of a drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentDrill {
    /// The component's name.
    pub name: String,
    /// Its driver kind.
    pub kind: String,
    /// The result.
    pub result: ComponentResult,
    /// Why it failed or was not drilled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure is damage of the backup (a corrupt or missing artifact).
    #[serde(default)]
    pub damage: bool,
    /// Where it was restored.
    #[serde(default)]
    pub targets: Vec<ScratchRestore>,
    /// Seconds reading and checking the backup (and staging, for drivers that stage).
    #[serde(default)]
    pub prepare_seconds: f64,
    /// Seconds writing the scratch copy and comparing it with the record.
    #[serde(default)]
    pub commit_seconds: f64,
    /// Stored bytes of the component in the backup.
    #[serde(default)]
    pub stored_bytes: u64,
    /// What the driver did and checked (its restore report's actions).
    #[serde(default)]
    pub checks: Vec<String>,
    /// The driver's warnings.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One scratch target and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScratchEntry {
    /// The component.
    pub component: String,
    /// The target, in the driver's `--target` syntax.
    pub target: String,
    /// The target was configured (`[drill.targets]`), not derived from the token.
    #[serde(default)]
    pub configured: bool,
    /// `planned` (recorded before it was created), `removed`, `kept` (`--keep`) or
    /// `remove failed: ...`.
    pub state: String,
}

/// A span of the drill's timeline: one phase of one component (or of the drill).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PhaseSpan {
    /// The component, or `drill` for the drill's own phases.
    pub component: String,
    /// The phase, as the driver named it.
    pub phase: String,
    /// Seconds from the drill's start.
    pub start: f64,
    /// Seconds from the drill's start.
    pub end: f64,
    /// Bytes counted in this phase.
    #[serde(default)]
    pub bytes: u64,
}

/// The report of one drill (stored as `drills/<id>/report.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    /// The drill's id (a timestamp, like backup ids).
    pub id: String,
    /// The backup drilled.
    pub backup: String,
    /// When that backup was taken.
    pub backup_taken_at: DateTime<Utc>,
    /// The host that ran the drill.
    pub host: String,
    /// amber-dr's version.
    pub tool_version: String,
    /// The token in every derived scratch name.
    pub token: String,
    /// When the drill started.
    pub started_at: DateTime<Utc>,
    /// When it ended (absent while running, or when it was killed).
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Where it stands.
    pub state: DrillState,
    /// Wall seconds from the drill's start until every drilled component was restored and
    /// checked, references included: the recovery time measured for this backup on this
    /// machine.
    #[serde(default)]
    pub rto_seconds: Option<f64>,
    /// `[drill] rto_budget_seconds`, if set.
    #[serde(default)]
    pub rto_budget_seconds: Option<f64>,
    /// The backup's age when the drill started: the data a recovery from it would lose.
    pub backup_age_seconds: f64,
    /// Per component.
    pub components: Vec<ComponentDrill>,
    /// The backup's references, checked across the scratch targets (keys only in counts:
    /// the stored report holds no data).
    #[serde(default)]
    pub references: Vec<ReferenceCheck>,
    /// The backup's references that were not checked, with why (an end not drilled).
    #[serde(default)]
    pub references_not_checked: Vec<String>,
    /// Every scratch target, recorded before it was created.
    pub scratch: Vec<ScratchEntry>,
    /// The timeline.
    #[serde(default)]
    pub phases: Vec<PhaseSpan>,
    /// A failure of the drill as a whole (not of one component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DrillReport {
    /// True when the drill passed.
    pub fn passed(&self) -> bool {
        self.state == DrillState::Passed
    }

    /// True when a component failed on damage of the backup.
    pub fn damage(&self) -> bool {
        self.components.iter().any(|c| c.damage)
    }

    /// True when a reference dangles (or could not be checked).
    pub fn dangling(&self) -> bool {
        self.references.iter().any(|r| !r.resolves())
    }

    /// Scratch targets not removed (yet).
    pub fn leftovers(&self) -> Vec<&ScratchEntry> {
        self.scratch
            .iter()
            .filter(|s| s.state != "removed")
            .collect()
    }

    /// The repository path of this report's JSON.
    pub fn json_path(id: &str) -> String {
        format!("{DRILLS_PREFIX}/{id}/report.json")
    }

    /// The repository path of this report's page.
    pub fn html_path(id: &str) -> String {
        format!("{DRILLS_PREFIX}/{id}/report.html")
    }

    /// The report as stored: the first dangling keys left out (they are data), every string
    /// redacted (a configured scratch URI's password, a credential a server echoed).
    pub fn stored(&self) -> Self {
        let mut r = self.clone();
        for c in &mut r.references {
            c.first_dangling.clear();
        }
        let Ok(mut v) = serde_json::to_value(&r) else {
            return r;
        };
        crate::redact::redact_json(&mut v);
        serde_json::from_value(v).unwrap_or(r)
    }

    /// Write the report (JSON) into the repository.
    pub async fn save(&self, repo: &Repository) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.stored())
            .map_err(|e| Error::Other(format!("cannot encode the drill report: {e}")))?;
        repo.put_bytes(&Self::json_path(&self.id), json).await
    }

    /// Write the report's page into the repository.
    pub async fn save_html(&self, repo: &Repository) -> Result<()> {
        repo.put_bytes(&Self::html_path(&self.id), html::drill_page(&self.stored()))
            .await
    }
}

/// Every drill report in the repository, oldest first. Unreadable ones are skipped with a
/// warning in the log.
pub async fn list_reports(repo: &Repository) -> Result<Vec<DrillReport>> {
    let prefix = object_store::path::Path::from(DRILLS_PREFIX);
    let listing = repo
        .store()
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|e| {
            Error::Other(format!(
                "cannot list {DRILLS_PREFIX}/ in the repository: {e}"
            ))
        })?;
    let mut ids: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect();
    ids.sort();
    let mut out = Vec::new();
    for id in ids {
        match repo.get_bytes(&DrillReport::json_path(&id)).await? {
            Some(bytes) => match serde_json::from_slice::<DrillReport>(&bytes) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(drill = %id, error = %e, "unreadable drill report"),
            },
            None => tracing::warn!(drill = %id, "drill directory without a report"),
        }
    }
    Ok(out)
}

/// A progress sink that records each component's phases as a timeline, and passes every
/// event on.
pub struct Timeline {
    start: Instant,
    inner: Arc<dyn ProgressSink>,
    open: Mutex<BTreeMap<String, PhaseSpan>>,
    done: Mutex<Vec<PhaseSpan>>,
}

impl Timeline {
    /// A timeline starting now, forwarding to `inner`.
    pub fn new(start: Instant, inner: Arc<dyn ProgressSink>) -> Self {
        Self {
            start,
            inner,
            open: Mutex::new(BTreeMap::new()),
            done: Mutex::new(Vec::new()),
        }
    }

    /// Seconds since the start.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Record a span of the drill's own.
    pub fn push(&self, component: &str, phase: &str, start: f64, end: f64, bytes: u64) {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(PhaseSpan {
                component: component.to_string(),
                phase: phase.to_string(),
                start,
                end,
                bytes,
            });
    }

    /// Close the open phase of `component` (its restore ended).
    pub fn close(&self, component: &str) {
        let span = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(component);
        if let Some(mut s) = span {
            s.end = self.now();
            self.done.lock().unwrap_or_else(|p| p.into_inner()).push(s);
        }
    }

    /// Every span, by start.
    pub fn spans(&self) -> Vec<PhaseSpan> {
        let open: Vec<String> = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for c in open {
            self.close(&c);
        }
        let mut v = self.done.lock().unwrap_or_else(|p| p.into_inner()).clone();
        v.sort_by(|a, b| a.start.total_cmp(&b.start));
        v
    }
}

impl ProgressSink for Timeline {
    fn update(&self, event: &ProgressEvent) {
        self.inner.update(event);
        let now = self.now();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        match open.get_mut(&event.component) {
            Some(s) if s.phase == event.phase => {
                s.end = now;
                s.bytes = s.bytes.max(event.bytes);
            }
            _ => {
                let prev = open.insert(
                    event.component.clone(),
                    PhaseSpan {
                        component: event.component.clone(),
                        phase: event.phase.clone(),
                        start: now,
                        end: now,
                        bytes: event.bytes,
                    },
                );
                drop(open);
                if let Some(mut p) = prev {
                    p.end = now;
                    self.done.lock().unwrap_or_else(|p| p.into_inner()).push(p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neo4j_uri_is_the_default_scratch_of_neo4j_components() {
        let mut c = DrillConfig {
            neo4j_uri: Some("bolt://h:1".into()),
            ..Default::default()
        };
        assert_eq!(
            c.configured_target("graph", "neo4j").as_deref(),
            Some("bolt://h:1")
        );
        assert_eq!(c.configured_target("db", "postgres"), None);
        c.targets.insert("graph".into(), "bolt://other:2".into());
        assert_eq!(
            c.configured_target("graph", "neo4j").as_deref(),
            Some("bolt://other:2")
        );
    }

    #[test]
    fn the_stored_report_holds_no_credentials() {
        let now = Utc::now();
        let r = DrillReport {
            id: "x".into(),
            backup: "b".into(),
            backup_taken_at: now,
            host: "h".into(),
            tool_version: "0".into(),
            token: "drill_00000000".into(),
            started_at: now,
            finished_at: None,
            state: DrillState::Failed,
            rto_seconds: None,
            rto_budget_seconds: None,
            backup_age_seconds: 0.0,
            components: Vec::new(),
            references: Vec::new(),
            references_not_checked: Vec::new(),
            scratch: vec![ScratchEntry {
                component: "graph".into(),
                target: "bolt://neo4j:s3cr3t-pw@h:7687".into(),
                configured: true,
                state: "remove failed: cannot connect to bolt://neo4j:s3cr3t-pw@h:7687".into(),
            }],
            phases: Vec::new(),
            error: Some("password=hunter22 refused".into()),
        };
        let text = serde_json::to_string(&r.stored()).expect("serializes");
        assert!(
            !text.contains("s3cr3t-pw") && !text.contains("hunter22"),
            "{text}"
        );
        assert!(html::drill_page(&r.stored()).contains("bolt://neo4j:***@h:7687"));
    }

    #[test]
    fn tokens_are_lowercase_and_short() {
        let t = Scratch::new_token();
        assert!(t.starts_with("drill_") && t.len() == 14, "{t}");
        assert!(t
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }

    #[test]
    fn timeline_splits_phases() {
        let tl = Timeline::new(Instant::now(), Arc::new(crate::progress::NoProgress));
        let ev = |phase: &str, bytes| ProgressEvent {
            component: "db".into(),
            phase: phase.into(),
            bytes,
            items: 0,
            total_bytes: None,
        };
        tl.update(&ev("reading", 1));
        tl.update(&ev("reading", 5));
        tl.update(&ev("writing", 7));
        tl.close("db");
        let spans = tl.spans();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].phase, "reading");
        assert_eq!(spans[0].bytes, 5);
        assert_eq!(spans[1].phase, "writing");
    }
}
