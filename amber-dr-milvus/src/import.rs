//! Restoring a binlog backup (`binlog.rs`) through Milvus's bulk import in backup mode:
//! the files are staged in Milvus's bucket under a prefix outside Milvus's root path, each
//! partition is imported with `Import` (option `backup=true`), which keeps every primary key
//! — also in an auto-id collection — and applies the delta logs (deletes); the staged files
//! are deleted afterwards, whatever happened. Milvus writes the imported rows into new
//! segments of its own and records them in its metadata itself, so its etcd metadata and its
//! bucket always agree.

use std::collections::BTreeMap;
use std::time::Duration;

use amber_dr_core::{ArtifactRecord, Error, ReadContext, Result};
use milvus::proto::common::ImportState;
use milvus::proto::milvus as pb;

use crate::binlog::{BinlogReader, BinlogRecord};
use crate::client::Client;
use crate::error::MilvusError;
use crate::pages::corrupt;
use crate::storage::Bucket;

/// Where staged files go in Milvus's bucket (outside its root path, so that Milvus's garbage
/// collector never sees them as orphans of its own).
pub(crate) const STAGING: &str = "amber-dr-staging";

/// A short id unique to this process and moment (base 36 nanoseconds since the epoch).
pub(crate) fn unique_id() -> String {
    let mut n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut s = Vec::new();
    while n > 0 {
        s.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// Old field id → new field id, by field name (`$meta` included; 0 and 1, the row id and
/// timestamp columns, stay).
///
/// `DescribeCollection` leaves the dynamic field `$meta` out of the schema; Milvus appends it
/// after the user fields and numbers fields in order, so its id is the one after the last
/// user field's, in the backup and in the recreated collection alike.
pub(crate) fn field_map(
    rec: &BinlogRecord,
    now: &BTreeMap<String, i64>,
    dynamic: bool,
    what: &str,
) -> Result<BTreeMap<i64, i64>, String> {
    let mut map: BTreeMap<i64, i64> = [(0, 0), (1, 1)].into_iter().collect();
    if dynamic && !rec.field_ids.contains_key("$meta") {
        let after = |ids: &mut dyn Iterator<Item = i64>| ids.max().unwrap_or(99) + 1;
        map.insert(
            after(&mut rec.field_ids.values().copied()),
            after(&mut now.values().copied()),
        );
    }
    for (name, old) in &rec.field_ids {
        let new = now.get(name).ok_or_else(|| {
            format!("{what}: the recreated collection has no field `{name}` (field id {old} in the backup)")
        })?;
        map.insert(*old, *new);
    }
    Ok(map)
}

/// The staged key of a file of the artifact: `insert_log/C/P/S/F/L` with the field id `F`
/// mapped, `delta_log/C/P/S/L` as it is.
pub(crate) fn staged_key(
    prefix: &str,
    key: &str,
    fields: &BTreeMap<i64, i64>,
) -> Result<String, String> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["insert_log", c, p, s, f, l] => {
            let old: i64 = f
                .parse()
                .map_err(|_| format!("file `{key}`: field id `{f}` is not a number"))?;
            let new = fields
                .get(&old)
                .ok_or_else(|| format!("file `{key}`: field id {old} is not in the schema"))?;
            Ok(format!("{prefix}/insert_log/{c}/{p}/{s}/{new}/{l}"))
        }
        ["delta_log", c, p, s, l] => Ok(format!("{prefix}/delta_log/{c}/{p}/{s}/{l}")),
        _ => Err(format!(
            "file `{key}` is neither an insert log nor a delta log"
        )),
    }
}

/// Upload every file of the artifact under `prefix` in the bucket (field ids mapped).
pub(crate) async fn stage(
    cx: &ReadContext,
    bucket: &Bucket,
    art: &ArtifactRecord,
    prefix: &str,
    fields: &BTreeMap<i64, i64>,
    fail: impl Fn(String) -> Error,
) -> Result<u64> {
    let mut r = BinlogReader::open(cx, art).await?;
    let mut n = 0;
    while let Some((key, size)) = r.next().await? {
        let to = staged_key(prefix, &key, fields).map_err(|m| corrupt(r.path(), m))?;
        let path = r.path().to_string();
        bucket
            .upload(&to, size, r.body())
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    corrupt(&path, "the artifact ends inside a file")
                }
                _ => fail(e.to_string()),
            })?;
        cx.progress().add_bytes(size);
        n += 1;
    }
    r.finish().await?;
    Ok(n)
}

/// Import the staged files of one partition (`insert_log/C/P/`, `delta_log/C/P/` under
/// `prefix`) into `db.name`, partition `partition` (a backup import needs one, also in a
/// partition-key collection), and wait until Milvus says it is complete. Returns the rows
/// imported (deleted ones left out).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn import_partition(
    c: &Client,
    db: &str,
    name: &str,
    partition: &str,
    prefix: &str,
    cid: i64,
    pid: i64,
    timeout: Duration,
) -> Result<u64, MilvusError> {
    let what = format!(
        "Import into `{db}.{name}`{}",
        if partition.is_empty() {
            String::new()
        } else {
            format!(" partition `{partition}`")
        }
    );
    // Backup mode needs both directories (with one path Milvus takes it for a data file),
    // the delta one even when there are no deletes.
    let files = vec![
        format!("{prefix}/insert_log/{cid}/{pid}/"),
        format!("{prefix}/delta_log/{cid}/{pid}/"),
    ];
    let req = pb::ImportRequest {
        db_name: db.to_string(),
        collection_name: name.to_string(),
        partition_name: partition.to_string(),
        files,
        options: vec![crate::component::kv("backup", "true")],
        ..Default::default()
    };
    let r = c
        .call(&what, |mut s| async move { s.import(req).await })
        .await?;
    let mut rows = 0u64;
    let deadline = tokio::time::Instant::now() + timeout;
    for task in r.tasks {
        loop {
            let req = pb::GetImportStateRequest { task };
            let st = c
                .call(&what, |mut s| async move { s.get_import_state(req).await })
                .await?;
            match ImportState::try_from(st.state) {
                Ok(ImportState::ImportCompleted) => {
                    rows += st.row_count.max(0) as u64;
                    break;
                }
                Ok(ImportState::ImportFailed | ImportState::ImportFailedAndCleaned) => {
                    let reason: Vec<String> = st
                        .infos
                        .iter()
                        .map(|kv| format!("{}={}", kv.key, kv.value))
                        .collect();
                    return Err(c.call_err(
                        &what,
                        format!("import task {task} failed: {}", reason.join(", ")),
                    ));
                }
                _ => {}
            }
            if tokio::time::Instant::now() > deadline {
                return Err(c.call_err(
                    &what,
                    format!(
                        "import task {task} not complete after {}s (load_timeout_secs)",
                        timeout.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn staged_keys_map_field_ids_and_refuse_other_files() {
        let fields: BTreeMap<i64, i64> = [(0, 0), (1, 1), (100, 100), (101, 105)]
            .into_iter()
            .collect();
        assert_eq!(
            staged_key("s", "insert_log/7/8/9/101/55", &fields).unwrap(),
            "s/insert_log/7/8/9/105/55"
        );
        assert_eq!(
            staged_key("s", "delta_log/7/8/9/56", &fields).unwrap(),
            "s/delta_log/7/8/9/56"
        );
        assert!(staged_key("s", "insert_log/7/8/9/102/55", &fields)
            .unwrap_err()
            .contains("field id 102"));
        assert!(staged_key("s", "stats_log/7/8/9/100/1", &fields).is_err());
    }
}
