//! Blobs in an encrypted repository (issue 16): sealed, under keyed names (no content hash
//! in any name), deduplicated across runs, swept by their keyed names.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashSet;

use amber_dr_core::blobs::{blob_path, content_hash};
use amber_dr_core::crypto::EncryptionConfig;
use amber_dr_core::{Progress, Repository, RepositoryConfig};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn open(dir: &std::path::Path) -> Repository {
    let mut cfg = RepositoryConfig::new(dir.to_string_lossy());
    cfg.encryption = Some(EncryptionConfig {
        passphrase: Some("blob test passphrase".into()),
        ..Default::default()
    });
    Repository::open(&cfg).unwrap()
}

fn blob_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir.join("blobs")) else {
        return out;
    };
    for d in rd.flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            out.push(f.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[tokio::test]
async fn encrypted_blobs_are_sealed_keyed_deduplicated_and_swept() {
    let dir = tempfile::tempdir().unwrap();
    let repo = open(dir.path());
    repo.prepare_write().await.unwrap();
    let text = Bytes::from(b"a document body that compresses well ".repeat(1000));
    let a = repo.put_blob(text.clone(), Progress::none()).await.unwrap();
    assert_eq!(a.sha256, content_hash(&text));
    // Not under its content hash; one blob, under another (keyed) name.
    assert!(!dir.path().join(blob_path(&a.sha256)).exists());
    let names = blob_files(dir.path());
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(!names[0].contains(&a.sha256), "{names:?}");
    let stored = std::fs::read(
        dir.path()
            .join("blobs")
            .join(&names[0][..2])
            .join(&names[0]),
    )
    .unwrap();
    assert!(stored.starts_with(b"amberdr\x01"), "sealed");
    assert!(
        !stored.windows(20).any(|w| w == &text[..20]),
        "plaintext stored"
    );
    assert!(repo.has_blob(&a.sha256).await.unwrap());
    assert_eq!(repo.read_blob(&a, Progress::none()).await.unwrap(), text);

    // The streamed writer finds it; a large streamed blob reads back through both readers.
    let mut w = repo.write_blob(Progress::none()).await.unwrap();
    w.write_all(&text).await.unwrap();
    assert!(w.finish().await.unwrap().deduplicated);
    let noise: Vec<u8> = (0..2_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut w = repo.write_blob(Progress::none()).await.unwrap();
    w.write_all(&noise).await.unwrap();
    let b = w.finish().await.unwrap();
    let mut out = Vec::new();
    repo.open_blob(&b, Progress::none())
        .await
        .unwrap()
        .read_to_end(&mut out)
        .await
        .unwrap();
    assert_eq!(out, noise);

    // Another run (a new handle, same passphrase) names blobs the same: deduplicated.
    let again = open(dir.path());
    let d = again
        .put_blob(text.clone(), Progress::none())
        .await
        .unwrap();
    assert!(d.deduplicated);
    assert_eq!(blob_files(dir.path()).len(), 2);

    // Sweep keeps what is referenced (by content hash), deletes the rest.
    let keep: HashSet<String> = [a.sha256.clone()].into_iter().collect();
    assert_eq!(again.sweep_blobs(&keep, false).await.unwrap(), 1);
    assert!(again.has_blob(&a.sha256).await.unwrap());
    assert!(!again.has_blob(&b.sha256).await.unwrap());

    // A flipped byte in a sealed blob is damage.
    let names = blob_files(dir.path());
    let p = dir
        .path()
        .join("blobs")
        .join(&names[0][..2])
        .join(&names[0]);
    let mut v = std::fs::read(&p).unwrap();
    let n = v.len();
    v[n - 5] ^= 1;
    std::fs::write(&p, v).unwrap();
    let err = again.read_blob(&a, Progress::none()).await.unwrap_err();
    assert!(err.is_damage(), "{err}");
}
