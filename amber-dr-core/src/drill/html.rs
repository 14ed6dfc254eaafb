//! Self-contained HTML pages: one drill's report, and the history of a repository's backups
//! and drills. No scripts, no fetches: inline CSS and SVG only, so a page opens from a file,
//! an object store or an e-mail attachment the same way.

use std::fmt::Write as _;

use crate::drill::{ComponentResult, DrillReport, DrillState};
use crate::progress::human_bytes;
use crate::repository::BackupEntry;

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:20px;font-weight:600}
header .sub{opacity:.75;margin-top:4px}
header code{background:rgba(255,255,255,.16);color:#fff}
main{padding:20px 28px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:16px 20px;margin-bottom:18px}
h2{font-size:15px;margin:0 0 12px 0}
.kpis{display:flex;gap:14px;flex-wrap:wrap}
.kpi{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 18px;min-width:150px}
.kpi .v{font-size:24px;font-weight:650}
.kpi .l{color:#5b6474;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eceff3;vertical-align:top}
th{font-size:12px;color:#5b6474;text-transform:uppercase;letter-spacing:.04em}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.ok{background:#dcf5e3;color:#11612e}.bad{background:#fde2e1;color:#9b1c1c}.warn{background:#fff1cc;color:#7a5200}.muted{background:#eceff3;color:#4b5563}
ul.checks{margin:0;padding-left:18px;color:#3b4352;font-size:12.5px;overflow-wrap:anywhere}
.err{color:#9b1c1c}
code{font-size:12.5px;background:#f1f3f6;padding:0 4px;border-radius:4px}
svg text{font:11px system-ui,sans-serif;fill:#1d2330}
footer{color:#7b8494;font-size:12px;padding:0 28px 24px}
";

/// Escape text for HTML.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A duration in words: `850 ms`, `12.3 s`, `4 min 05 s`, `3 h 02 min`, `2 d 5 h`.
pub fn duration(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        format!("{} min {:02} s", (secs / 60.0) as u64, secs as u64 % 60)
    } else if secs < 86400.0 {
        format!(
            "{} h {:02} min",
            (secs / 3600.0) as u64,
            (secs as u64 % 3600) / 60
        )
    } else {
        format!(
            "{} d {} h",
            (secs / 86400.0) as u64,
            (secs as u64 % 86400) / 3600
        )
    }
}

fn page(title: &str, header: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body>{header}<main>{body}</main>\
<footer>amber-dr {} — this page is self-contained (no scripts, no external resources).</footer></body></html>\n",
        esc(title),
        env!("CARGO_PKG_VERSION")
    )
}

fn state_badge(state: DrillState) -> String {
    let class = match state {
        DrillState::Passed => "ok",
        DrillState::Failed => "bad",
        DrillState::Interrupted | DrillState::Running => "warn",
    };
    format!(
        "<span class=\"badge {class}\">{}</span>",
        esc(state.label())
    )
}

fn result_badge(r: ComponentResult) -> &'static str {
    match r {
        ComponentResult::Passed => "<span class=\"badge ok\">passed</span>",
        ComponentResult::Failed => "<span class=\"badge bad\">FAILED</span>",
        ComponentResult::NotDrilled => "<span class=\"badge muted\">not drilled</span>",
    }
}

const PALETTE: &[&str] = &[
    "#3b82f6", "#10b981", "#f59e0b", "#8b5cf6", "#ef4444", "#06b6d4", "#84cc16", "#ec4899",
];

/// The timeline of a drill: one row per component, one bar per phase.
fn timeline_svg(r: &DrillReport) -> String {
    let mut rows: Vec<&str> = Vec::new();
    for p in &r.phases {
        if !rows.contains(&p.component.as_str()) {
            rows.push(&p.component);
        }
    }
    if rows.is_empty() {
        return "<p>No phases were recorded.</p>".into();
    }
    let total = r
        .phases
        .iter()
        .map(|p| p.end)
        .fold(r.rto_seconds.unwrap_or(0.0), f64::max)
        .max(0.001);
    let (left, width, row_h) = (130.0, 820.0, 26.0);
    let height = rows.len() as f64 * row_h + 36.0;
    let x = |t: f64| left + t / total * width;
    let mut s = format!(
        "<svg role=\"img\" aria-label=\"timeline\" viewBox=\"0 0 {} {height}\" width=\"100%\" xmlns=\"http://www.w3.org/2000/svg\">",
        left + width + 20.0
    );
    for (i, row) in rows.iter().enumerate() {
        let y = i as f64 * row_h + 4.0;
        let _ = write!(s, "<text x=\"0\" y=\"{}\">{}</text>", y + 15.0, esc(row));
        for (j, p) in r.phases.iter().filter(|p| p.component == *row).enumerate() {
            let w = (x(p.end) - x(p.start)).max(1.5);
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{}\" rx=\"3\" fill=\"{}\"><title>{}: {} ({} – {}, {})</title></rect>",
                x(p.start),
                row_h - 8.0,
                PALETTE[j % PALETTE.len()],
                esc(row),
                esc(&p.phase),
                duration(p.start),
                duration(p.end),
                duration(p.end - p.start),
            );
            if w > 70.0 {
                let label: String = p.phase.chars().take((w / 6.5) as usize).collect();
                let _ = write!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" style=\"fill:#fff\">{}</text>",
                    x(p.start) + 4.0,
                    y + 13.0,
                    esc(&label)
                );
            }
        }
    }
    let axis_y = rows.len() as f64 * row_h + 8.0;
    for k in 0..=4 {
        let t = total * k as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"0\" y2=\"{axis_y}\" stroke=\"#dde1e7\"/><text x=\"{0:.1}\" y=\"{1}\" text-anchor=\"middle\">{2}</text>",
            x(t),
            axis_y + 16.0,
            duration(t)
        );
    }
    s.push_str("</svg>");
    s
}

/// One drill's report as a page.
pub fn drill_page(r: &DrillReport) -> String {
    let header = format!(
        "<header><h1>Restore drill of backup <code>{}</code> {}</h1><div class=\"sub\">drill {} on host {} · started {} · amber-dr {}</div></header>",
        esc(&r.backup),
        state_badge(r.state),
        esc(&r.id),
        esc(&r.host),
        r.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        esc(&r.tool_version)
    );
    let mut b = String::new();
    let rto = r.rto_seconds.map(duration).unwrap_or_else(|| "—".into());
    let budget = match (r.rto_seconds, r.rto_budget_seconds) {
        (Some(v), Some(bud)) if v > bud => format!(
            "<span class=\"badge bad\">over budget {}</span>",
            duration(bud)
        ),
        (Some(_), Some(bud)) => format!("<span class=\"badge ok\">within {}</span>", duration(bud)),
        _ => String::new(),
    };
    let drilled = r
        .components
        .iter()
        .filter(|c| c.result != ComponentResult::NotDrilled)
        .count();
    let _ = write!(
        b,
        "<div class=\"kpis\" style=\"margin-bottom:18px\">\
<div class=\"kpi\"><div class=\"l\">Result</div><div class=\"v\">{}</div></div>\
<div class=\"kpi\"><div class=\"l\">Measured RTO</div><div class=\"v\" id=\"rto\">{}</div>{budget}</div>\
<div class=\"kpi\"><div class=\"l\">Backup age (RPO exposure)</div><div class=\"v\">{}</div></div>\
<div class=\"kpi\"><div class=\"l\">Components drilled</div><div class=\"v\">{drilled} / {}</div></div>\
<div class=\"kpi\"><div class=\"l\">References</div><div class=\"v\">{}</div></div></div>",
        state_badge(r.state),
        esc(&rto),
        duration(r.backup_age_seconds.max(0.0)),
        r.components.len(),
        if r.references.is_empty() {
            "none declared".to_string()
        } else {
            format!(
                "{} / {} resolve",
                r.references.iter().filter(|c| c.resolves()).count(),
                r.references.len()
            )
        }
    );
    if let Some(e) = &r.error {
        let _ = write!(
            b,
            "<section><h2>Error</h2><p class=\"err\">{}</p></section>",
            esc(e)
        );
    }
    b.push_str("<section><h2>Components</h2><table><tr><th>Component</th><th>Kind</th><th>Result</th><th>Scratch target</th><th>Prepare</th><th>Commit</th><th>Stored</th><th>Checks</th></tr>");
    for c in &r.components {
        let targets: Vec<String> = c
            .targets
            .iter()
            .map(|t| {
                if t.items.is_empty() {
                    format!("<code>{}</code>", esc(&t.target))
                } else {
                    format!(
                        "{} → <code>{}</code>",
                        esc(&t.items.join(", ")),
                        esc(&t.target)
                    )
                }
            })
            .collect();
        let mut checks = String::from("<ul class=\"checks\">");
        if let Some(e) = &c.error {
            let _ = write!(checks, "<li class=\"err\">{}</li>", esc(e));
        }
        for a in &c.checks {
            let _ = write!(checks, "<li>{}</li>", esc(a));
        }
        for w in &c.warnings {
            let _ = write!(checks, "<li>warning: {}</li>", esc(w));
        }
        checks.push_str("</ul>");
        let _ = write!(
            b,
            "<tr class=\"component\"><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{checks}</td></tr>",
            esc(&c.name),
            esc(&c.kind),
            result_badge(c.result),
            targets.join("<br>"),
            duration(c.prepare_seconds),
            duration(c.commit_seconds),
            human_bytes(c.stored_bytes),
        );
    }
    b.push_str("</table></section>");
    let _ = write!(b, "<section><h2>Timeline</h2>{}</section>", timeline_svg(r));
    if !r.references.is_empty() {
        b.push_str("<section><h2>References, checked across the scratch copies</h2><table><tr><th>Reference</th><th>From → to</th><th>Checked</th><th>Dangling</th><th>Result</th></tr>");
        for c in &r.references {
            let result = if c.resolves() {
                "<span class=\"badge ok\">resolves</span>".to_string()
            } else if let Some(e) = &c.error {
                format!(
                    "<span class=\"badge bad\">not checked</span> <span class=\"err\">{}</span>",
                    esc(e)
                )
            } else {
                "<span class=\"badge bad\">DANGLING</span>".to_string()
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{} → {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{result}</td></tr>",
                esc(&c.spec.name),
                esc(&c.spec.from.describe()),
                esc(&c.spec.to.describe()),
                c.checked,
                c.dangling
            );
        }
        b.push_str("</table></section>");
    }
    if !r.references_not_checked.is_empty() {
        b.push_str("<section><h2>References not checked</h2><ul class=\"checks\">");
        for n in &r.references_not_checked {
            let _ = write!(b, "<li>{}</li>", esc(n));
        }
        b.push_str("</ul></section>");
    }
    b.push_str("<section><h2>Scratch targets</h2><table><tr><th>Component</th><th>Target</th><th>State</th></tr>");
    for s in &r.scratch {
        let class = match s.state.as_str() {
            "removed" => "ok",
            "kept" => "warn",
            _ => "bad",
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td><code>{}</code></td><td><span class=\"badge {class}\">{}</span></td></tr>",
            esc(&s.component),
            esc(&s.target),
            esc(&s.state)
        );
    }
    b.push_str("</table></section>");
    page(&format!("amber-dr drill {}", r.id), &header, &b)
}

/// A bar chart: one bar per value, colored per bar, labelled below with `labels`.
fn bars_svg(title: &str, values: &[(String, f64, &str)], unit: &dyn Fn(f64) -> String) -> String {
    if values.is_empty() {
        return format!("<p>No data for “{}” yet.</p>", esc(title));
    }
    let max = values.iter().map(|v| v.1).fold(0.0, f64::max).max(1e-9);
    let (h, left) = (160.0, 70.0);
    let bw = (760.0 / values.len() as f64).clamp(4.0, 48.0);
    let width = left + bw * values.len() as f64 + 20.0;
    let mut s = format!(
        "<svg role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {width} {}\" width=\"100%\" style=\"max-width:{width}px\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(title),
        h + 30.0
    );
    for k in 0..=2 {
        let v = max * k as f64 / 2.0;
        let y = h - v / max * (h - 10.0);
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{width}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eceff3\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + 4.0,
            esc(&unit(v))
        );
    }
    for (i, (label, v, color)) in values.iter().enumerate() {
        let bh = (v / max * (h - 10.0)).max(1.0);
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" rx=\"2\" fill=\"{color}\"><title>{}: {}</title></rect>",
            left + i as f64 * bw + 2.0,
            h - bh,
            bw - 4.0,
            esc(label),
            esc(&unit(*v))
        );
    }
    // The time of the first bar below it, and of the last one when there is room.
    let _ = write!(
        s,
        "<text x=\"{left}\" y=\"{}\">{}</text>",
        h + 20.0,
        esc(&short_time(&values[0].0))
    );
    if values.len() >= 4 {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left + bw * values.len() as f64,
            h + 20.0,
            esc(&short_time(&values[values.len() - 1].0))
        );
    }
    s.push_str("</svg>");
    s
}

/// `MM-DD HH:MM` of an id that starts with `YYYYmmdd_HHMMSS` (backups, drills); else the id.
fn short_time(id: &str) -> String {
    match (id.get(4..6), id.get(6..8), id.get(9..11), id.get(11..13)) {
        (Some(mo), Some(d), Some(hh), Some(mm)) if id.as_bytes().get(8) == Some(&b'_') => {
            format!("{mo}-{d} {hh}:{mm}")
        }
        _ => id.to_string(),
    }
}

/// The history page: backups (sizes, durations, status) and drills (results, RTO) over time.
pub fn history_page(repo_url: &str, backups: &[BackupEntry], drills: &[DrillReport]) -> String {
    let header = format!(
        "<header><h1>amber-dr: backups and drills</h1><div class=\"sub\">repository {} · {} backups · {} drills · generated {}</div></header>",
        esc(repo_url),
        backups.len(),
        drills.len(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    let mut b = String::new();
    let last_ok = drills.iter().rev().find(|d| d.passed());
    let newest = backups
        .iter()
        .rev()
        .find_map(|e| e.manifest.as_ref().filter(|m| m.is_complete()));
    let _ = write!(
        b,
        "<div class=\"kpis\" style=\"margin-bottom:18px\">\
<div class=\"kpi\"><div class=\"l\">Newest complete backup</div><div class=\"v\">{}</div></div>\
<div class=\"kpi\"><div class=\"l\">Last successful drill</div><div class=\"v\">{}</div></div>\
<div class=\"kpi\"><div class=\"l\">Last measured RTO</div><div class=\"v\" id=\"rto\">{}</div></div></div>",
        newest
            .map(|m| format!(
                "{} ago",
                duration((chrono::Utc::now() - m.started_at).num_seconds().max(0) as f64)
            ))
            .unwrap_or_else(|| "none".into()),
        last_ok
            .map(|d| format!(
                "{} ago",
                duration((chrono::Utc::now() - d.started_at).num_seconds().max(0) as f64)
            ))
            .unwrap_or_else(|| "never".into()),
        last_ok
            .and_then(|d| d.rto_seconds)
            .map(duration)
            .unwrap_or_else(|| "—".into()),
    );
    let ms: Vec<&crate::manifest::Manifest> =
        backups.iter().filter_map(|e| e.manifest.as_ref()).collect();
    let color = |ok: bool| if ok { "#3b82f6" } else { "#ef4444" };
    let sizes: Vec<(String, f64, &str)> = ms
        .iter()
        .map(|m| (m.id.clone(), m.stored_size() as f64, color(m.is_complete())))
        .collect();
    let durs: Vec<(String, f64, &str)> = ms
        .iter()
        .map(|m| {
            let d = (m.finished_at - m.started_at).num_milliseconds().max(0) as f64 / 1000.0;
            (m.id.clone(), d, color(m.is_complete()))
        })
        .collect();
    let rtos: Vec<(String, f64, &str)> = drills
        .iter()
        .map(|d| {
            (
                d.id.clone(),
                d.rto_seconds.unwrap_or(0.0),
                if d.passed() { "#10b981" } else { "#ef4444" },
            )
        })
        .collect();
    let bytes = |v: f64| human_bytes(v as u64);
    let _ = write!(
        b,
        "<section><h2>Backup size (stored)</h2>{}</section><section><h2>Backup duration</h2>{}</section><section><h2>Drill RTO (green: passed, red: failed)</h2>{}</section>",
        bars_svg("backup size", &sizes, &bytes),
        bars_svg("backup duration", &durs, &duration),
        bars_svg("drill RTO", &rtos, &duration)
    );
    b.push_str("<section><h2>Drills</h2><table><tr><th>Drill</th><th>Backup</th><th>Result</th><th>RTO</th><th>Backup age</th><th>Components</th></tr>");
    for d in drills.iter().rev() {
        let comps: Vec<String> = d
            .components
            .iter()
            .map(|c| format!("{} {}", esc(&c.name), result_badge(c.result)))
            .collect();
        let _ = write!(
            b,
            "<tr class=\"drill\"><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&d.id),
            esc(&d.backup),
            state_badge(d.state),
            d.rto_seconds.map(duration).unwrap_or_else(|| "—".into()),
            duration(d.backup_age_seconds.max(0.0)),
            comps.join(" ")
        );
    }
    b.push_str("</table></section><section><h2>Backups</h2><table><tr><th>Backup</th><th>Status</th><th>Stored</th><th>Duration</th><th>Components</th><th>Last drill</th></tr>");
    for e in backups.iter().rev() {
        let last = drills.iter().rev().find(|d| d.backup == e.id);
        let (stored, dur, comps) = match &e.manifest {
            Some(m) => (
                human_bytes(m.stored_size()),
                duration((m.finished_at - m.started_at).num_milliseconds().max(0) as f64 / 1000.0),
                m.components.keys().cloned().collect::<Vec<_>>().join(", "),
            ),
            None => ("—".into(), "—".into(), String::new()),
        };
        let status_class = match e.status() {
            "complete" => "ok",
            _ => "bad",
        };
        let _ = write!(
            b,
            "<tr class=\"backup\"><td><code>{}</code></td><td><span class=\"badge {status_class}\">{}</span></td><td class=\"n\">{stored}</td><td class=\"n\">{dur}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.id),
            e.status(),
            esc(&comps),
            last.map(|d| state_badge(d.state)).unwrap_or_else(|| "<span class=\"badge muted\">never drilled</span>".into())
        );
    }
    b.push_str("</table></section>");
    page("amber-dr history", &header, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_durations() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(duration(0.25), "250 ms");
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(125.0), "2 min 05 s");
        assert_eq!(duration(3.0 * 3600.0 + 120.0), "3 h 02 min");
        assert_eq!(short_time("20261204_235820_197d232b"), "12-04 23:58");
        assert_eq!(short_time("x"), "x");
    }
}
