//! `prune`: delete the backups the retention rules do not keep, then sweep the shared blobs
//! no remaining backup references (and extend the Object Lock of the kept ones, if asked).

use super::*;

/// The result of `prune`.
#[derive(Debug, Clone, Serialize)]
pub struct PruneOutcome {
    /// Backups kept.
    pub kept: Vec<String>,
    /// Backups deleted (or, in a dry run, that would be).
    pub deleted: Vec<String>,
    /// Shared blobs no remaining backup references, deleted (or that would be).
    pub blobs_deleted: u64,
    /// Dry run: nothing deleted.
    pub dry_run: bool,
    /// Backups the rules drop but S3 Object Lock retains, with the date each becomes
    /// deletable: kept until then.
    pub locked: Vec<(String, chrono::DateTime<Utc>)>,
    /// With `object_lock.extend_kept`: the retention of the kept backups, extended.
    pub lock_extension: Option<crate::object_lock::LockExtension>,
}

impl Runner {
    /// Delete backups that `policy` does not keep. Incomplete and failed backups older than
    /// the newest kept backup are deleted too.
    pub async fn prune(&self, policy: &RetentionPolicy, dry_run: bool) -> Result<PruneOutcome> {
        if policy.is_empty() {
            return Err(Error::config(
                "prune",
                "no --keep-* rule given: that would delete every backup",
            ));
        }
        // A dry run takes the lock too: a running backup (which holds it) is never listed as
        // "would delete", and the dry run fails like the real one would.
        let lock = self
            .repo
            .lock(if dry_run { "prune --dry-run" } else { "prune" })
            .await?;
        self.guarded(Some(lock), self.prune_locked(policy, dry_run))
            .await
    }

    async fn prune_locked(&self, policy: &RetentionPolicy, dry_run: bool) -> Result<PruneOutcome> {
        let entries = self.repo.list().await?;
        let plan = prune_plan(&entries, policy);
        let mut kept = Vec::new();
        let mut deleted = Vec::new();
        let mut locked = Vec::new();
        let now = Utc::now();
        for e in &entries {
            let delete = !plan.contains(&e.id);
            let mut until = e.manifest.as_ref().and_then(|m| m.locked_until);
            if delete {
                // The lock may have been extended since the manifest was written.
                until = self.repo.retained_until(&e.id, until).await?;
            }
            if let Some(until) = until.filter(|u| delete && *u > now) {
                locked.push((e.id.clone(), until));
                kept.push(e.id.clone());
            } else if delete {
                deleted.push(e.id.clone());
            } else {
                kept.push(e.id.clone());
            }
        }
        if !dry_run {
            for id in &deleted {
                self.repo.delete_backup(id).await?;
            }
        }
        // Object Lock with extend_kept: the complete backups the rules keep stay locked.
        let rule_kept: Vec<String> = entries
            .iter()
            .filter(|e| {
                plan.contains(&e.id) && e.manifest.as_ref().is_some_and(|m| m.is_complete())
            })
            .map(|e| e.id.clone())
            .collect();
        let lock_extension = self.repo.extend_locks(&rule_kept, dry_run).await?;
        // Mark and sweep the shared blobs: keep those a remaining backup references.
        let with_manifest: Vec<String> = entries
            .iter()
            .filter(|e| e.manifest.is_some() && kept.contains(&e.id))
            .map(|e| e.id.clone())
            .collect();
        // A host without the private key of an encrypted repository cannot read the blob
        // references: it keeps every blob.
        let keys = self.repo.keys().await?;
        let blobs_deleted = if keys.encrypted() && !keys.can_read() {
            tracing::warn!("encrypted repository and no private key here: shared blobs are not swept (prune from a host with the key)");
            0
        } else {
            let referenced = self.repo.referenced_blobs(&with_manifest).await?;
            self.repo.sweep_blobs(&referenced, dry_run).await?
        };
        Ok(PruneOutcome {
            kept,
            deleted,
            blobs_deleted,
            dry_run,
            locked,
            lock_extension,
        })
    }
}

/// The ids `prune` keeps. The keep rules count ordinary complete backups only (so that safety
/// backups can never push the last real backup out). A safety backup is kept while it is not
/// older than the oldest kept ordinary backup. Failed and interrupted runs are kept only when
/// newer than the newest kept backup (one may still be running).
pub(crate) fn prune_plan(
    entries: &[crate::repository::BackupEntry],
    policy: &RetentionPolicy,
) -> std::collections::BTreeSet<String> {
    let ordinary: Vec<(String, chrono::DateTime<Utc>)> = entries
        .iter()
        .filter_map(|e| {
            e.manifest
                .as_ref()
                .filter(|m| m.is_complete() && m.purpose == BackupPurpose::Backup)
                .map(|m| (e.id.clone(), m.started_at))
        })
        .collect();
    let mut keep = policy.select(&ordinary);
    let oldest_kept = keep.iter().min().cloned();
    let newest_kept = keep.iter().max().cloned();
    for e in entries {
        let Some(m) = &e.manifest else {
            if newest_kept.as_ref().map(|k| e.id > *k).unwrap_or(true) {
                keep.insert(e.id.clone());
            }
            continue;
        };
        if m.is_complete() && m.purpose == BackupPurpose::Safety {
            if oldest_kept.as_ref().map(|k| e.id >= *k).unwrap_or(true) {
                keep.insert(e.id.clone());
            }
        } else if !m.is_complete() && newest_kept.as_ref().map(|k| e.id > *k).unwrap_or(true) {
            keep.insert(e.id.clone());
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::BackupEntry;

    fn entry(id: &str, purpose: Option<BackupPurpose>, complete: bool) -> BackupEntry {
        let t = chrono::NaiveDateTime::parse_from_str(&id[..15], "%Y%m%d_%H%M%S")
            .map(|n| n.and_utc())
            .unwrap_or_else(|_| Utc::now());
        BackupEntry {
            id: id.into(),
            manifest: purpose.map(|purpose| Manifest {
                format_version: FORMAT_VERSION,
                id: id.into(),
                status: if complete {
                    BackupStatus::Complete
                } else {
                    BackupStatus::Failed
                },
                purpose,
                tool_version: "t".into(),
                host: "h".into(),
                started_at: t,
                finished_at: t,
                tags: vec![],
                components: BTreeMap::new(),
                sealed: false,
                locked_until: None,
                cut: None,
                references: Vec::new(),
            }),
            problem: None,
        }
    }

    #[test]
    fn safety_backups_never_push_out_real_backups() {
        use BackupPurpose::*;
        let entries = vec![
            entry("20260101_000000", Some(Backup), true),
            entry("20260102_000000", Some(Safety), true),
            entry("20260103_000000", Some(Backup), true),
            entry("20260104_000000", Some(Safety), true),
            entry("20260105_000000", Some(Safety), true),
        ];
        let keep = prune_plan(
            &entries,
            &RetentionPolicy {
                keep_last: 2,
                ..Default::default()
            },
        );
        let want: std::collections::BTreeSet<String> = [
            "20260101_000000",
            "20260102_000000",
            "20260103_000000",
            "20260104_000000",
            "20260105_000000",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(
            keep, want,
            "both real backups kept, and the safety backups after the oldest"
        );
        let keep = prune_plan(
            &entries,
            &RetentionPolicy {
                keep_last: 1,
                ..Default::default()
            },
        );
        assert!(keep.contains("20260103_000000") && !keep.contains("20260101_000000"));
        assert!(
            !keep.contains("20260102_000000"),
            "older than every kept backup"
        );
        assert!(keep.contains("20260105_000000"));
    }

    #[test]
    fn leftovers_go_unless_newer_than_every_kept_backup() {
        use BackupPurpose::*;
        let entries = vec![
            entry("20260101_000000", None, false),
            entry("20260102_000000", Some(Backup), false),
            entry("20260103_000000", Some(Backup), true),
            entry("20260104_000000", None, false),
        ];
        let keep = prune_plan(
            &entries,
            &RetentionPolicy {
                keep_last: 5,
                ..Default::default()
            },
        );
        let want: std::collections::BTreeSet<String> = ["20260103_000000", "20260104_000000"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(keep, want);
    }
}
