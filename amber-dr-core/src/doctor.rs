//! `doctor`: is everything a backup needs reachable? The repository (and its lock and
//! encryption), every component's server (probed concurrently, each within a timeout) and the
//! run hooks' surroundings (e.g. the Docker engine and the containers of `[docker]`). Nothing
//! is changed. The CLI prints the [`DoctorReport`]; an embedding program can do the same or
//! read its fields.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::component::{Component, Probe};
use crate::hooks::RunHooks;
use crate::progress::human_bytes;
use crate::repository::{Repository, RepositoryConfig};

/// What [`doctor`] found.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// Everything needed is reachable and usable.
    pub ok: bool,
    /// The repository: `url`, `exists`, `reachable`, `lock`, `encryption`, `error`.
    pub repository: serde_json::Value,
    /// One entry per component, in config order.
    pub components: Vec<serde_json::Value>,
    /// The hooks' check ([`RunHooks::doctor`]), if the hooks have one.
    pub hooks: Option<serde_json::Value>,
    /// The same findings as lines of text, for people.
    #[serde(skip)]
    pub lines: Vec<String>,
}

/// What a run hook's check found ([`RunHooks::doctor`]).
#[derive(Debug, Clone)]
pub struct HookCheck {
    /// Usable.
    pub ok: bool,
    /// One line for people.
    pub line: String,
    /// The same as JSON.
    pub json: serde_json::Value,
}

/// Check the repository `rc`, probe `components` (concurrently, each within `timeout`) and run
/// the `hooks`' check, changing nothing.
pub async fn doctor(
    rc: &RepositoryConfig,
    components: &[Arc<dyn Component>],
    hooks: Option<&dyn RunHooks>,
    timeout: Duration,
) -> DoctorReport {
    let mut ok = true;
    let mut lines = Vec::new();
    let repository = check_repository(rc, &mut lines, &mut ok).await;

    let mut set = tokio::task::JoinSet::new();
    for (i, c) in components.iter().enumerate() {
        let c = c.clone();
        set.spawn(async move { (i, tokio::time::timeout(timeout, c.probe()).await) });
    }
    let mut probes: Vec<Option<Result<Probe, String>>> = vec![None; components.len()];
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, Ok(Ok(p)))) => probes[i] = Some(Ok(p)),
            Ok((i, Ok(Err(e)))) => probes[i] = Some(Err(e.full_message())),
            Ok((i, Err(_))) => {
                probes[i] = Some(Err(format!("no answer within {} s", timeout.as_secs())))
            }
            Err(e) => tracing::error!(error = %e, "a probe task died"),
        }
    }

    let hooks = match hooks {
        None => None,
        Some(h) => match tokio::time::timeout(timeout, h.doctor()).await {
            Ok(None) => None,
            Ok(Some(check)) => {
                ok &= check.ok;
                lines.push(check.line);
                Some(check.json)
            }
            Err(_) => {
                ok = false;
                let e = format!("no answer within {} s", timeout.as_secs());
                lines.push(format!("hooks: PROBLEM: {e}"));
                Some(json!({ "ok": false, "error": e }))
            }
        },
    };

    let mut comps = Vec::new();
    for (c, probe) in components.iter().zip(probes) {
        match probe.unwrap_or_else(|| Err("not probed".into())) {
            Ok(p) => {
                ok &= p.reachable;
                lines.push(format!(
                    "component {} ({}): {}",
                    c.name(),
                    c.kind(),
                    if p.reachable {
                        "reachable"
                    } else {
                        "UNREACHABLE"
                    }
                ));
                if let Some(v) = &p.version {
                    lines.push(format!("  version: {v}"));
                }
                if let Some(s) = p.size_estimate {
                    lines.push(format!("  size estimate: {}", human_bytes(s)));
                }
                for (k, v) in &p.details {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    lines.push(format!("  {k}: {v}"));
                }
                for w in &p.warnings {
                    lines.push(format!("  warning: {w}"));
                }
                comps.push(json!({
                    "name": c.name(),
                    "kind": c.kind(),
                    "capabilities": c.capabilities(),
                    "reachable": p.reachable,
                    "version": p.version,
                    "size_estimate": p.size_estimate,
                    "details": p.details,
                    "warnings": p.warnings,
                }));
            }
            Err(message) => {
                ok = false;
                lines.push(format!(
                    "component {} ({}): UNREACHABLE: {message}",
                    c.name(),
                    c.kind()
                ));
                comps.push(json!({
                    "name": c.name(),
                    "kind": c.kind(),
                    "reachable": false,
                    "error": message,
                }));
            }
        }
    }
    if components.is_empty() {
        lines.push("no components configured".to_string());
    }
    DoctorReport {
        ok,
        repository,
        components: comps,
        hooks,
        lines,
    }
}

async fn check_repository(
    rc: &RepositoryConfig,
    lines: &mut Vec<String>,
    ok: &mut bool,
) -> serde_json::Value {
    let mut repo_json = json!({ "url": rc.url });
    if let Some(p) = local_path(&rc.url).filter(|p| !p.exists()) {
        let parent_ok = p
            .parent()
            .map(|d| d.as_os_str().is_empty() || d.exists())
            .unwrap_or(true);
        repo_json["exists"] = json!(false);
        repo_json["reachable"] = json!(parent_ok);
        if parent_ok {
            lines.push(format!(
                "repository {}: does not exist yet; the first backup creates it",
                rc.url
            ));
        } else {
            *ok = false;
            lines.push(format!(
                "repository {}: UNREACHABLE: neither it nor its parent directory exists",
                rc.url
            ));
        }
        return repo_json;
    }
    let access = match Repository::open(rc) {
        Ok(repo) => repo.check_access().await.map(|()| repo),
        Err(e) => Err(e),
    };
    let repo = match access {
        Ok(repo) => repo,
        Err(e) => {
            let message = e.full_message();
            *ok = false;
            repo_json["reachable"] = json!(false);
            repo_json["error"] = json!(message);
            lines.push(format!("repository {}: UNREACHABLE: {message}", rc.url));
            return repo_json;
        }
    };
    repo_json["reachable"] = json!(true);
    lines.push(format!("repository {}: reachable", rc.url));
    match repo.lock_holder().await {
        Ok(Some(h)) => {
            let stale = h.is_stale_here();
            lines.push(format!(
                "  lock: held by {h}{}",
                if stale {
                    " (stale: that process no longer runs; the next run takes it over)"
                } else {
                    ""
                }
            ));
            repo_json["lock"] = json!({ "holder": h, "stale": stale });
        }
        Ok(None) => {
            lines.push("  lock: none".to_string());
            repo_json["lock"] = serde_json::Value::Null;
        }
        Err(e) => {
            let message = e.full_message();
            lines.push(format!("  lock: cannot be read: {message}"));
            repo_json["lock_error"] = json!(message);
        }
    }
    let (line, enc, enc_ok) = encryption_line(&repo).await;
    lines.push(line);
    repo_json["encryption"] = enc;
    *ok &= enc_ok;
    repo_json
}

/// The encryption of `repo` as this host sees it: a line, its JSON, and whether it is usable.
pub async fn encryption_line(repo: &Repository) -> (String, serde_json::Value, bool) {
    match repo.encryption_status().await {
        Ok(st) if !st.encrypted && !st.configured => (
            "  encryption: NOT encrypted: whoever can read the repository can read the backups".into(),
            json!({ "encrypted": false, "configured": false }),
            true,
        ),
        Ok(st) if !st.encrypted => (
            "  encryption: not encrypted yet; the next backup turns it on ([repository.encryption] is configured)".into(),
            json!({ "encrypted": false, "configured": true }),
            true,
        ),
        Ok(st) => {
            let what = match (st.configured, st.can_read) {
                (_, true) => "this host can back up, verify --full and restore",
                (true, false) => "this host has recipients only: it can back up, not read",
                (false, false) => "this host has no [repository.encryption]: it can neither back up nor read",
            };
            (
                format!("  encryption: encrypted; {what}"),
                json!({ "encrypted": true, "configured": st.configured, "can_read": st.can_read, "slot": st.opened_slot }),
                st.configured,
            )
        }
        Err(e) => {
            let message = e.full_message();
            (
                format!("  encryption: KEY PROBLEM: {message}"),
                json!({ "error": message }),
                false,
            )
        }
    }
}

/// The local directory of a repository URL, if it is local.
pub fn local_path(url: &str) -> Option<std::path::PathBuf> {
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("file://") {
        Some(std::path::PathBuf::from(rest))
    } else if url.contains("://") {
        None
    } else {
        Some(std::path::PathBuf::from(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn local_paths() {
        assert_eq!(local_path("./b"), Some(PathBuf::from("./b")));
        assert_eq!(local_path("file:///srv/b"), Some(PathBuf::from("/srv/b")));
        assert_eq!(local_path("s3://bucket/x"), None);
    }
}
