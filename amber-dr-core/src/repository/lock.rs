//! The repository lock: one backup, restore or prune at a time (`locks/repository.lock`).

use super::*;

/// Who holds a repository lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// What it is doing (`backup`, `restore`, `prune`).
    pub operation: String,
    /// Since when.
    pub since: DateTime<Utc>,
    /// A random token that identifies this acquisition.
    pub token: String,
    /// Extra fields, kept for forward compatibility.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl LockInfo {
    pub(super) fn unreadable() -> Self {
        Self {
            host: "?".into(),
            pid: 0,
            operation: "unknown (unreadable lock object)".into(),
            since: DateTime::<Utc>::MIN_UTC,
            token: String::new(),
            extra: BTreeMap::new(),
        }
    }

    /// True when the holder is a process of this host that no longer runs.
    pub fn is_stale_here(&self) -> bool {
        self.host == host_name() && self.pid != 0 && !process_alive(self.pid)
    }
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` (pid {} on host {}, since {})",
            self.operation,
            self.pid,
            self.host,
            self.since.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// The repository lock: one backup, restore or prune at a time.
///
/// Taken by creating `locks/repository.lock` with a conditional put (create only if absent),
/// then reading it back to make sure it is ours (for servers that ignore the condition). A lock
/// left by a process of the same host that no longer runs is stale and is taken over with a
/// warning; any other held lock is an [`Error::Locked`] naming the holder. Release it with
/// [`RepoLock::release`]; `amber-dr unlock` removes a lock left by a crashed run elsewhere.
#[derive(Debug)]
pub struct RepoLock {
    repo: Repository,
    info: LockInfo,
    released: bool,
    /// Set when a stale lock was taken over: the old holder.
    pub took_over: Option<LockInfo>,
}

impl RepoLock {
    pub(super) async fn acquire(repo: Repository, operation: &str) -> Result<Self> {
        let info = LockInfo {
            host: host_name(),
            pid: std::process::id(),
            operation: operation.to_string(),
            since: Utc::now(),
            token: format!("{:x}-{}", rand_token(), std::process::id()),
            extra: BTreeMap::new(),
        };
        let body = serde_json::to_vec_pretty(&info).unwrap_or_default();
        let path = Path::from(LOCK_PATH);
        let mut took_over = None;
        for _attempt in 0..4 {
            let put = repo
                .store
                .put_opts(
                    &path,
                    PutPayload::from(body.clone()),
                    PutOptions {
                        mode: PutMode::Create,
                        ..Default::default()
                    },
                )
                .await;
            match put {
                Ok(_) => {
                    // Read back: a server that ignores the create-only condition must not let
                    // two runs believe they both hold the lock.
                    let holder = repo.lock_holder().await?;
                    if holder.as_ref().map(|h| h.token.as_str()) != Some(info.token.as_str()) {
                        let holder = holder.map(|h| h.to_string()).unwrap_or_default();
                        return Err(Error::Locked {
                            repo: repo.url.clone(),
                            holder,
                            path: LOCK_PATH.into(),
                            hint: "another run took the lock at the same moment; try again".into(),
                        });
                    }
                    return Ok(Self {
                        repo,
                        info,
                        released: false,
                        took_over,
                    });
                }
                Err(object_store::Error::AlreadyExists { .. }) => {
                    let Some(holder) = repo.lock_holder().await? else {
                        // Released between our attempt and our look: try again.
                        continue;
                    };
                    if holder.is_stale_here() && took_over.is_none() {
                        // Several runs may find the same stale lock at once: only the one that
                        // creates the takeover marker for it may remove it.
                        let marker = Path::from(format!("{TAKEOVER_PREFIX}{}", holder.token));
                        let claim = repo
                            .store
                            .put_opts(
                                &marker,
                                PutPayload::from(body.clone()),
                                PutOptions {
                                    mode: PutMode::Create,
                                    ..Default::default()
                                },
                            )
                            .await;
                        match claim {
                            Ok(_) => {
                                tracing::warn!(holder = %holder, "removing stale repository lock: its process no longer runs");
                                let still = repo.lock_holder().await?;
                                if still.as_ref().map(|h| h.token.as_str())
                                    == Some(holder.token.as_str())
                                {
                                    repo.store
                                        .delete(&path)
                                        .await
                                        .map_err(|e| repo.err("delete stale lock", &path, e))?;
                                }
                                let _ = repo.store.delete(&marker).await;
                                took_over = Some(holder);
                                continue;
                            }
                            Err(object_store::Error::AlreadyExists { .. }) => {
                                return Err(Error::Locked {
                                    repo: repo.url.clone(),
                                    holder: holder.to_string(),
                                    path: LOCK_PATH.into(),
                                    hint: "another run is taking over this stale lock; try again"
                                        .into(),
                                });
                            }
                            Err(e) => return Err(repo.err("claim stale lock", &marker, e)),
                        }
                    }
                    return Err(Error::Locked {
                        repo: repo.url.clone(),
                        holder: holder.to_string(),
                        path: LOCK_PATH.into(),
                        hint: "wait for it to finish; if no amber-dr is running any more, remove the lock with `amber-dr unlock`".into(),
                    });
                }
                Err(e) => return Err(repo.err("create lock", &path, e)),
            }
        }
        Err(Error::Other("could not take the repository lock".into()))
    }

    /// Who we are, as recorded in the lock.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Release the lock (only if it is still ours).
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        match self.repo.lock_holder().await? {
            Some(h) if h.token == self.info.token => self.repo.break_lock().await.map(|_| ()),
            _ => Ok(()),
        }
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        if !self.released {
            // Best effort: release in the background if a runtime is there.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let repo = self.repo.clone();
                let token = self.info.token.clone();
                handle.spawn(async move {
                    if let Ok(Some(h)) = repo.lock_holder().await {
                        if h.token == token {
                            let _ = repo.break_lock().await;
                        }
                    }
                });
            }
        }
    }
}
