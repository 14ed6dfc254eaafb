//! Encryption at rest: envelope encryption of everything a backup stores.
//!
//! See `docs/repository-format.md` ("Encrypted repositories") for the byte-level format and
//! `docs/encryption.md` for the design. In short:
//!
//! - `keys/keyring.json` marks a repository as encrypted. It holds the repository key pairs
//!   (age X25519; public halves in clear) and *slots*: the secret halves and the blob-name
//!   secret, wrapped with age for a passphrase (scrypt) or for an age recipient.
//! - Each run that writes makes a random 32-byte *data key*, wraps it with age for the
//!   repository's current key and every configured recipient (`keys/data/<kid>.age`), and seals
//!   every artifact, blob and manifest with it ([`stream`]).
//! - A host with only recipients (no passphrase, no identity) can write but never read.
//! - Blob names are HMAC-SHA256 of the content hash, keyed by the repository's name key.
//!
//! Nothing here is home-made cryptography: age wraps keys, ChaCha20-Poly1305 in the STREAM
//! construction seals streams, HKDF-SHA256 derives per-stream keys, HMAC-SHA256 names blobs.

pub mod aead;
pub mod keyring;
pub mod repo;
pub mod stream;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use age::secrecy::{ExposeSecret, SecretString};
use age::x25519;
use hmac::{Hmac, Mac};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{Error, Result};
pub use keyring::{Keyring, NamesMode, RepoKey, Slot, SlotKind};

/// The `encryption` value of an artifact record sealed by [`stream`].
pub const STREAM_FORMAT: &str = "amber-dr-stream-v1";
/// Where data keys live.
pub const DATA_KEYS: &str = "keys/data";

/// `[repository.encryption]` in `amber-dr.toml`.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// A passphrase: this host can back up and read (`${VAR}` recommended).
    #[serde(default)]
    pub passphrase: Option<String>,
    /// age X25519 public keys (`age1...`): every data key this host makes is wrapped for them.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// An age identity file (`AGE-SECRET-KEY-1...` lines): the private key that reads.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
}

impl std::fmt::Debug for EncryptionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionConfig")
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("recipients", &self.recipients)
            .field("identity_file", &self.identity_file)
            .finish()
    }
}

/// A data key: 16-byte id and 32-byte secret.
pub struct DataKey {
    pub(crate) id: [u8; 16],
    pub(crate) key: [u8; 32],
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey({})", hex::encode(self.id))
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.key = [0; 32];
    }
}

pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

fn cfg_err(key: &str, message: impl Into<String>) -> Error {
    Error::config(format!("repository.encryption.{key}"), message)
}

/// The keys this host was configured with, checked when the repository is opened (before
/// anything is read or written).
pub(crate) struct KeySource {
    pub(crate) passphrase: Option<SecretString>,
    pub(crate) recipients: Vec<(String, x25519::Recipient)>,
    pub(crate) identities: Vec<x25519::Identity>,
}

impl KeySource {
    pub(crate) fn from_config(c: &EncryptionConfig) -> Result<Self> {
        let passphrase = match &c.passphrase {
            Some(p) if p.is_empty() => return Err(cfg_err("passphrase", "is empty")),
            Some(p) => Some(SecretString::from(p.clone())),
            None => None,
        };
        let mut recipients = Vec::new();
        for (i, r) in c.recipients.iter().enumerate() {
            let r = r.trim();
            let parsed = x25519::Recipient::from_str(r).map_err(|_| {
                cfg_err(
                    &format!("recipients[{i}]"),
                    format!("`{r}` is not an age X25519 recipient (age1...)"),
                )
            })?;
            recipients.push((r.to_string(), parsed));
        }
        let mut identities = Vec::new();
        if let Some(path) = &c.identity_file {
            identities = read_identity_file(path)?;
        }
        if passphrase.is_none() && recipients.is_empty() && identities.is_empty() {
            return Err(Error::config(
                "repository.encryption",
                "set a passphrase, recipients or an identity_file",
            ));
        }
        Ok(Self {
            passphrase,
            recipients,
            identities,
        })
    }
}

/// Read an age identity file: `AGE-SECRET-KEY-1...` lines, `#` comments. Errors never print
/// the file's content.
pub fn read_identity_file(path: &std::path::Path) -> Result<Vec<x25519::Identity>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        cfg_err(
            "identity_file",
            format!("cannot read `{}`: {e}", path.display()),
        )
    })?;
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let id = x25519::Identity::from_str(line).map_err(|_| {
            cfg_err(
                "identity_file",
                format!(
                    "`{}` line {}: not an age X25519 identity (AGE-SECRET-KEY-1...)",
                    path.display(),
                    n + 1
                ),
            )
        })?;
        ids.push(id);
    }
    if ids.is_empty() {
        return Err(cfg_err(
            "identity_file",
            format!("`{}` holds no age identity", path.display()),
        ));
    }
    Ok(ids)
}

/// age-encrypt `plain` for `recipients`.
pub(crate) fn age_wrap(recipients: &[&dyn age::Recipient], plain: &[u8]) -> Result<Vec<u8>> {
    let enc = age::Encryptor::with_recipients(recipients.iter().copied())
        .map_err(|e| Error::Other(format!("cannot wrap a key: {e}")))?;
    let mut out = Vec::new();
    let mut w = enc
        .wrap_output(&mut out)
        .map_err(|e| Error::Other(format!("cannot wrap a key: {e}")))?;
    w.write_all(plain)
        .and_then(|_| w.finish().map(|_| ()))
        .map_err(|e| Error::Other(format!("cannot wrap a key: {e}")))?;
    Ok(out)
}

/// Why an age file could not be opened.
pub(crate) enum Unwrap {
    /// None of the identities is among its recipients (or the passphrase is wrong).
    NoKey,
    /// The file is damaged.
    Damaged(String),
}

/// age-decrypt `wrapped` with `identities`.
pub(crate) fn age_unwrap(
    identities: &[&dyn age::Identity],
    wrapped: &[u8],
) -> std::result::Result<Vec<u8>, Unwrap> {
    let dec = age::Decryptor::new(wrapped).map_err(|e| Unwrap::Damaged(e.to_string()))?;
    let mut r = match dec.decrypt(identities.iter().copied()) {
        Ok(r) => r,
        Err(age::DecryptError::NoMatchingKeys) | Err(age::DecryptError::DecryptionFailed) => {
            return Err(Unwrap::NoKey)
        }
        Err(e) => return Err(Unwrap::Damaged(e.to_string())),
    };
    let mut out = Vec::new();
    r.read_to_end(&mut out)
        .map_err(|e| Unwrap::Damaged(e.to_string()))?;
    Ok(out)
}

/// The unlocked keys of a repository for this host.
pub struct Keys {
    /// The keyring, if the repository is encrypted.
    pub keyring: Option<Keyring>,
    /// The slot this host opened, if any.
    pub opened_slot: Option<String>,
    repo_secrets: Vec<(String, x25519::Identity)>,
    names_secret: Option<[u8; 32]>,
    identities: Vec<x25519::Identity>,
    write_recipients: Vec<x25519::Recipient>,
    name_key: Option<[u8; 32]>,
    names_problem: Option<String>,
    configured: bool,
    cache: std::sync::Mutex<HashMap<[u8; 16], Arc<DataKey>>>,
    writer: tokio::sync::OnceCell<Arc<DataKey>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("encrypted", &self.keyring.is_some())
            .field("can_read", &self.can_read())
            .finish()
    }
}

impl Keys {
    /// True if the repository is encrypted (it has a keyring).
    pub fn encrypted(&self) -> bool {
        self.keyring.is_some()
    }

    /// True if this host holds a private key (passphrase or identity).
    pub fn can_read(&self) -> bool {
        !self.identities.is_empty()
    }

    /// True if this host has keys configured.
    pub fn configured(&self) -> bool {
        self.configured
    }

    /// The repository's secret keys this host unlocked (key id, identity).
    pub(crate) fn repo_secrets(&self) -> &[(String, x25519::Identity)] {
        &self.repo_secrets
    }

    pub(crate) fn names_secret(&self) -> Option<[u8; 32]> {
        self.names_secret
    }

    /// The keyed name of the blob of content hash `sha256`, or None when this host cannot name
    /// blobs (with the reason).
    pub fn blob_name(&self, sha256: &str) -> std::result::Result<String, String> {
        let Some(k) = &self.name_key else {
            return Err(self
                .names_problem
                .clone()
                .unwrap_or_else(|| "this host holds no blob-name key".into()));
        };
        Ok(keyed_name(k, sha256))
    }

    /// The error when a private key is needed and this host has none.
    pub fn need_private_key(&self, what: &str) -> Error {
        Error::config(
            "repository.encryption",
            format!(
                "{what} is encrypted and reading it needs the private key: configure `passphrase` or `identity_file` under [repository.encryption] (this host {})",
                if self.configured {
                    "has only recipients: it can back up, not read"
                } else {
                    "has no [repository.encryption]"
                }
            ),
        )
    }

    /// The data key this run writes with (made and stored on first use).
    pub(crate) async fn write_key(
        &self,
        store: &Arc<dyn ObjectStore>,
        url: &str,
    ) -> Result<Arc<DataKey>> {
        self.writer
            .get_or_try_init(|| async {
                if self.write_recipients.is_empty() {
                    return Err(Error::config(
                        "repository.encryption",
                        "no key to write with: this host unlocked no repository key and has no recipients",
                    ));
                }
                let dk = Arc::new(DataKey {
                    id: random(),
                    key: random(),
                });
                let wrapped = {
                    let rs: Vec<&dyn age::Recipient> = self
                        .write_recipients
                        .iter()
                        .map(|r| r as &dyn age::Recipient)
                        .collect();
                    age_wrap(&rs, &dk.key)?
                };
                let path = Path::from(format!("{DATA_KEYS}/{}.age", hex::encode(dk.id)));
                store
                    .put_opts(
                        &path,
                        PutPayload::from(wrapped),
                        PutOptions {
                            mode: PutMode::Create,
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|source| Error::Repository {
                        repo: url.to_string(),
                        operation: "write data key",
                        path: path.to_string(),
                        source: Box::new(source),
                    })?;
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(dk.id, dk.clone());
                Ok(dk)
            })
            .await
            .cloned()
    }

    /// The data key `kid`, unwrapped from `keys/data/<kid>.age`.
    pub(crate) async fn data_key(
        &self,
        store: &Arc<dyn ObjectStore>,
        url: &str,
        kid: [u8; 16],
        what: &str,
    ) -> Result<Arc<DataKey>> {
        if let Some(k) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&kid)
        {
            return Ok(k.clone());
        }
        if !self.can_read() {
            return Err(self.need_private_key(what));
        }
        let path = format!("{DATA_KEYS}/{}.age", hex::encode(kid));
        let p = Path::from(path.as_str());
        let bytes = match store.get(&p).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::Corrupt {
                    artifact: what.to_string(),
                    message: format!("its data key `{path}` is missing from the repository"),
                })
            }
            Err(source) => {
                return Err(Error::Repository {
                    repo: url.to_string(),
                    operation: "read",
                    path,
                    source: Box::new(source),
                })
            }
        };
        let ids: Vec<&dyn age::Identity> = self
            .identities
            .iter()
            .map(|i| i as &dyn age::Identity)
            .collect();
        let key = match age_unwrap(&ids, &bytes) {
            Ok(k) => k,
            Err(Unwrap::NoKey) => {
                return Err(Error::config(
                    "repository.encryption",
                    format!(
                        "none of this host's keys opens the data key `{path}` of {what} (it was wrapped for other recipients)"
                    ),
                ))
            }
            Err(Unwrap::Damaged(m)) => {
                return Err(Error::Corrupt {
                    artifact: path,
                    message: format!("the data key cannot be unwrapped: {m}"),
                })
            }
        };
        let key: [u8; 32] = key.try_into().map_err(|_| Error::Corrupt {
            artifact: path.clone(),
            message: "a data key is not 32 bytes".into(),
        })?;
        let dk = Arc::new(DataKey { id: kid, key });
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kid, dk.clone());
        Ok(dk)
    }
}

/// HMAC-SHA256 of the ASCII content hash under the name key, hex.
pub(crate) fn keyed_name(key: &[u8; 32], sha256: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(sha256.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// HKDF-SHA256 of `ikm` with amber-dr's salt and `info`.
pub(crate) fn derive(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(b"amber-dr blob names"), ikm);
    let mut okm = [0u8; 32];
    let _ = hk.expand(info, &mut okm);
    okm
}

/// Unlock the repository's keys for a host configured with `source` (None: no encryption
/// configured), reading the keyring from `store`.
pub(crate) async fn unlock(
    store: &Arc<dyn ObjectStore>,
    url: &str,
    source: Option<&KeySource>,
) -> Result<Keys> {
    let keyring = keyring::read(store, url).await?;
    let (kr, src) = match (keyring, source) {
        (Some(kr), Some(src)) => (kr, src),
        (keyring, source) => return Ok(assemble(keyring, source, Opened::default())),
    };
    // scrypt (a passphrase slot) costs ~0.2 s of CPU and 64 MiB: on the blocking pool, so that
    // the runtime's workers go on with what does not need the key.
    let src_for_open = OpenWith {
        passphrase: src.passphrase.clone(),
        identities: src.identities.clone(),
    };
    let (kr, opened) = tokio::task::spawn_blocking(move || {
        let opened = open_slots(&kr, &src_for_open);
        (kr, opened)
    })
    .await
    .map_err(|e| Error::Other(format!("unlocking the keyring failed: {e}")))?;
    Ok(assemble(Some(kr), Some(src), opened?))
}

/// What opening the keyring's slots needs of a host's keys.
struct OpenWith {
    passphrase: Option<SecretString>,
    identities: Vec<x25519::Identity>,
}

/// The secrets a slot gave.
#[derive(Default)]
pub(crate) struct Opened {
    pub(crate) repo_secrets: Vec<(String, x25519::Identity)>,
    pub(crate) names_secret: Option<[u8; 32]>,
    pub(crate) opened_slot: Option<String>,
}

/// Open the first slot of `kr` that this host's passphrase (else identities) opens.
fn open_slots(kr: &Keyring, src: &OpenWith) -> Result<Opened> {
    let mut repo_secrets = Vec::new();
    let mut names_secret = None;
    let mut opened_slot = None;
    if let Some(p) = &src.passphrase {
        let pass_slots: Vec<&Slot> = kr
            .slots
            .iter()
            .filter(|s| s.kind == SlotKind::Passphrase)
            .collect();
        if pass_slots.is_empty() {
            return Err(cfg_err(
                    "passphrase",
                    "the repository has no passphrase slot; add one with `amber-dr key add --passphrase` on a host that holds a key",
                ));
        }
        let mut id = age::scrypt::Identity::new(p.clone());
        id.set_max_work_factor(keyring::MAX_LOG_N);
        for s in pass_slots {
            if let Some(sec) = keyring::open_slot(s, &[&id as &dyn age::Identity])? {
                (repo_secrets, names_secret) = sec;
                opened_slot = Some(s.id.clone());
                break;
            }
        }
        if opened_slot.is_none() {
            return Err(cfg_err(
                "passphrase",
                "wrong passphrase: it opens none of the passphrase slots of keys/keyring.json",
            ));
        }
    }
    if opened_slot.is_none() && !src.identities.is_empty() {
        let ids: Vec<&dyn age::Identity> = src
            .identities
            .iter()
            .map(|i| i as &dyn age::Identity)
            .collect();
        for s in kr.slots.iter().filter(|s| s.kind == SlotKind::Recipient) {
            if let Some(sec) = keyring::open_slot(s, &ids)? {
                (repo_secrets, names_secret) = sec;
                opened_slot = Some(s.id.clone());
                break;
            }
        }
    }
    kr.check_secrets(&repo_secrets)?;
    Ok(Opened {
        repo_secrets,
        names_secret,
        opened_slot,
    })
}

/// The keys of a host configured with `source` for a repository with `keyring`, given the
/// secrets its slots gave.
pub(crate) fn assemble(
    keyring: Option<Keyring>,
    source: Option<&KeySource>,
    opened: Opened,
) -> Keys {
    let Opened {
        repo_secrets,
        names_secret,
        opened_slot,
    } = opened;
    let mut identities: Vec<x25519::Identity> = Vec::new();
    let mut write_recipients = Vec::new();
    if let Some(src) = source {
        identities.extend(src.identities.iter().cloned());
        write_recipients.extend(src.recipients.iter().map(|(_, r)| r.clone()));
    }
    if let Some(kr) = &keyring {
        if let Some((_, id)) = repo_secrets.iter().find(|(k, _)| *k == kr.current) {
            write_recipients.push(id.to_public());
        }
    }
    identities.extend(repo_secrets.iter().map(|(_, i)| i.clone()));
    let (mut name_key, mut names_problem) = (None, None);
    if let (Some(kr), Some(src)) = (&keyring, source) {
        let candidate = match kr.names {
            NamesMode::Keyring => names_secret.map(|s| derive(&s, b"keyring v1")),
            NamesMode::Recipients => Some(recipients_name_key(src)),
        };
        match candidate {
            Some(k) if keyring::names_check(&k) == kr.names_check => name_key = Some(k),
            Some(_) => {
                names_problem = Some(match kr.names {
                    NamesMode::Recipients => "this repository names blobs with a key derived from its recipients, and this host's `recipients` are not the same list".into(),
                    NamesMode::Keyring => "the blob-name key of the keyring does not match its check value (keyring damaged?)".into(),
                })
            }
            None => {
                names_problem = Some(
                    "this repository names blobs with a key kept in its keyring; this host opened no slot of it (configure its passphrase or an identity)".into(),
                )
            }
        }
    }
    Keys {
        keyring,
        opened_slot,
        repo_secrets,
        names_secret,
        identities,
        write_recipients,
        name_key,
        names_problem,
        configured: source.is_some(),
        cache: Default::default(),
        writer: Default::default(),
    }
}

/// The name key of a write-only repository: derived from the sorted recipient list.
pub(crate) fn recipients_name_key(src: &KeySource) -> [u8; 32] {
    let mut rs: Vec<&str> = src.recipients.iter().map(|(s, _)| s.as_str()).collect();
    rs.sort_unstable();
    rs.dedup();
    derive(rs.join("\n").as_bytes(), b"recipients v1")
}

/// A new age X25519 key pair: (`AGE-SECRET-KEY-1...`, `age1...`).
pub fn generate_identity() -> (String, String) {
    let i = x25519::Identity::generate();
    (
        i.to_string().expose_secret().to_string(),
        i.to_public().to_string(),
    )
}
