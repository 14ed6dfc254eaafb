//! `keys/keyring.json`: the repository key pairs and the slots that wrap their secret halves.

use std::str::FromStr;
use std::sync::Arc;

use age::secrecy::SecretString;
use age::x25519;
use base64::Engine;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{age_unwrap, age_wrap, random, KeySource, Unwrap};
use crate::{Error, Result};

/// Where the keyring lives.
pub const KEYRING_PATH: &str = "keys/keyring.json";
/// scrypt work factor (log2 N) of new passphrase slots: 2^16 (64 MiB, about 0.2 s).
pub const LOG_N: u8 = 16;
/// The largest work factor a passphrase slot may ask for when it is opened.
pub const MAX_LOG_N: u8 = 22;

/// How blob names are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamesMode {
    /// With a secret kept in the keyring's slots (hosts that hold a passphrase or identity).
    Keyring,
    /// With a key derived from the sorted recipient list (repositories created by a
    /// write-only host, which holds no secret).
    Recipients,
}

/// What a slot is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotKind {
    /// A passphrase (age scrypt stanza).
    Passphrase,
    /// An age X25519 identity (age X25519 stanza).
    Recipient,
}

/// A repository key pair (public half).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepoKey {
    /// Key id (16 hex digits).
    pub id: String,
    /// The age recipient (public key).
    pub recipient: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// A slot: every repository secret key and the name secret, wrapped for one passphrase or
/// one recipient.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Slot {
    /// Slot id (8 hex digits), for `key remove`.
    pub id: String,
    /// Passphrase or recipient.
    pub kind: SlotKind,
    /// For recipient slots: the age recipient it is wrapped for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// The age file (base64) holding the JSON [`SlotSecret`].
    pub wrapped: String,
}

/// The plaintext of a slot.
#[derive(Serialize, Deserialize)]
struct SlotSecret {
    /// Key id → `AGE-SECRET-KEY-1...`.
    keys: Vec<(String, String)>,
    /// Hex of the 32-byte name secret.
    names: String,
}

/// `keys/keyring.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Keyring {
    /// Always `amber-dr-keyring`.
    pub format: String,
    /// Always 1.
    pub version: u32,
    /// When the repository became encrypted.
    pub created_at: DateTime<Utc>,
    /// Plaintext manifests of backups with ids up to this one (taken before encryption was
    /// turned on) are still accepted; any other plaintext manifest is refused.
    #[serde(default)]
    pub plain_until: Option<String>,
    /// How blob names are keyed.
    pub names: NamesMode,
    /// Hex HMAC-SHA256 of `amber-dr names check v1` under the name key.
    pub names_check: String,
    /// Repository key pairs, oldest first.
    pub keys: Vec<RepoKey>,
    /// The key id new data keys are wrapped for.
    pub current: String,
    /// Slots.
    pub slots: Vec<Slot>,
}

/// The check value of a name key.
pub(crate) fn names_check(k: &[u8; 32]) -> String {
    super::keyed_name(k, "amber-dr names check v1")
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn damaged(message: impl Into<String>) -> Error {
    Error::Corrupt {
        artifact: KEYRING_PATH.into(),
        message: message.into(),
    }
}

fn repo_err(url: &str, operation: &'static str, source: object_store::Error) -> Error {
    Error::Repository {
        repo: url.to_string(),
        operation,
        path: KEYRING_PATH.into(),
        source: Box::new(source),
    }
}

/// Read the keyring, if the repository has one.
pub(crate) async fn read(store: &Arc<dyn ObjectStore>, url: &str) -> Result<Option<Keyring>> {
    let p = Path::from(KEYRING_PATH);
    let bytes = match store.get(&p).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(repo_err(url, "read", e)),
    };
    let kr: Keyring =
        serde_json::from_slice(&bytes).map_err(|e| damaged(format!("not a valid keyring: {e}")))?;
    if kr.format != "amber-dr-keyring" || kr.version != 1 {
        return Err(Error::Manifest {
            path: KEYRING_PATH.into(),
            message: format!(
                "keyring format `{}` version {} is not supported by this amber-dr",
                kr.format, kr.version
            ),
        });
    }
    Ok(Some(kr))
}

/// Write the keyring (`create`: only if there is none yet).
pub(crate) async fn write(
    store: &Arc<dyn ObjectStore>,
    url: &str,
    kr: &Keyring,
    create: bool,
) -> Result<()> {
    let body = serde_json::to_vec_pretty(kr).unwrap_or_default();
    let mode = if create {
        PutMode::Create
    } else {
        PutMode::Overwrite
    };
    store
        .put_opts(
            &Path::from(KEYRING_PATH),
            PutPayload::from(body),
            PutOptions {
                mode,
                ..Default::default()
            },
        )
        .await
        .map(|_| ())
        .map_err(|e| repo_err(url, "write", e))
}

type Secrets = (Vec<(String, x25519::Identity)>, Option<[u8; 32]>);

/// Open a slot with `identities`; None if they do not open it.
pub(crate) fn open_slot(slot: &Slot, identities: &[&dyn age::Identity]) -> Result<Option<Secrets>> {
    let wrapped = b64()
        .decode(&slot.wrapped)
        .map_err(|e| damaged(format!("slot {}: not base64: {e}", slot.id)))?;
    let plain = match age_unwrap(identities, &wrapped) {
        Ok(p) => p,
        Err(Unwrap::NoKey) => return Ok(None),
        Err(Unwrap::Damaged(m)) => return Err(damaged(format!("slot {}: {m}", slot.id))),
    };
    let sec: SlotSecret =
        serde_json::from_slice(&plain).map_err(|e| damaged(format!("slot {}: {e}", slot.id)))?;
    let mut keys = Vec::new();
    for (id, s) in sec.keys {
        let ident = x25519::Identity::from_str(&s)
            .map_err(|_| damaged(format!("slot {}: key {id} is not an age identity", slot.id)))?;
        keys.push((id, ident));
    }
    let names = hex::decode(&sec.names)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| damaged(format!("slot {}: bad name secret", slot.id)))?;
    Ok(Some((keys, Some(names))))
}

impl Keyring {
    /// The public key of every unlocked secret must be the one the keyring lists: a keyring
    /// whose public keys were swapped is damage.
    pub(crate) fn check_secrets(&self, secrets: &[(String, x25519::Identity)]) -> Result<()> {
        for (id, ident) in secrets {
            let public = ident.to_public().to_string();
            match self.keys.iter().find(|k| &k.id == id) {
                Some(k) if k.recipient == public => {}
                _ => {
                    return Err(damaged(format!(
                        "key {id} does not match the public key listed for it (keyring edited?)"
                    )))
                }
            }
        }
        Ok(())
    }
}

/// Wrap the secrets into a new slot.
pub(crate) fn make_slot(
    secrets: &[(String, x25519::Identity)],
    names: &[u8; 32],
    with: SlotWith<'_>,
) -> Result<Slot> {
    use age::secrecy::ExposeSecret;
    let sec = SlotSecret {
        keys: secrets
            .iter()
            .map(|(id, i)| (id.clone(), i.to_string().expose_secret().to_string()))
            .collect(),
        names: hex::encode(names),
    };
    let plain = serde_json::to_vec(&sec).unwrap_or_default();
    let (kind, recipient, wrapped) = match with {
        SlotWith::Passphrase(p) => {
            let mut r = age::scrypt::Recipient::new(p.clone());
            r.set_work_factor(LOG_N);
            (
                SlotKind::Passphrase,
                None,
                age_wrap(&[&r as &dyn age::Recipient], &plain)?,
            )
        }
        SlotWith::Recipient(s, r) => (
            SlotKind::Recipient,
            Some(s.to_string()),
            age_wrap(&[r as &dyn age::Recipient], &plain)?,
        ),
    };
    Ok(Slot {
        id: hex::encode(random::<4>()),
        kind,
        recipient,
        created_at: Utc::now(),
        wrapped: b64().encode(wrapped),
    })
}

/// What a new slot is wrapped with.
pub(crate) enum SlotWith<'a> {
    /// A passphrase.
    Passphrase(&'a SecretString),
    /// An age recipient (its text and parsed form).
    Recipient(&'a str, &'a x25519::Recipient),
}

/// A new repository key pair.
pub(crate) fn new_repo_key() -> (RepoKey, x25519::Identity) {
    let ident = x25519::Identity::generate();
    (
        RepoKey {
            id: hex::encode(random::<8>()),
            recipient: ident.to_public().to_string(),
            created_at: Utc::now(),
        },
        ident,
    )
}

/// A keyring for a repository that becomes encrypted now, with slots for this host's
/// passphrase and recipients. `plain_until`: the newest existing backup id.
///
/// Also returns what the passphrase slot holds when there is one, so that the host that made
/// the keyring need not open it again (a second scrypt).
pub(crate) fn create(
    src: &KeySource,
    plain_until: Option<String>,
) -> Result<(Keyring, Option<super::Opened>)> {
    let (key, ident) = new_repo_key();
    let names: [u8; 32] = random();
    let secrets = vec![(key.id.clone(), ident)];
    let mut slots = Vec::new();
    if let Some(p) = &src.passphrase {
        slots.push(make_slot(&secrets, &names, SlotWith::Passphrase(p))?);
    }
    for (s, r) in &src.recipients {
        slots.push(make_slot(&secrets, &names, SlotWith::Recipient(s, r))?);
    }
    for i in &src.identities {
        let r = i.to_public();
        let s = r.to_string();
        if !src.recipients.iter().any(|(x, _)| *x == s) {
            slots.push(make_slot(&secrets, &names, SlotWith::Recipient(&s, &r))?);
        }
    }
    // A host that can read keys blob names with the keyring's secret; a write-only host
    // holds no secret, so it derives the name key from the recipient list.
    let (mode, name_key) = if src.passphrase.is_some() || !src.identities.is_empty() {
        (NamesMode::Keyring, super::derive(&names, b"keyring v1"))
    } else {
        (NamesMode::Recipients, super::recipients_name_key(src))
    };
    let opened = src.passphrase.as_ref().map(|_| super::Opened {
        opened_slot: slots.first().map(|s: &Slot| s.id.clone()),
        repo_secrets: secrets.clone(),
        names_secret: Some(names),
    });
    let kr = Keyring {
        format: "amber-dr-keyring".into(),
        version: 1,
        created_at: Utc::now(),
        plain_until,
        names: mode,
        names_check: names_check(&name_key),
        current: key.id.clone(),
        keys: vec![key],
        slots,
    };
    Ok((kr, opened))
}
