//! Which Milvus servers the driver backs up correctly (see docs/milvus-versions.md).

/// `Ok` for a server version the driver can back up and restore correctly; otherwise why not,
/// naming what is missing.
pub(crate) fn supported(version: &str) -> Result<(), String> {
    let v = version.trim().trim_start_matches('v');
    let mut it = v.split(['.', '-', '+']).map(|p| p.parse::<u64>().ok());
    let (major, minor) = match (it.next().flatten(), it.next().flatten()) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            return Err(format!(
                "Milvus reports version `{version}`, which the driver cannot read; it supports Milvus 2.3"
            ))
        }
    };
    match (major, minor) {
        (2, 3) => Ok(()),
        (2, m) if m < 3 => Err(format!(
            "Milvus {version} is older than 2.3: it lacks the flush timestamp (FlushResponse.coll_flush_ts), JSON and Array fields and the backup import this driver relies on; upgrade Milvus to 2.3"
        )),
        _ => Err(format!(
            "Milvus {version} is newer than the 2.3 this driver is tested with: it keeps deletes in L0 segments (not copied by the segment-file backup), adds Float16/BFloat16/sparse vectors and several vector fields per collection, and replaces the backup import with ImportV2; the driver refuses it rather than write an incomplete backup (docs/milvus-versions.md)"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::supported;

    #[test]
    fn only_2_3_is_supported() {
        assert!(supported("v2.3.5").is_ok());
        assert!(supported("2.3.0").is_ok());
        assert!(supported("v2.4.1").unwrap_err().contains("L0"));
        assert!(supported("v2.2.9").unwrap_err().contains("older"));
        assert!(supported("banana").unwrap_err().contains("cannot read"));
    }
}
