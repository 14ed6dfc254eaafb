//! Helpers of the end-to-end suite: reaching the local stack started by `scripts/stack.sh`.
// test-lane: rest (the helpers name the S3 server; their own unit tests use no server)

use amber_dr_core::RepositoryConfig;

/// The S3 endpoint of the local stack as a repository config for `s3://BUCKET/PREFIX`, or
/// `None` when the stack's environment (`eval "$(scripts/stack.sh env)"`) is not loaded.
pub fn s3_repository(prefix: &str) -> Option<RepositoryConfig> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let endpoint = var("AMBER_DR_S3_ENDPOINT")?;
    let bucket = var("AMBER_DR_S3_BUCKET")?;
    Some(RepositoryConfig {
        url: format!("s3://{bucket}/{prefix}"),
        endpoint: Some(endpoint),
        region: var("AMBER_DR_S3_REGION"),
        access_key_id: var("AMBER_DR_S3_ACCESS_KEY"),
        secret_access_key: var("AMBER_DR_S3_SECRET_KEY").map(Into::into),
        ..Default::default()
    })
}

/// A prefix unique to this test run.
pub fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("e2e/{name}-{}-{nanos}", std::process::id())
}
