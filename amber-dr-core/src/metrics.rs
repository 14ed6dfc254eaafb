//! Prometheus text-format metrics for node_exporter's textfile collector.
//!
//! A [`MetricsFile`] is read from the previous run's file (if any), updated with this run's
//! results, and written back atomically (a temporary file in the same directory, then a
//! rename), so the collector never reads a half-written file. Values this run does not
//! produce are carried over: a component left out with `--only`, or the last success time of
//! a component that failed this time, keep their previous values.

use std::collections::BTreeMap;
use std::path::Path;

use crate::manifest::{ComponentStatus, Manifest};
use crate::runner::VerifyOutcome;
use crate::{Error, Result};

/// One metric family: help text, type and samples by label set.
#[derive(Debug, Clone, Default)]
struct Family {
    help: String,
    kind: String,
    samples: BTreeMap<String, String>,
}

/// A set of metric families, rendered in Prometheus text format.
#[derive(Debug, Clone, Default)]
pub struct MetricsFile {
    families: BTreeMap<String, Family>,
}

/// Escape a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn seconds(t: chrono::DateTime<chrono::Utc>) -> String {
    format!("{:.3}", t.timestamp_millis() as f64 / 1000.0)
}

impl MetricsFile {
    /// Parse a file this module wrote (unknown lines are dropped).
    pub fn parse(text: &str) -> Self {
        let mut m = MetricsFile::default();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# HELP ") {
                if let Some((name, help)) = rest.split_once(' ') {
                    m.families.entry(name.into()).or_default().help = help.into();
                }
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = rest.split_once(' ') {
                    m.families.entry(name.into()).or_default().kind = kind.into();
                }
            } else if !line.is_empty() && !line.starts_with('#') {
                // `name{labels} value` or `name value`; label values may hold spaces.
                let Some((series, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                let (name, lbl) = match series.find('{') {
                    Some(i) => (&series[..i], &series[i..]),
                    None => (series, ""),
                };
                if let Some(f) = m.families.get_mut(name) {
                    f.samples.insert(lbl.into(), value.into());
                }
            }
        }
        m
    }

    /// Read `path`; a missing or unreadable file starts empty.
    pub fn load(path: &Path) -> Self {
        std::fs::read_to_string(path)
            .map(|t| Self::parse(&t))
            .unwrap_or_default()
    }

    /// Set one sample.
    pub fn set(&mut self, name: &str, help: &str, kind: &str, lbl: &[(&str, &str)], value: String) {
        let f = self.families.entry(name.into()).or_default();
        f.help = help.into();
        f.kind = kind.into();
        f.samples.insert(labels(lbl), value);
    }

    /// The value of one sample, if present.
    pub fn get(&self, name: &str, lbl: &[(&str, &str)]) -> Option<&str> {
        self.families
            .get(name)
            .and_then(|f| f.samples.get(&labels(lbl)))
            .map(String::as_str)
    }

    /// Record a backup run.
    pub fn record_backup(&mut self, m: &Manifest) {
        let ok = m.is_complete();
        let g = "gauge";
        self.set(
            "amber_dr_backup_last_run_timestamp_seconds",
            "When the last backup run finished (Unix time).",
            g,
            &[],
            seconds(m.finished_at),
        );
        self.set(
            "amber_dr_backup_last_run_success",
            "1 if the last backup run completed with every selected component, else 0.",
            g,
            &[],
            u8::from(ok).to_string(),
        );
        self.set(
            "amber_dr_backup_last_run_duration_seconds",
            "Wall time of the last backup run.",
            g,
            &[],
            format!(
                "{:.3}",
                (m.finished_at - m.started_at).num_milliseconds() as f64 / 1000.0
            ),
        );
        if ok {
            self.set(
                "amber_dr_backup_last_success_timestamp_seconds",
                "When the last complete backup finished (Unix time).",
                g,
                &[],
                seconds(m.finished_at),
            );
            self.set(
                "amber_dr_backup_last_success_stored_bytes",
                "Bytes stored by the last complete backup (compressed artifacts).",
                g,
                &[],
                m.stored_size().to_string(),
            );
        }
        for (name, rec) in &m.components {
            let lbl = [("component", name.as_str()), ("kind", rec.kind.as_str())];
            let c_ok = rec.status == Some(ComponentStatus::Ok) && rec.error.is_none();
            self.set(
                "amber_dr_component_last_run_success",
                "1 if the component's last backup succeeded, else 0.",
                g,
                &lbl,
                u8::from(c_ok).to_string(),
            );
            self.set(
                "amber_dr_component_last_run_timestamp_seconds",
                "When the component's last backup ended (Unix time).",
                g,
                &lbl,
                seconds(rec.finished_at.unwrap_or(m.finished_at)),
            );
            if let (Some(s), Some(f)) = (rec.started_at, rec.finished_at) {
                self.set(
                    "amber_dr_component_last_run_duration_seconds",
                    "Wall time of the component's last backup.",
                    g,
                    &lbl,
                    format!("{:.3}", (f - s).num_milliseconds() as f64 / 1000.0),
                );
            }
            if c_ok {
                self.set(
                    "amber_dr_component_last_success_timestamp_seconds",
                    "When the component's last successful backup ended (Unix time).",
                    g,
                    &lbl,
                    seconds(rec.finished_at.unwrap_or(m.finished_at)),
                );
                self.set(
                    "amber_dr_component_last_success_stored_bytes",
                    "Bytes stored for the component by its last successful backup.",
                    g,
                    &lbl,
                    rec.artifacts
                        .iter()
                        .map(|a| a.stored_size)
                        .sum::<u64>()
                        .to_string(),
                );
                self.set(
                    "amber_dr_component_last_success_source_bytes",
                    "Uncompressed bytes of the component's last successful backup.",
                    g,
                    &lbl,
                    rec.artifacts
                        .iter()
                        .map(|a| a.size)
                        .sum::<u64>()
                        .to_string(),
                );
            }
        }
    }

    /// Record a verify run of backup `outcome.id`, finished at `at`.
    pub fn record_verify(&mut self, outcome: &VerifyOutcome, at: chrono::DateTime<chrono::Utc>) {
        let g = "gauge";
        let ok = outcome.is_ok();
        let level = format!("{:?}", outcome.level).to_lowercase();
        let lbl = [("level", level.as_str())];
        self.set(
            "amber_dr_verify_last_run_timestamp_seconds",
            "When the last verify run finished (Unix time).",
            g,
            &lbl,
            seconds(at),
        );
        self.set(
            "amber_dr_verify_last_run_success",
            "1 if the last verify run found no damage, else 0.",
            g,
            &lbl,
            u8::from(ok).to_string(),
        );
        if ok {
            self.set(
                "amber_dr_verify_last_success_timestamp_seconds",
                "When the last verify run without damage finished (Unix time).",
                g,
                &lbl,
                seconds(at),
            );
        }
    }

    /// Record a drill (see [`crate::drill`]), finished at `at`.
    pub fn record_drill(
        &mut self,
        report: &crate::drill::DrillReport,
        at: chrono::DateTime<chrono::Utc>,
    ) {
        let g = "gauge";
        let ok = report.passed();
        self.set(
            "amber_dr_drill_last_run_timestamp_seconds",
            "When the last drill finished (Unix time).",
            g,
            &[],
            seconds(at),
        );
        self.set(
            "amber_dr_drill_last_run_success",
            "1 if the last drill passed, else 0.",
            g,
            &[],
            u8::from(ok).to_string(),
        );
        self.set(
            "amber_dr_backup_age_seconds",
            "Age of the backup the last drill restored, when the drill started (its RPO exposure).",
            g,
            &[],
            format!("{:.3}", report.backup_age_seconds.max(0.0)),
        );
        if ok {
            self.set(
                "amber_dr_drill_last_success_timestamp_seconds",
                "When the last passing drill finished (Unix time).",
                g,
                &[],
                seconds(at),
            );
            if let Some(rto) = report.rto_seconds {
                self.set(
                    "amber_dr_drill_rto_seconds",
                    "Recovery time measured by the last passing drill: restore and checks of every drilled component.",
                    g,
                    &[],
                    format!("{rto:.3}"),
                );
            }
        }
    }

    /// Record that a run failed before it produced a result (repository unreachable, lock
    /// held, bad config): the last-run success gauge of `what` (`backup`, `verify`) drops to 0.
    pub fn record_failure(&mut self, what: &str, at: chrono::DateTime<chrono::Utc>) {
        let now = seconds(at);
        for (name, help, value) in [
            (
                format!("amber_dr_{what}_last_run_success"),
                format!("1 if the last {what} run succeeded, else 0."),
                "0".to_string(),
            ),
            (
                format!("amber_dr_{what}_last_run_timestamp_seconds"),
                format!("When the last {what} run finished (Unix time)."),
                now.clone(),
            ),
        ] {
            // Every existing series of the family (e.g. each verify level) takes the value.
            match self.families.get_mut(&name) {
                Some(f) if !f.samples.is_empty() => {
                    for v in f.samples.values_mut() {
                        v.clone_from(&value);
                    }
                }
                _ => self.set(&name, &help, "gauge", &[], value),
            }
        }
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.families {
            if f.samples.is_empty() {
                continue;
            }
            out.push_str(&format!("# HELP {name} {}\n", f.help));
            out.push_str(&format!(
                "# TYPE {name} {}\n",
                if f.kind.is_empty() { "gauge" } else { &f.kind }
            ));
            for (lbl, v) in &f.samples {
                out.push_str(&format!("{name}{lbl} {v}\n"));
            }
        }
        out
    }

    /// Write to `path` atomically: a temporary file in the same directory, then a rename.
    pub fn write(&self, path: &Path) -> Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "metrics.prom".into());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, self.render()).map_err(|e| Error::io("write metrics", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io("replace metrics file", path, e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ArtifactRecord, BackupPurpose, BackupStatus, ComponentRecord};

    fn manifest(ok_pg: bool, at: i64) -> Manifest {
        let t = chrono::DateTime::from_timestamp(at, 0).expect("time");
        let mut comps = BTreeMap::new();
        let mut pg = ComponentRecord::new("postgres", "postgres");
        pg.started_at = Some(t - chrono::Duration::seconds(4));
        pg.finished_at = Some(t);
        if ok_pg {
            pg.status = Some(ComponentStatus::Ok);
            pg.artifacts.push(ArtifactRecord {
                name: "a".into(),
                path: "p".into(),
                size: 100,
                stored_size: 40,
                sha256: String::new(),
                compression: "zstd".into(),
                encryption: None,
            });
        } else {
            pg.status = Some(ComponentStatus::Failed);
            pg.error = Some("boom".into());
        }
        comps.insert("postgres".into(), pg);
        Manifest {
            format_version: crate::FORMAT_VERSION,
            id: "x".into(),
            status: if ok_pg {
                BackupStatus::Complete
            } else {
                BackupStatus::Failed
            },
            purpose: BackupPurpose::Backup,
            tool_version: "0".into(),
            host: "h".into(),
            started_at: t - chrono::Duration::seconds(5),
            finished_at: t,
            tags: vec![],
            components: comps,
            sealed: false,
            locked_until: None,
            cut: None,
            references: Vec::new(),
        }
    }

    #[test]
    fn a_failure_keeps_the_last_success_time_and_the_file_round_trips() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("amber-dr.prom");
        let mut m = MetricsFile::load(&path);
        m.record_backup(&manifest(true, 1_000));
        m.write(&path).expect("write");

        let mut m = MetricsFile::load(&path);
        m.record_backup(&manifest(false, 2_000));
        m.write(&path).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let lbl = "{component=\"postgres\",kind=\"postgres\"}";
        assert!(
            text.contains(&format!(
                "amber_dr_component_last_success_timestamp_seconds{lbl} 1000.000\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("amber_dr_component_last_run_success{lbl} 0\n")),
            "{text}"
        );
        assert!(
            text.contains("amber_dr_backup_last_run_success 0\n"),
            "{text}"
        );
        assert!(
            text.contains("amber_dr_backup_last_success_timestamp_seconds 1000.000\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "amber_dr_component_last_success_stored_bytes{lbl} 40\n"
            )),
            "{text}"
        );
        assert!(text.contains("# TYPE amber_dr_backup_last_run_success gauge\n"));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);

        // A run that could not start drops the success gauge.
        let mut m = MetricsFile::load(&path);
        m.record_failure(
            "backup",
            chrono::DateTime::from_timestamp(3_000, 0).expect("t"),
        );
        assert_eq!(m.get("amber_dr_backup_last_run_success", &[]), Some("0"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut m = MetricsFile::default();
        m.set(
            "x",
            "h",
            "gauge",
            &[("component", "a \"b\"\\c")],
            "1".into(),
        );
        let text = m.render();
        assert!(text.contains(r#"x{component="a \"b\"\\c"} 1"#), "{text}");
        assert_eq!(MetricsFile::parse(&text).render(), text);
    }
}
