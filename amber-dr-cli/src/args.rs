//! The command line, as clap derive types.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// The config file used when neither `--config` nor `AMBER_DR_CONFIG` names one.
pub const DEFAULT_CONFIG: &str = "amber-dr.toml";

/// amber-dr: back up and restore every store of the Amber system as one verified backup.
#[derive(Debug, Parser)]
#[command(
    name = "amber-dr",
    version,
    propagate_version = true,
    after_help = "Exit codes: 0 ok, 1 failed, 2 usage or config error, 3 damage found, 4 references dangle, 130 interrupted."
)]
pub struct Cli {
    /// The config file [default: amber-dr.toml in the current directory].
    #[arg(long, global = true, env = "AMBER_DR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The repository URL; overrides `[repository] url` (a relative path is relative to the
    /// current directory).
    #[arg(long, global = true, value_name = "URL")]
    pub repo: Option<String>,

    /// Machine-readable output: one JSON document on stdout, errors included.
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less output: errors only in the log, no progress bars, no summaries.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Write Prometheus text-format metrics of `backup` and `verify` runs to this file
    /// (atomically replaced; values of earlier runs are kept), for node_exporter's textfile
    /// collector.
    #[arg(
        long,
        global = true,
        env = "AMBER_DR_METRICS_FILE",
        value_name = "PATH"
    )]
    pub metrics_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented amber-dr.toml with the Amber docker-compose defaults.
    Init(InitArgs),
    /// Probe the repository and every component: reachable, versions, tools found.
    Doctor,
    /// Take a backup; prints the new backup id (alone, on the last line).
    Backup(BackupArgs),
    /// List the backups: id, time, status, components, size.
    List,
    /// Show a backup's manifest, summarised.
    Show(ShowArgs),
    /// Verify a backup; exits 0 only if everything checks out, 3 on damage.
    Verify(VerifyArgs),
    /// Restore a backup, all of it or some components.
    Restore(RestoreArgs),
    /// Delete backups that no --keep-* rule keeps.
    Prune(PruneArgs),
    /// Prove a backup restores: restore it into scratch targets, check it, time it, report,
    /// and remove the scratch targets. Exit 0 passed, 1 failed, 3 damage, 4 references dangle.
    Drill(DrillArgs),
    /// Write an HTML page of the repository's backups and drills over time.
    Report(ReportArgs),
    /// Remove the repository lock left by a crashed run, and say who held it.
    Unlock,
    /// The keys of an encrypted repository: list, add, remove, rotate; generate an age key.
    Key(crate::key::KeyArgs),
}

/// `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing config file.
    #[arg(long)]
    pub force: bool,
}

/// `--only` / `--skip`, shared by backup, verify and restore.
#[derive(Debug, Args, Clone, Default)]
pub struct SelectionArgs {
    /// Only these components (comma separated, repeatable). For restore, `NAME/PART` restores
    /// one part of a component (e.g. `postgres/amber`: one database).
    #[arg(long, value_delimiter = ',', value_name = "NAMES", value_parser = parse_name)]
    pub only: Vec<String>,
    /// Leave these components out (comma separated, repeatable).
    #[arg(long, value_delimiter = ',', value_name = "NAMES", value_parser = parse_name)]
    pub skip: Vec<String>,
}

/// A component name (or `NAME/PART`) in `--only`/`--skip`: an empty one (`--only ""`, from an
/// unset variable, or a stray comma) is refused rather than read as "everything".
fn parse_name(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t.starts_with('/') || t.ends_with('/') {
        return Err(format!(
            "`{s}` is not a component name (expected NAME or NAME/PART, e.g. `uploads` or `postgres/amber`)"
        ));
    }
    Ok(t.to_string())
}

impl SelectionArgs {
    /// The core's selection, with blanks removed.
    pub fn selection(&self) -> amber_dr_core::Selection {
        let clean = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        // `--only postgres/amber` selects the component `postgres` (and, for restore, its part
        // `amber`: see `items`).
        let mut only: Vec<String> = Vec::new();
        for o in clean(&self.only) {
            let name = o.split_once('/').map(|(n, _)| n.to_string()).unwrap_or(o);
            if !only.contains(&name) {
                only.push(name);
            }
        }
        amber_dr_core::Selection {
            only,
            skip: clean(&self.skip),
        }
    }

    /// Parts of components named as `--only NAME/PART` (databases, buckets, ...), by component.
    pub fn items(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for o in &self.only {
            if let Some((name, part)) = o.trim().split_once('/') {
                if !part.is_empty() {
                    out.entry(name.to_string())
                        .or_default()
                        .push(part.to_string());
                }
            }
        }
        out
    }
}

/// `backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Which components.
    #[command(flatten)]
    pub select: SelectionArgs,
    /// A tag to record in the manifest (repeatable).
    #[arg(long, value_name = "TEXT")]
    pub tag: Vec<String>,
}

/// `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A backup id, or `latest` (the newest complete backup).
    #[arg(value_name = "ID|latest")]
    pub backup: String,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A backup id, or `latest`.
    #[arg(value_name = "ID|latest")]
    pub backup: String,
    /// Which components.
    #[command(flatten)]
    pub select: SelectionArgs,
    /// Only check that every artifact is present with its size (no reading, no hashing).
    #[arg(long)]
    pub quick: bool,
    /// Check the backup's `[[references]]` from its artifacts instead (exit 4 when one
    /// dangles).
    #[arg(long, conflicts_with = "quick")]
    pub references: bool,
}

/// `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup id, `latest`, or the directory of a legacy runbook backup.
    #[arg(value_name = "ID|latest|PATH")]
    pub backup: String,
    /// Which components.
    #[command(flatten)]
    pub select: SelectionArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Print the plan and what each driver would do; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not take a safety backup of the current state first (a failed commit then cannot
    /// be rolled back).
    #[arg(long)]
    pub no_safety_backup: bool,
    /// When a component's restore fails after others were committed, leave those as they are
    /// instead of restoring them from the safety backup.
    #[arg(long)]
    pub no_rollback: bool,
    /// Do not check the `[[references]]` touching the restored components against the live
    /// stores after the restore.
    #[arg(long)]
    pub no_check_references: bool,
    /// Leave items that are not in the backup (objects in restored buckets) instead of
    /// deleting them.
    #[arg(long)]
    pub keep_extra: bool,
    /// Restore even when the plan breaks a component's declared restore relations (e.g. an
    /// etcd prefix restored without the bucket it must be restored with), and replace a
    /// `--target` directory that exists and is not empty (the safety backup does not cover
    /// it).
    #[arg(long)]
    pub force: bool,
    /// Restore component NAME into another target (a directory, database, bucket, ...)
    /// instead of its configured one (repeatable).
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_target)]
    pub target: Vec<(String, String)>,
}

/// `drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// A backup id, or `latest` (the default).
    #[arg(value_name = "ID|latest", conflicts_with = "cleanup")]
    pub backup: Option<String>,
    /// Which components.
    #[command(flatten)]
    pub select: SelectionArgs,
    /// Leave the scratch targets in place for inspection (and say where they are); remove
    /// them later with `--cleanup`.
    #[arg(long, conflicts_with = "cleanup")]
    pub keep: bool,
    /// Only remove the scratch targets earlier drills left (killed, or run with `--keep`).
    #[arg(long)]
    pub cleanup: bool,
    /// Also write the report's HTML page to this file (it is always stored in the repository).
    #[arg(long, value_name = "FILE", conflicts_with = "cleanup")]
    pub html: Option<PathBuf>,
}

/// `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The HTML file to write.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "amber-dr-report.html"
    )]
    pub output: PathBuf,
}

/// `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Keep the N newest complete backups.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: usize,
    /// Keep the newest backup of each of the last N days that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: usize,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: usize,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_monthly: usize,
    /// Say what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_target(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() && !value.is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "`{s}` is not NAME=VALUE (a component name and its restore target)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn only_and_skip_take_lists_and_repetition() {
        let cli = Cli::try_parse_from([
            "amber-dr", "backup", "--only", "a,b", "--only", "c", "--skip", "d",
        ])
        .expect("parses");
        let Command::Backup(b) = cli.command else {
            panic!("not backup")
        };
        let sel = b.select.selection();
        assert_eq!(sel.only, ["a", "b", "c"]);
        assert_eq!(sel.skip, ["d"]);
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("uploads=/tmp/x=y"),
            Ok(("uploads".into(), "/tmp/x=y".into()))
        );
        assert!(parse_target("uploads").is_err());
        assert!(parse_target("=x").is_err());
    }
}
