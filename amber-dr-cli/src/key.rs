//! `amber-dr key`: the keys of an encrypted repository (list, add, remove, rotate) and a new
//! age key pair for write-only hosts (generate).

use clap::{Args, Subcommand};
use serde_json::json;

use crate::commands::{Ctx, Needs};
use crate::exit::{Failure, OK};

/// `key`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// What to do with the keys.
    #[command(subcommand)]
    pub action: KeyAction,
}

/// The key commands.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Show whether the repository is encrypted, its keys and slots (never a secret).
    List,
    /// Add a slot: a passphrase or an age recipient that can open the repository's keys.
    Add(KeyAddArgs),
    /// Remove a slot by id (never the last one).
    Remove {
        /// The slot id, as `key list` shows it.
        slot: String,
    },
    /// Make a new repository key for new backups; old backups stay readable.
    Rotate,
    /// Print a new age identity (private key) on stdout and its recipient on stderr.
    Generate,
}

/// `key add`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct KeyAddArgs {
    /// Read the new passphrase from this environment variable (never from the command line).
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
    /// An age X25519 recipient (`age1...`) whose identity may open the repository's keys.
    #[arg(long, value_name = "AGE1...")]
    pub recipient: Option<String>,
}

/// Run `key`.
pub async fn key(ctx: &Ctx, args: &KeyArgs) -> Result<i32, Failure> {
    if let KeyAction::Generate = args.action {
        return generate(ctx);
    }
    let cfg = ctx.load_config(Needs::RepoOnly)?;
    let repo = ctx.open_repo(cfg.as_ref(), false)?;
    let out = &ctx.out;
    match &args.action {
        KeyAction::List => {
            let st = repo.encryption_status().await?;
            if out.json {
                out.json(&json!({ "ok": true, "encryption": st }));
                return Ok(OK);
            }
            if !st.encrypted {
                out.line(format!("repository {}: NOT encrypted", repo.url()));
                return Ok(OK);
            }
            out.line(format!(
                "repository {}: encrypted; this host {}",
                repo.url(),
                match (st.configured, st.can_read) {
                    (_, true) => "can write and read",
                    (true, false) => "can write, not read (recipients only)",
                    (false, false) => "has no key",
                }
            ));
            for k in &st.keys {
                let cur = if st.current.as_deref() == Some(k.id.as_str()) {
                    " (current)"
                } else {
                    ""
                };
                out.line(format!(
                    "  repository key {}{cur}: {} (made {})",
                    k.id,
                    k.recipient,
                    k.created_at.format("%Y-%m-%d %H:%M:%S UTC")
                ));
            }
            for s in &st.slots {
                let opened = if st.opened_slot.as_deref() == Some(s.id.as_str()) {
                    " (opened by this host)"
                } else {
                    ""
                };
                out.line(format!(
                    "  slot {}: {}{}{opened}",
                    s.id,
                    match s.kind {
                        amber_dr_core::crypto::SlotKind::Passphrase => "passphrase".to_string(),
                        amber_dr_core::crypto::SlotKind::Recipient =>
                            format!("recipient {}", s.recipient.as_deref().unwrap_or("?")),
                    },
                    format_args!(" (added {})", s.created_at.format("%Y-%m-%d")),
                ));
            }
        }
        KeyAction::Add(a) => {
            let lock = repo.lock("key").await?;
            let res = match (&a.passphrase_env, &a.recipient) {
                (Some(var), _) => match std::env::var(var) {
                    Ok(p) => repo.key_add_passphrase(&p).await,
                    Err(_) => Err(amber_dr_core::Error::config(
                        "key add --passphrase-env",
                        format!("environment variable `{var}` is not set"),
                    )),
                },
                (None, Some(r)) => repo.key_add_recipient(r).await,
                (None, None) => Err(amber_dr_core::Error::config(
                    "key add",
                    "give --passphrase-env VAR or --recipient age1...",
                )),
            };
            lock.release().await?;
            let id = res?;
            if out.json {
                out.json(&json!({ "ok": true, "slot": id }));
            } else {
                out.line(format!("added slot {id}"));
            }
        }
        KeyAction::Remove { slot } => {
            let lock = repo.lock("key").await?;
            let res = repo.key_remove(slot).await;
            lock.release().await?;
            res?;
            if out.json {
                out.json(&json!({ "ok": true, "removed": slot }));
            } else {
                out.line(format!(
                    "removed slot {slot}; run `amber-dr key rotate` if its key may be known to someone it should not be"
                ));
            }
        }
        KeyAction::Rotate => {
            let lock = repo.lock("key").await?;
            let res = repo.key_rotate().await;
            lock.release().await?;
            let (current, stale) = res?;
            if out.json {
                out.json(&json!({ "ok": true, "current": current, "not_rewrapped": stale }));
            } else {
                out.line(format!(
                    "new repository key {current}: new backups use it; old backups stay readable"
                ));
                for s in stale {
                    out.note(format!(
                        "warning: passphrase slot {s} was not opened by this host and still holds only the old keys: it cannot read backups taken from now on; remove it and add its passphrase again"
                    ));
                }
            }
        }
        KeyAction::Generate => return generate(ctx),
    }
    Ok(OK)
}

fn generate(ctx: &Ctx) -> Result<i32, Failure> {
    let (secret, public) = amber_dr_core::crypto::generate_identity();
    if ctx.out.json {
        ctx.out
            .json(&json!({ "ok": true, "identity": secret, "recipient": public }));
    } else {
        println!("# created: {}", chrono::Utc::now().to_rfc3339());
        println!("# public key: {public}");
        println!("{secret}");
        eprintln!("Public key: {public}");
    }
    Ok(OK)
}

/// True if backup `m` is stored encrypted (sealed manifest or sealed artifacts).
pub fn backup_encrypted(m: &amber_dr_core::Manifest) -> bool {
    m.sealed
        || m.components
            .values()
            .flat_map(|c| &c.artifacts)
            .any(|a| a.encryption.is_some())
}

/// The `encrypted:` line of `show`.
pub fn show_line(m: &amber_dr_core::Manifest, encrypted: bool) -> String {
    match (encrypted, m.sealed) {
        (true, true) => "  encrypted: yes; this host has no private key, so only the public part of the manifest is shown".into(),
        (true, false) => "  encrypted: yes (sealed manifest and artifacts)".into(),
        (false, _) => "  encrypted: NO: this backup is stored in plaintext".into(),
    }
}
