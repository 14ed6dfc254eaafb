//! The `etcd` component.

use amber_dr_core::{
    async_trait, Capabilities, Component, ComponentRecord, Error, Probe, RestoreContext,
    RestoreOptions, RestoreRelation, RestoreReport, Result, SnapshotContext, SnapshotPurpose,
    VerifyContext, VerifyReport,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};

use crate::client::{prefix_end, Client, Kv};
use crate::config::EtcdConfig;
use crate::error::EtcdError;
use crate::format::{self, Digester, KvReader};

const ARTIFACT: &str = "keys.bin";
/// The optional raw member snapshot (config `raw_snapshot`).
const RAW_SNAPSHOT: &str = "member.snapshot.db";
/// Bytes of values one range page may bring back (pages shrink to stay under it).
const PAGE_BUDGET: usize = 8 * 1024 * 1024;

/// Where a paged read is.
#[derive(Debug)]
struct Pager {
    from: Vec<u8>,
    end: Vec<u8>,
    revision: i64,
    limit: usize,
    largest: usize,
    done: bool,
}

/// What the record keeps to restore and compare.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Details {
    /// The prefix the keys were read under (lossless: hex of its bytes).
    prefix_hex: String,
    /// The revision every key was read at.
    revision: i64,
    /// Keys in the artifact.
    count: u64,
    /// SHA-256 of the key/value records (see `format`).
    fingerprint: String,
    /// Bytes of keys and values.
    bytes: u64,
    server_version: String,
}

/// An etcd v3 cluster (one endpoint), limited to the keys under a prefix. See the crate docs.
#[derive(Debug, Clone)]
pub struct Etcd {
    name: String,
    config: EtcdConfig,
    client: Client,
}

impl Etcd {
    /// An `etcd` component named `name`; fails if an endpoint is not an http(s) URL.
    pub fn new(name: impl Into<String>, config: EtcdConfig) -> Result<Self> {
        let name = name.into();
        if config.endpoints.is_empty() {
            return Err(Error::config(
                format!("components.{name}.endpoints"),
                "lists no endpoint (e.g. [\"http://127.0.0.1:2379\"])",
            ));
        }
        for e in &config.endpoints {
            if !e.starts_with("http://") {
                return Err(Error::config(
                    format!("components.{name}.endpoints"),
                    format!(
                        "`{e}` is not an http:// URL of an etcd client port (e.g. http://127.0.0.1:2379); https:// (TLS) is not supported yet"
                    ),
                ));
            }
        }
        for (what, v) in [
            ("page_keys", config.page_keys),
            ("batch_ops", config.batch_ops),
            ("batch_bytes", config.batch_bytes),
        ] {
            if v == 0 {
                return Err(Error::config(
                    format!("components.{name}.{what}"),
                    "must be at least 1",
                ));
            }
        }
        let client = Client::new(&config.endpoints, config.timeout())
            .map_err(|e| Error::config(format!("components.{name}.endpoints"), e))?;
        Ok(Self {
            name,
            config,
            client,
        })
    }

    pub(crate) fn err(&self, op: &'static str) -> impl Fn(EtcdError) -> Error + '_ {
        move |e| Error::Component {
            component: self.name.clone(),
            kind: crate::KIND.to_string(),
            operation: op.to_string(),
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }

    fn fail(&self, op: &str, message: impl Into<String>) -> Error {
        Error::component(&self.name, crate::KIND, op, message)
    }

    fn prefix(&self) -> &[u8] {
        self.config.prefix.as_bytes()
    }

    /// The configured prefix, as configured.
    pub(crate) fn config_prefix(&self) -> &str {
        &self.config.prefix
    }

    /// The etcd client.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// `[start, end)` of a prefix (the empty prefix is the whole keyspace).
    fn bounds(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let start = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.to_vec()
        };
        (start, prefix_end(prefix))
    }

    /// Pages of every key under `prefix` at `revision`.
    fn pager(&self, prefix: &[u8], revision: i64) -> Pager {
        let (from, end) = Self::bounds(prefix);
        Pager {
            from,
            end,
            revision,
            limit: self.config.page_keys.min(64),
            largest: 0,
            done: false,
        }
    }

    /// The next page of `pager`, or `None` when it is through. Memory: one page, whose key
    /// count adapts to the largest pair seen so far.
    async fn next_page(&self, op: &str, pager: &mut Pager) -> Result<Option<Vec<Kv>>> {
        if pager.done {
            return Ok(None);
        }
        let page = self
            .client
            .range(&pager.from, &pager.end, pager.revision, pager.limit)
            .await
            .map_err(|e| match &e {
                EtcdError::Server { message, .. } if message.contains("compacted") => self.fail(
                    op,
                    format!(
                        "{e}; revision {} was compacted while it was read — run the backup again (or compact less often)",
                        pager.revision
                    ),
                ),
                _ => self.fail(op, e.to_string()),
            })?;
        let Some(last) = page.kvs.last() else {
            pager.done = true;
            return Ok(None);
        };
        pager.largest = page
            .kvs
            .iter()
            .map(|kv| kv.key.len() + kv.value.len())
            .fold(pager.largest, usize::max);
        pager.from = last.key.clone();
        pager.from.push(0);
        pager.done = !page.more;
        pager.limit = (PAGE_BUDGET / pager.largest.max(1)).clamp(1, self.config.page_keys);
        Ok(Some(page.kvs))
    }

    /// Count and fingerprint of what is under `prefix` now.
    async fn live_digest(&self, op: &'static str, prefix: &[u8]) -> Result<(Digester, i64)> {
        let (start, end) = Self::bounds(prefix);
        let (_, revision) = self
            .client
            .count(&start, &end)
            .await
            .map_err(self.err(op))?;
        let mut d = Digester::default();
        let mut pager = self.pager(prefix, revision);
        while let Some(kvs) = self.next_page(op, &mut pager).await? {
            for kv in &kvs {
                d.add(&kv.key, &kv.value);
            }
        }
        Ok((d, revision))
    }

    /// Stream etcd's own snapshot of the member into the artifact `member.snapshot.db`.
    async fn raw_snapshot(&self, cx: &SnapshotContext) -> Result<amber_dr_core::ArtifactRecord> {
        let op = "snapshot";
        cx.progress().set_phase("streaming the raw member snapshot");
        let mut stream = self
            .client
            .snapshot(std::time::Duration::from_secs(
                self.config.raw_snapshot_timeout_secs.max(1),
            ))
            .await
            .map_err(self.err(op))?;
        let mut w = cx.create_artifact(RAW_SNAPSHOT).await?;
        let path = w.path().to_string();
        while let Some(chunk) = stream.next_chunk().await.map_err(self.err(op))? {
            w.write_all(&chunk)
                .await
                .map_err(|e| Error::from_io("write", &path, e))?;
        }
        w.finish().await
    }

    /// Read the raw member snapshot through (its length and SHA-256 are checked at the end),
    /// if the record has one; its bytes read.
    async fn check_raw(&self, cx: &VerifyContext, record: &ComponentRecord) -> Result<Option<u64>> {
        let Some(art) = record.artifacts.iter().find(|a| a.name == RAW_SNAPSHOT) else {
            return Ok(None);
        };
        let mut r = cx.open_artifact(art).await?;
        let n = tokio::io::copy(&mut r, &mut tokio::io::sink())
            .await
            .map_err(|e| corrupt_or(e, &art.path))?;
        r.finish().await?;
        Ok(Some(n))
    }

    /// Read the artifact through, checking its hash, count and fingerprint, and that every key
    /// lies under `source` (mapped onto `dest` when they differ).
    async fn check_artifact(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        details: &Details,
        op: &str,
    ) -> Result<Digester> {
        let art = record.artifact(ARTIFACT)?;
        let source = hex::decode(&details.prefix_hex).map_err(|e| Error::Manifest {
            path: format!("components.{}.details.prefix_hex", record.name),
            message: e.to_string(),
        })?;
        let reader = cx.open_artifact(art).await?;
        let mut kvs = KvReader::new(BufReader::with_capacity(256 * 1024, reader))
            .await
            .map_err(|m| Error::Corrupt {
                artifact: art.path.clone(),
                message: m,
            })?;
        let mut d = Digester::default();
        while let Some(kv) = kvs.next().await.map_err(|e| corrupt_or(e, &art.path))? {
            if !kv.key.starts_with(&source) {
                return Err(self.fail(
                    op,
                    format!(
                        "{} holds key {} outside the recorded prefix {:?}: refusing to restore it",
                        art.path,
                        show(&kv.key),
                        String::from_utf8_lossy(&source)
                    ),
                ));
            }
            d.add(&kv.key, &kv.value);
        }
        // Reaching the end runs the length and SHA-256 checks.
        kvs.into_inner().into_inner().finish().await?;
        if d.count != details.count || d.fingerprint() != details.fingerprint {
            return Err(Error::Corrupt {
                artifact: art.path.clone(),
                message: format!(
                    "holds {} keys with fingerprint {}, the record says {} keys with fingerprint {}",
                    d.count,
                    d.fingerprint(),
                    details.count,
                    details.fingerprint
                ),
            });
        }
        Ok(d)
    }
}

fn corrupt_or(e: std::io::Error, artifact: &str) -> Error {
    let err = Error::from_io("read", artifact, e);
    match err {
        Error::Io { source, .. } => Error::Corrupt {
            artifact: artifact.to_string(),
            message: source.to_string(),
        },
        other => other,
    }
}

/// A key for messages: text when it is printable UTF-8, hex otherwise.
fn show(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if !s.chars().any(char::is_control) => format!("{s:?}"),
        _ => format!("0x{}", hex::encode(key)),
    }
}

#[async_trait]
impl Component for Etcd {
    fn kind(&self) -> &'static str {
        crate::KIND
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .online_snapshot(true)
            .consistent_snapshot(true)
            .restore_to_target(true)
            .restore_parts(false)
            .deep_verify(true)
    }

    fn scratch_plan(
        &self,
        _record: &ComponentRecord,
        scratch: &amber_dr_core::drill::Scratch,
    ) -> Result<amber_dr_core::drill::ScratchPlan> {
        Ok(self.plan_scratch(scratch))
    }

    async fn remove_scratch(&self, target: &str) -> Result<()> {
        self.delete_scratch_prefix(target).await
    }

    fn restore_relations(&self) -> Vec<RestoreRelation> {
        let with = self.config.restore_with.iter().map(|c| RestoreRelation::RestoreWith {
            component: c.clone(),
            reason: format!(
                "the keys under {:?} describe its data; one without the other is inconsistent (config `restore_with`)",
                self.config.prefix
            ),
        });
        let conflicts = self.config.conflicts_with.iter().map(|c| RestoreRelation::ConflictsWith {
            component: c.clone(),
            reason: format!(
                "restoring it recreates the keys under {:?} itself; restoring both leaves them inconsistent (config `conflicts_with`)",
                self.config.prefix
            ),
        });
        with.chain(conflicts).collect()
    }

    async fn probe(&self) -> Result<Probe> {
        let status = self.client.status().await.map_err(self.err("probe"))?;
        let (start, end) = Self::bounds(self.prefix());
        let (count, revision) = self
            .client
            .count(&start, &end)
            .await
            .map_err(self.err("probe"))?;
        let mut p = Probe {
            reachable: true,
            version: Some(status.version.clone()),
            size_estimate: status.db_size.as_deref().and_then(|s| s.parse().ok()),
            ..Default::default()
        };
        p.details
            .insert("endpoint".into(), self.client.endpoint().into());
        p.details
            .insert("prefix".into(), self.config.prefix.clone().into());
        p.details.insert("keys_under_prefix".into(), count.into());
        p.details.insert("revision".into(), revision.into());
        if count == 0 {
            p.warnings.push(format!(
                "no key starts with the prefix {:?}: a backup would be empty",
                self.config.prefix
            ));
        }
        Ok(p)
    }

    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        let op = "snapshot";
        cx.progress().set_phase("reading keys");
        let status = self.client.status().await.map_err(self.err(op))?;
        // One revision for every page: the keys are read as they were at that instant.
        let revision: i64 = status
            .header
            .revision
            .as_deref()
            .unwrap_or("0")
            .parse()
            .map_err(|e| self.fail(op, format!("etcd sent an unreadable revision: {e}")))?;
        // The cut: later writes do not change what is read at this revision.
        cx.mark_consistent();
        let w = cx.create_artifact(ARTIFACT).await?;
        let path = w.path().to_string();
        let mut w = BufWriter::with_capacity(256 * 1024, w);
        let io = |e| Error::from_io("write", &path, e);
        w.write_all(format::HEADER).await.map_err(io)?;
        let mut d = Digester::default();
        let mut pager = self.pager(self.prefix(), revision);
        while let Some(kvs) = self.next_page(op, &mut pager).await? {
            for kv in &kvs {
                format::write_kv(&mut w, kv).await.map_err(io)?;
                d.add(&kv.key, &kv.value);
            }
            cx.progress().add_items(kvs.len() as u64);
        }
        w.flush().await.map_err(io)?;
        let artifact = w.into_inner().finish().await?;

        let mut rec = ComponentRecord::new(crate::KIND, &self.name);
        rec.server_version = Some(status.version.clone());
        rec.artifacts.push(artifact);
        if self.config.raw_snapshot {
            let raw = self.raw_snapshot(cx).await?;
            rec.set_stat("raw_snapshot_bytes", raw.size);
            rec.artifacts.push(raw);
        }
        rec.set_stat("keys", d.count);
        rec.set_stat("bytes", d.bytes);
        rec.consistency.insert("revision".into(), revision.into());
        rec.consistency
            .insert("fingerprint".into(), d.fingerprint().into());
        if d.count == 0 {
            let msg = format!(
                "no key under the prefix {:?} at revision {revision}: the backup is empty",
                self.config.prefix
            );
            tracing::warn!(component = %self.name, "{msg}");
            if cx.purpose() == SnapshotPurpose::Backup {
                rec.warnings.push(msg);
            }
        }
        rec.set_details(&Details {
            prefix_hex: hex::encode(self.prefix()),
            revision,
            count: d.count,
            fingerprint: d.fingerprint(),
            bytes: d.bytes,
            server_version: status.version,
        })?;
        Ok(rec)
    }

    async fn decode(&self, cx: &VerifyContext, record: &ComponentRecord) -> Result<VerifyReport> {
        let details: Details = record.details()?;
        let mut report = VerifyReport {
            artifacts_checked: 1,
            ..Default::default()
        };
        match self.check_artifact(cx, record, &details, "verify").await {
            Ok(d) => {
                report.bytes_read = record.artifact(ARTIFACT)?.stored_size;
                report.notes.push(format!(
                    "{} keys decoded, count and fingerprint match the record (revision {})",
                    d.count, details.revision
                ));
            }
            Err(e) if e.is_damage() => report.problems.push(e.to_string()),
            Err(e) => return Err(e),
        }
        match self.check_raw(cx, record).await {
            Ok(None) => {}
            Ok(Some(n)) => {
                report.artifacts_checked += 1;
                report.notes.push(format!(
                    "raw member snapshot {RAW_SNAPSHOT}: {n} bytes, hash and length match"
                ));
            }
            Err(e) if e.is_damage() => report.problems.push(e.to_string()),
            Err(e) => return Err(e),
        }
        Ok(report)
    }

    async fn restore(
        &self,
        cx: &RestoreContext,
        record: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        let op = "restore";
        let details: Details = record.details()?;
        let source = hex::decode(&details.prefix_hex).map_err(|e| Error::Manifest {
            path: format!("components.{}.details.prefix_hex", record.name),
            message: e.to_string(),
        })?;
        // Keys land under the target prefix when one is given (drills), else as recorded —
        // and then every one of them must lie under the configured prefix.
        let dest: Vec<u8> = match &opts.target {
            Some(t) => t.as_bytes().to_vec(),
            None => self.prefix().to_vec(),
        };
        let rewrite = opts.target.is_some() && dest != source;
        if !rewrite && !source.starts_with(&dest) {
            return Err(self.fail(
                op,
                format!(
                    "the backup holds the keys under {:?}, which are not all under the configured prefix {:?}: refusing to write keys outside it (restore with --target {}=PREFIX to put them under another prefix)",
                    String::from_utf8_lossy(&source),
                    self.config.prefix,
                    self.name
                ),
            ));
        }
        let mut report = RestoreReport::default();
        // 1. The artifact must be readable, intact and match the record before anything changes.
        cx.progress().set_phase("checking the backup");
        self.check_artifact(cx, record, &details, op).await?;
        report.actions.push(format!(
            "checked {}: {} keys, fingerprint matches (revision {})",
            record.artifact(ARTIFACT)?.path,
            details.count,
            details.revision
        ));
        let map = |key: Vec<u8>| -> Vec<u8> {
            if rewrite {
                let mut k = dest.clone();
                k.extend_from_slice(&key[source.len()..]);
                k
            } else {
                key
            }
        };
        let (start, end) = Self::bounds(&dest);
        let (live, _) = self
            .client
            .count(&start, &end)
            .await
            .map_err(self.err(op))?;
        let shown = String::from_utf8_lossy(&dest).into_owned();
        if opts.dry_run {
            report.actions.push(format!(
                "would delete the {live} keys under {shown:?} at {} and write {} keys back in transactions of at most {} keys / {} bytes",
                self.client.endpoint(),
                details.count,
                self.config.batch_ops,
                self.config.batch_bytes
            ));
            return Ok(report);
        }
        // 2. Delete the prefix, 3. write the keys back in batched transactions.
        cx.progress().set_phase("deleting the prefix");
        let deleted = self
            .client
            .delete_range(&start, &end)
            .await
            .map_err(self.err(op))?;
        report
            .actions
            .push(format!("deleted {deleted} keys under {shown:?}"));
        cx.progress().set_phase("writing keys");
        let art = record.artifact(ARTIFACT)?;
        let reader = cx.open_artifact(art).await?;
        let mut kvs = KvReader::new(BufReader::with_capacity(256 * 1024, reader))
            .await
            .map_err(|m| Error::Corrupt {
                artifact: art.path.clone(),
                message: m,
            })?;
        let mut batch: Vec<Kv> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut written = 0u64;
        let mut txns = 0u64;
        loop {
            let next = kvs.next().await.map_err(|e| corrupt_or(e, &art.path))?;
            let flush = match &next {
                None => !batch.is_empty(),
                Some(kv) => {
                    !batch.is_empty()
                        && (batch.len() >= self.config.batch_ops
                            || batch_bytes + kv.key.len() + kv.value.len()
                                > self.config.batch_bytes)
                }
            };
            if flush {
                self.client.put_all(&batch).await.map_err(|e| {
                    self.fail(
                        op,
                        format!(
                            "{e} after {written} of {} keys were written; the prefix is incomplete: run the restore again",
                            details.count
                        ),
                    )
                })?;
                written += batch.len() as u64;
                txns += 1;
                cx.progress().add_items(batch.len() as u64);
                batch.clear();
                batch_bytes = 0;
            }
            let Some(kv) = next else { break };
            let key = map(kv.key);
            batch_bytes += key.len() + kv.value.len();
            batch.push(Kv {
                key,
                value: kv.value,
            });
        }
        kvs.into_inner().into_inner().finish().await?;
        report
            .actions
            .push(format!("wrote {written} keys in {txns} transactions"));

        // 4. Compare with the record, read back from the server.
        cx.progress().set_phase("comparing");
        let (live, revision) = self.live_digest(op, &dest).await?;
        report.stats.insert("keys".into(), live.count.into());
        report.stats.insert("revision".into(), revision.into());
        if live.count != details.count {
            return Err(self.fail(
                op,
                format!(
                    "restored, but {shown:?} now holds {} keys where the backup has {}",
                    live.count, details.count
                ),
            ));
        }
        if !rewrite && live.fingerprint() != details.fingerprint {
            return Err(self.fail(
                op,
                format!("restored, but the keys under {shown:?} differ from the backup (fingerprint {} instead of {})", live.fingerprint(), details.fingerprint),
            ));
        }
        if record.artifacts.iter().any(|a| a.name == RAW_SNAPSHOT) {
            report.warnings.push(format!(
                "the backup also holds etcd's raw member snapshot ({RAW_SNAPSHOT}); amber-dr does not restore it (it is for rebuilding a member with `etcdutl snapshot restore`, see the etcd driver's README)"
            ));
        }
        report.actions.push(format!(
            "read back {} keys at revision {revision}: count{} match the backup",
            live.count,
            if rewrite { "" } else { " and fingerprint" }
        ));
        if rewrite {
            report.warnings.push(format!(
                "keys restored under {shown:?} instead of {:?}: compared by count only",
                String::from_utf8_lossy(&source)
            ));
        }
        Ok(report)
    }
}
