//! The repository side of encryption: unlocking, the fail-closed write check, sealed
//! manifests, data-key lookup for readers, and the key commands.

use std::sync::Arc;

use age::secrecy::SecretString;
use age::x25519;
use base64::Engine;
use bytes::Bytes;
use object_store::PutPayload;
use serde::{Deserialize, Serialize};

use super::keyring::{self, make_slot, SlotWith};
use super::stream::{open_bytes, seal_bytes, sealed_key_id, KeyLookup};
use super::{assemble, unlock, DataKey, EncryptionConfig, KeySource, Keys, SlotKind};
use crate::manifest::{ComponentRecord, Manifest};
use crate::repository::Repository;
use crate::{Error, Result};

/// The encryption state of one repository handle: this host's configured keys and, once
/// read, the unlocked keys.
#[derive(Default)]
pub(crate) struct RepoCrypto {
    source: Option<KeySource>,
    keys: tokio::sync::Mutex<Option<Arc<Keys>>>,
}

impl RepoCrypto {
    pub(crate) fn new(config: Option<&EncryptionConfig>) -> Result<Self> {
        Ok(Self {
            source: config.map(KeySource::from_config).transpose()?,
            keys: Default::default(),
        })
    }
}

/// What `doctor`, `show` and `key list` say about a repository's encryption.
#[derive(Debug, Clone, Serialize)]
pub struct EncryptionStatus {
    /// The repository has a keyring: everything written from now on is encrypted.
    pub encrypted: bool,
    /// This host has `[repository.encryption]`.
    pub configured: bool,
    /// This host holds a private key (it can verify --full and restore).
    pub can_read: bool,
    /// The slot this host opened.
    pub opened_slot: Option<String>,
    /// The keyring (public parts only: no wrapped secret is shown).
    pub keys: Vec<keyring::RepoKey>,
    /// The current repository key.
    pub current: Option<String>,
    /// The slots (id, kind, recipient, created_at).
    pub slots: Vec<SlotInfo>,
    /// How blob names are keyed.
    pub names: Option<keyring::NamesMode>,
}

/// A slot as listed (without its wrapped secret).
#[derive(Debug, Clone, Serialize)]
pub struct SlotInfo {
    /// Slot id.
    pub id: String,
    /// Passphrase or recipient.
    pub kind: SlotKind,
    /// The recipient of a recipient slot.
    pub recipient: Option<String>,
    /// When it was added.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// `manifest.json` of an encrypted backup.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedManifest {
    /// Always 1.
    amber_dr_sealed_manifest: u32,
    /// What a host without the private key may see: ids, times, status, artifact paths and
    /// sizes (checked against the sealed copy by every host that can open it).
    public: serde_json::Value,
    /// base64 of the full manifest JSON, sealed like a stream.
    sealed: String,
}

/// The public part of a manifest: no host, tags, statistics, details or errors.
fn public_view(m: &Manifest) -> Manifest {
    let mut p = m.clone();
    p.host = String::new();
    p.tool_version = String::new();
    p.tags.clear();
    // Queries and dangling keys are data: sealed only.
    p.references.clear();
    for (name, c) in p.components.iter_mut() {
        *c = ComponentRecord {
            kind: c.kind.clone(),
            name: name.clone(),
            status: c.status,
            artifacts: c.artifacts.clone(),
            ..Default::default()
        };
    }
    p
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Repository {
    /// This host's unlocked keys for the repository (read once; a wrong passphrase or a
    /// damaged keyring is an error here, before anything is written).
    pub async fn keys(&self) -> Result<Arc<Keys>> {
        let mut guard = self.crypto.keys.lock().await;
        if let Some(k) = guard.as_ref() {
            return Ok(k.clone());
        }
        let k = Arc::new(unlock(self.store(), self.url(), self.crypto.source.as_ref()).await?);
        *guard = Some(k.clone());
        Ok(k)
    }

    /// Start unlocking the keys in the background (when a tokio runtime runs and this host
    /// has keys configured): the passphrase's scrypt then overlaps with work that does not
    /// need the key (probing components, taking the lock). A failure is not kept: the first
    /// [`Repository::keys`] that needs the keys unlocks again and reports it.
    pub fn unlock_in_background(&self) {
        if self.crypto.source.is_none() {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let repo = self.clone();
            handle.spawn(async move {
                let _ = repo.keys().await;
            });
        }
    }

    /// True if `[repository.encryption]` was given for this handle.
    pub fn encryption_configured(&self) -> bool {
        self.crypto.source.is_some()
    }

    /// Get ready to write, failing closed: an encrypted repository refuses a host without
    /// keys, a host with keys makes the repository encrypted (keyring) if it is not yet, and
    /// the data key of this run is made. Nothing is written if the keys are unusable.
    pub async fn prepare_write(&self) -> Result<()> {
        let keys = self.keys().await?;
        let Some(src) = &self.crypto.source else {
            if keys.encrypted() {
                return Err(Error::config(
                    "repository.encryption",
                    format!(
                        "repository {} is encrypted (it has {}): configure [repository.encryption] with its passphrase or recipients; refusing to write unencrypted data",
                        self.url(),
                        keyring::KEYRING_PATH
                    ),
                ));
            }
            return Ok(());
        };
        let keys = if keys.encrypted() {
            keys
        } else {
            let plain_until = self.backup_ids().await?.pop();
            let (kr, opened) = keyring::create(src, plain_until)?;
            let made = match keyring::write(self.store(), self.url(), &kr, true).await {
                Ok(()) => opened.map(|o| Arc::new(assemble(Some(kr), Some(src), o))),
                // Another run made it first: use theirs.
                Err(Error::Repository { source, .. })
                    if matches!(*source, object_store::Error::AlreadyExists { .. }) =>
                {
                    None
                }
                Err(e) => return Err(e),
            };
            // The keys of the keyring just made, without opening it again (scrypt); else
            // (no passphrase, or another run's keyring) read and unlocked.
            *self.crypto.keys.lock().await = made;
            self.keys().await?
        };
        keys.write_key(self.backup_store(), self.url())
            .await
            .map(|_| ())
    }

    /// The data key new objects are sealed with, or None for a plain repository (which is
    /// checked to have no keyring: an encrypted repository never gets a plaintext object).
    pub(crate) async fn write_key(&self) -> Result<Option<Arc<DataKey>>> {
        let keys = self.keys().await?;
        if self.crypto.source.is_none() {
            if keys.encrypted() {
                self.prepare_write().await?;
            }
            return Ok(None);
        }
        if !keys.encrypted() {
            self.prepare_write().await?;
            return self
                .keys()
                .await?
                .write_key(self.backup_store(), self.url())
                .await
                .map(Some);
        }
        keys.write_key(self.backup_store(), self.url())
            .await
            .map(Some)
    }

    /// A lookup of data keys for sealed readers (`what` names the object in errors).
    pub(crate) fn key_lookup(&self, what: &str) -> KeyLookup {
        let repo = self.clone();
        let what = what.to_string();
        Arc::new(move |kid| {
            let repo = repo.clone();
            let what = what.clone();
            Box::pin(async move {
                let keys = repo.keys().await?;
                keys.data_key(repo.store(), repo.url(), kid, &what).await
            })
        })
    }

    /// The concatenation of `parts` as the payload of a put: sealed whole with this run's
    /// data key in an encrypted repository; in a plain one the parts as they are (not copied
    /// into one buffer).
    pub(crate) async fn seal_small_parts(&self, parts: Vec<Bytes>) -> Result<PutPayload> {
        match self.write_key().await? {
            Some(dk) => Ok(seal_bytes(&dk, &parts.concat()).into()),
            None => Ok(parts.into_iter().collect()),
        }
    }

    /// Open an object sealed whole (`what` names it in errors).
    pub(crate) async fn open_small(&self, sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        let kid = sealed_key_id(sealed).ok_or_else(|| Error::Corrupt {
            artifact: what.to_string(),
            message: "does not start with the header of a sealed object".into(),
        })?;
        let keys = self.keys().await?;
        let dk = keys.data_key(self.store(), self.url(), kid, what).await?;
        open_bytes(&dk, sealed, what)
    }

    /// The bytes of `manifest.json` for `m`: sealed in an encrypted repository.
    pub(crate) async fn manifest_bytes(&self, m: &Manifest) -> Result<Vec<u8>> {
        match self.write_key().await? {
            None => Ok(m.to_redacted_json()),
            Some(dk) => {
                let public = serde_json::to_value(public_view(m)).unwrap_or_default();
                let env = SealedManifest {
                    amber_dr_sealed_manifest: 1,
                    public,
                    sealed: b64().encode(seal_bytes(&dk, &m.to_redacted_json())),
                };
                Ok(serde_json::to_vec_pretty(&env).unwrap_or_default())
            }
        }
    }

    /// Parse `manifest.json` of backup `id`: open a sealed one (or, on a host without the
    /// private key, its public part), and refuse a plaintext one in an encrypted repository
    /// unless it predates encryption.
    pub(crate) async fn parse_manifest(
        &self,
        path: &str,
        id: &str,
        bytes: &[u8],
    ) -> Result<Manifest> {
        let sealed = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .filter(|v| v.get("amber_dr_sealed_manifest").is_some());
        let keys = self.keys().await?;
        let Some(v) = sealed else {
            if let Some(kr) = &keys.keyring {
                let old = kr.plain_until.as_deref().is_some_and(|u| id <= u);
                if !old {
                    return Err(Error::Corrupt {
                        artifact: path.to_string(),
                        message: "a plaintext manifest in an encrypted repository (not from before encryption was turned on): refused".into(),
                    });
                }
            }
            return Manifest::from_json(path, bytes);
        };
        let damaged = |message: String| Error::Corrupt {
            artifact: path.to_string(),
            message,
        };
        let env: SealedManifest = serde_json::from_value(v)
            .map_err(|e| damaged(format!("not a valid sealed manifest: {e}")))?;
        if env.amber_dr_sealed_manifest != 1 {
            return Err(Error::Manifest {
                path: path.to_string(),
                message: format!(
                    "sealed manifest version {} is not supported; upgrade amber-dr",
                    env.amber_dr_sealed_manifest
                ),
            });
        }
        if !keys.can_read() {
            let mut m: Manifest = serde_json::from_value(env.public)
                .map_err(|e| damaged(format!("its public part is not valid: {e}")))?;
            m.sealed = true;
            return Ok(m);
        }
        let sealed = b64()
            .decode(env.sealed.as_bytes())
            .map_err(|e| damaged(format!("the sealed part is not base64: {e}")))?;
        let plain = self.open_small(&sealed, path).await?;
        let m = Manifest::from_json(path, &plain)?;
        if m.id != id {
            return Err(damaged(format!(
                "the sealed manifest is the one of backup {}, not {id} (moved?)",
                m.id
            )));
        }
        if serde_json::to_value(public_view(&m)).unwrap_or_default() != env.public {
            return Err(damaged(
                "its public part differs from the sealed manifest (edited without the key)".into(),
            ));
        }
        Ok(m)
    }

    /// The repository's encryption, as this host sees it.
    pub async fn encryption_status(&self) -> Result<EncryptionStatus> {
        let keys = self.keys().await?;
        let kr = keys.keyring.as_ref();
        Ok(EncryptionStatus {
            encrypted: keys.encrypted(),
            configured: keys.configured(),
            can_read: keys.can_read(),
            opened_slot: keys.opened_slot.clone(),
            keys: kr.map(|k| k.keys.clone()).unwrap_or_default(),
            current: kr.map(|k| k.current.clone()),
            slots: kr
                .map(|k| {
                    k.slots
                        .iter()
                        .map(|s| SlotInfo {
                            id: s.id.clone(),
                            kind: s.kind,
                            recipient: s.recipient.clone(),
                            created_at: s.created_at,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            names: kr.map(|k| k.names),
        })
    }

    /// The keyring and secrets for a key command: this host must have opened a slot.
    async fn keyring_for_change(&self) -> Result<(keyring::Keyring, Arc<Keys>)> {
        let keys = self.keys().await?;
        let Some(kr) = keys.keyring.clone() else {
            return Err(Error::config(
                "repository.encryption",
                format!(
                    "repository {} is not encrypted; configure [repository.encryption] and take a backup to turn encryption on",
                    self.url()
                ),
            ));
        };
        if keys.opened_slot.is_none() {
            return Err(keys.need_private_key("the keyring"));
        }
        Ok((kr, keys))
    }

    async fn save_keyring(&self, kr: &keyring::Keyring) -> Result<()> {
        keyring::write(self.store(), self.url(), kr, false).await?;
        *self.crypto.keys.lock().await = None;
        Ok(())
    }

    /// `key add --passphrase`: a new passphrase slot. Returns its id.
    pub async fn key_add_passphrase(&self, passphrase: &str) -> Result<String> {
        if passphrase.is_empty() {
            return Err(Error::config("key add", "the new passphrase is empty"));
        }
        let (mut kr, keys) = self.keyring_for_change().await?;
        let names = keys.names_secret().unwrap_or_default();
        let p = SecretString::from(passphrase.to_string());
        let slot = make_slot(keys.repo_secrets(), &names, SlotWith::Passphrase(&p))?;
        let id = slot.id.clone();
        kr.slots.push(slot);
        self.save_keyring(&kr).await?;
        Ok(id)
    }

    /// `key add --recipient age1...`: a new recipient slot. Returns its id.
    pub async fn key_add_recipient(&self, recipient: &str) -> Result<String> {
        let r: x25519::Recipient = recipient.trim().parse().map_err(|_| {
            Error::config(
                "key add",
                format!("`{recipient}` is not an age X25519 recipient (age1...)"),
            )
        })?;
        let (mut kr, keys) = self.keyring_for_change().await?;
        let names = keys.names_secret().unwrap_or_default();
        let slot = make_slot(
            keys.repo_secrets(),
            &names,
            SlotWith::Recipient(recipient.trim(), &r),
        )?;
        let id = slot.id.clone();
        kr.slots.push(slot);
        self.save_keyring(&kr).await?;
        Ok(id)
    }

    /// `key remove SLOT`: remove a slot (never the last one).
    pub async fn key_remove(&self, slot: &str) -> Result<()> {
        let (mut kr, _) = self.keyring_for_change().await?;
        let before = kr.slots.len();
        kr.slots.retain(|s| s.id != slot);
        if kr.slots.len() == before {
            return Err(Error::config(
                "key remove",
                format!("no slot `{slot}` in the keyring (see `amber-dr key list`)"),
            ));
        }
        if kr.slots.is_empty() {
            return Err(Error::config(
                "key remove",
                "refusing to remove the last slot: nothing could read the repository any more",
            ));
        }
        self.save_keyring(&kr).await
    }

    /// `key rotate`: a new repository key for new backups; every slot is rewrapped with
    /// all keys, old and new, so old backups stay readable. A passphrase slot other than the
    /// one this host opened cannot be rewrapped (its passphrase is not known here): it is
    /// kept as it is (it still opens the backups taken before the rotation) and its id is
    /// returned, to be removed and added again.
    pub async fn key_rotate(&self) -> Result<(String, Vec<String>)> {
        let (mut kr, keys) = self.keyring_for_change().await?;
        let names = keys.names_secret().unwrap_or_default();
        let (new_key, ident) = keyring::new_repo_key();
        let mut secrets = keys.repo_secrets().to_vec();
        secrets.push((new_key.id.clone(), ident));
        let mut slots = Vec::new();
        let mut dropped = Vec::new();
        for s in &kr.slots {
            let rewrapped = match (s.kind, &s.recipient) {
                (SlotKind::Recipient, Some(r)) => {
                    let rec: x25519::Recipient = r
                        .parse()
                        .map_err(|_| Error::Other(format!("slot {}: bad recipient", s.id)))?;
                    Some(make_slot(&secrets, &names, SlotWith::Recipient(r, &rec))?)
                }
                _ if Some(&s.id) == keys.opened_slot.as_ref() => self
                    .crypto
                    .source
                    .as_ref()
                    .and_then(|src| src.passphrase.as_ref())
                    .map(|p| make_slot(&secrets, &names, SlotWith::Passphrase(p)))
                    .transpose()?,
                _ => None,
            };
            match rewrapped {
                Some(mut n) => {
                    n.id = s.id.clone();
                    n.created_at = s.created_at;
                    slots.push(n);
                }
                None => {
                    slots.push(s.clone());
                    dropped.push(s.id.clone());
                }
            }
        }
        kr.slots = slots;
        kr.current = new_key.id.clone();
        kr.keys.push(new_key);
        self.save_keyring(&kr).await?;
        Ok((kr.current.clone(), dropped))
    }
}
