//! [`DockerHooks`]: the [`RunHooks`] that pause, stop, start and restart containers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use amber_dr_core::{async_trait, Error, HookContext, Result, RunHooks};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, RestartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use tokio::sync::{Mutex, OnceCell};

use crate::config::{DockerConfig, COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL};

/// Where the hooks report what they do (one line each): the CLI prints them.
pub type Reporter = Arc<dyn Fn(&str) + Send + Sync>;

/// How long a request to the engine may take (a stop waits `stop_timeout_secs` on top).
const REQUEST_TIMEOUT_SECS: u64 = 60;

/// One container, as resolved from a config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    id: String,
    /// `amber-api`, or `amber-backend-1 (service backend)`.
    label: String,
    /// The container name without the leading `/`, for the hint commands.
    name: String,
}

/// What the hooks changed and have not undone yet.
#[derive(Debug, Default)]
struct State {
    /// Paused by us, with when.
    paused: Vec<(Target, Instant)>,
    /// Stopped by us.
    stopped: Vec<Target>,
    /// Started again by us after this restore: a fresh start, no restart needed.
    started: Vec<String>,
}

/// The state behind [`DockerHooks`].
struct Inner {
    config: DockerConfig,
    socket: String,
    client: OnceCell<Docker>,
    state: Arc<Mutex<State>>,
    report: Reporter,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("socket", &self.socket)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn new(config: DockerConfig, report: Reporter) -> Result<Self> {
        let socket = config
            .socket_path()
            .map_err(|m| Error::config("[docker] host", m))?;
        Ok(Self {
            config,
            socket,
            client: OnceCell::new(),
            state: Arc::default(),
            report,
        })
    }

    fn say(&self, line: String) {
        tracing::debug!(target: "amber_dr_docker", "{line}");
        (self.report)(&line);
    }

    fn err(&self, what: impl std::fmt::Display) -> Error {
        Error::Other(format!("docker (unix://{}): {what}", self.socket))
    }

    /// Connect (once) and check that the engine answers.
    async fn client(&self) -> Result<&Docker> {
        self.client.get_or_try_init(|| connect(&self.socket)).await
    }

    /// Resolve config entries to containers; every entry must match at least one.
    async fn resolve(&self, docker: &Docker, entries: &[String], key: &str) -> Result<Vec<Target>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let all = docker
            .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
            .await
            .map_err(|e| self.err(format!("listing containers: {e}")))?;
        let mut out: Vec<Target> = Vec::new();
        let mut missing = Vec::new();
        for entry in entries {
            let by_name: Vec<_> = all
                .iter()
                .filter(|c| {
                    c.names
                        .iter()
                        .flatten()
                        .any(|n| n.trim_start_matches('/') == entry)
                })
                .collect();
            let found: Vec<Target> = if !by_name.is_empty() {
                by_name
                    .iter()
                    .map(|c| Target {
                        id: c.id.clone().unwrap_or_default(),
                        label: entry.clone(),
                        name: entry.clone(),
                    })
                    .collect()
            } else {
                let empty = HashMap::new();
                all.iter()
                    .filter(|c| {
                        let labels = c.labels.as_ref().unwrap_or(&empty);
                        labels.get(COMPOSE_SERVICE_LABEL) == Some(entry)
                            && self
                                .config
                                .compose_project
                                .as_ref()
                                .is_none_or(|p| labels.get(COMPOSE_PROJECT_LABEL) == Some(p))
                    })
                    .map(|c| {
                        let name = c
                            .names
                            .iter()
                            .flatten()
                            .next()
                            .map(|n| n.trim_start_matches('/').to_string())
                            .unwrap_or_else(|| c.id.clone().unwrap_or_default());
                        Target {
                            id: c.id.clone().unwrap_or_default(),
                            label: format!("{name} (service {entry})"),
                            name,
                        }
                    })
                    .collect()
            };
            if found.is_empty() {
                missing.push(entry.as_str());
            }
            for t in found {
                if !out.iter().any(|o| o.id == t.id) {
                    out.push(t);
                }
            }
        }
        if !missing.is_empty() {
            let project = self
                .config
                .compose_project
                .as_ref()
                .map(|p| format!(" of compose project `{p}`"))
                .unwrap_or_default();
            return Err(self.err(format!(
                "[docker] {key}: no container named {} and no compose service{project} of that name (label {COMPOSE_SERVICE_LABEL}); nothing was paused or stopped",
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(out)
    }

    /// Running and not paused.
    async fn state_of(&self, docker: &Docker, t: &Target) -> Result<(bool, bool)> {
        let info = docker
            .inspect_container(&t.id, None)
            .await
            .map_err(|e| self.err(format!("inspecting {}: {e}", t.label)))?;
        let st = info.state.unwrap_or_default();
        Ok((st.running.unwrap_or(false), st.paused.unwrap_or(false)))
    }

    /// Run `f` on a task of its own holding the state lock: dropping the caller (Ctrl-C)
    /// cannot cut a change in half, and [`RunHooks::cleanup`] waits for it.
    async fn locked<F, Fut, T>(self: &Arc<Self>, f: F) -> Result<T>
    where
        F: FnOnce(Arc<Self>, Docker) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send,
        T: Send + 'static,
    {
        let docker = self.client().await?.clone();
        let me = self.clone();
        tokio::spawn(async move { f(me, docker).await })
            .await
            .map_err(|e| Error::Other(format!("docker task died: {e}")))?
    }

    async fn pause_all(self: &Arc<Self>) -> Result<()> {
        if self.config.pause_during_backup.is_empty() {
            return Ok(());
        }
        self.locked(|me, docker| async move {
            let targets = me
                .resolve(
                    &docker,
                    &me.config.pause_during_backup,
                    "pause_during_backup",
                )
                .await?;
            let mut st = me.state.lock().await;
            for t in targets {
                if st.paused.iter().any(|(p, _)| p.id == t.id)
                    || st.stopped.iter().any(|s| s.id == t.id)
                {
                    continue;
                }
                match me.state_of(&docker, &t).await? {
                    (true, false) => {}
                    (true, true) => {
                        me.say(format!(
                            "docker: {} is already paused; left as it is",
                            t.label
                        ));
                        continue;
                    }
                    _ => {
                        me.say(format!(
                            "docker: {} is not running; nothing to pause",
                            t.label
                        ));
                        continue;
                    }
                }
                st.paused.push((t.clone(), Instant::now()));
                docker
                    .pause_container(&t.id)
                    .await
                    .map_err(|e| me.err(format!("pausing {}: {e}", t.label)))?;
                me.say(format!("docker: paused {}", t.label));
            }
            Ok(())
        })
        .await
    }

    /// Unpause what we paused; returns what was done. Errors are collected, the rest goes on.
    async fn unpause_all(self: &Arc<Self>) -> Result<Vec<String>> {
        if self.client.get().is_none() {
            return Ok(Vec::new());
        }
        self.locked(|me, docker| async move {
            let mut st = me.state.lock().await;
            let mut done = Vec::new();
            let mut errors = Vec::new();
            for (t, since) in std::mem::take(&mut st.paused) {
                let res = match docker.unpause_container(&t.id).await {
                    Ok(()) => Ok(()),
                    // Not paused (any more): someone else unpaused it, or the pause never
                    // reached the engine. Either way it is not paused now.
                    Err(_) if matches!(me.state_of(&docker, &t).await, Ok((_, false))) => Ok(()),
                    Err(e) => Err(e),
                };
                match res {
                    Ok(()) => {
                        let line = format!(
                            "docker: unpaused {} (paused {:.1} s)",
                            t.label,
                            since.elapsed().as_secs_f64()
                        );
                        me.say(line.clone());
                        done.push(line);
                    }
                    Err(e) => {
                        errors.push(format!(
                            "could not unpause {}: {e}; run `docker unpause {}`",
                            t.label, t.name
                        ));
                        st.paused.push((t, since));
                    }
                }
            }
            if errors.is_empty() {
                Ok(done)
            } else {
                Err(me.err(errors.join("; ")))
            }
        })
        .await
    }

    /// Start what we stopped; returns what was done.
    async fn start_all(self: &Arc<Self>) -> Result<Vec<String>> {
        if self.client.get().is_none() {
            return Ok(Vec::new());
        }
        self.locked(|me, docker| async move {
            let mut st = me.state.lock().await;
            let mut done = Vec::new();
            let mut errors = Vec::new();
            for t in std::mem::take(&mut st.stopped) {
                let res = match docker.start_container(&t.id, None).await {
                    Ok(()) => Ok(()),
                    // 304: already running (the stop never reached the engine).
                    Err(_) if matches!(me.state_of(&docker, &t).await, Ok((true, _))) => Ok(()),
                    Err(e) => Err(e),
                };
                match res {
                    Ok(()) => {
                        st.started.push(t.id.clone());
                        let line = format!("docker: started {} again", t.label);
                        me.say(line.clone());
                        done.push(line);
                    }
                    Err(e) => {
                        errors.push(format!(
                            "could not start {}: {e}; run `docker start {}`",
                            t.label, t.name
                        ));
                        st.stopped.push(t);
                    }
                }
            }
            if errors.is_empty() {
                Ok(done)
            } else {
                Err(me.err(errors.join("; ")))
            }
        })
        .await
    }

    async fn stop_for_restore(self: &Arc<Self>, runbook: bool) -> Result<()> {
        let runbook_list: &[String] = if runbook {
            &self.config.stop_during_runbook_restore
        } else {
            &[]
        };
        if self.config.stop_during_restore.is_empty()
            && runbook_list.is_empty()
            && self.config.restart_after_restore.is_empty()
        {
            return Ok(());
        }
        let runbook_list = runbook_list.to_vec();
        self.locked(|me, docker| async move {
            // Every list is checked before anything is stopped (the safety backup pauses
            // `pause_during_backup`).
            let mut targets = me
                .resolve(
                    &docker,
                    &me.config.stop_during_restore,
                    "stop_during_restore",
                )
                .await?;
            for t in me
                .resolve(&docker, &runbook_list, "stop_during_runbook_restore")
                .await?
            {
                if !targets.iter().any(|s| s.id == t.id) {
                    targets.push(t);
                }
            }
            me.resolve(
                &docker,
                &me.config.restart_after_restore,
                "restart_after_restore",
            )
            .await?;
            me.resolve(
                &docker,
                &me.config.pause_during_backup,
                "pause_during_backup",
            )
            .await?;
            let mut st = me.state.lock().await;
            st.started.clear();
            for t in targets {
                if st.stopped.iter().any(|s| s.id == t.id) {
                    continue;
                }
                if !me.state_of(&docker, &t).await?.0 {
                    me.say(format!(
                        "docker: {} is not running; it stays stopped after the restore",
                        t.label
                    ));
                    continue;
                }
                st.stopped.push(t.clone());
                let opts = StopContainerOptions {
                    t: Some(me.config.stop_timeout_secs as i32),
                    signal: None,
                };
                docker
                    .stop_container(&t.id, Some(opts))
                    .await
                    .map_err(|e| me.err(format!("stopping {}: {e}", t.label)))?;
                me.say(format!("docker: stopped {} for the restore", t.label));
            }
            Ok(())
        })
        .await
    }

    async fn restart_after(self: &Arc<Self>) -> Result<()> {
        if self.config.restart_after_restore.is_empty() {
            return Ok(());
        }
        self.locked(|me, docker| async move {
            let targets = me
                .resolve(
                    &docker,
                    &me.config.restart_after_restore,
                    "restart_after_restore",
                )
                .await?;
            let started = std::mem::take(&mut me.state.lock().await.started);
            let mut errors = Vec::new();
            for t in targets {
                if started.contains(&t.id) {
                    continue;
                }
                let opts = RestartContainerOptions {
                    t: Some(me.config.stop_timeout_secs as i32),
                    signal: None,
                };
                match docker.restart_container(&t.id, Some(opts)).await {
                    Ok(()) => me.say(format!("docker: restarted {}", t.label)),
                    Err(e) => errors.push(format!(
                        "could not restart {}: {e}; run `docker restart {}`",
                        t.label, t.name
                    )),
                }
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(me.err(errors.join("; ")))
            }
        })
        .await
    }
}

/// Pauses `pause_during_backup` from before the snapshots start until every component is
/// consistent; stops `stop_during_restore` before a restore and starts it again after;
/// restarts `restart_after_restore` after a restore. Every change is recorded before it is
/// made, and undone by the `after_*` hooks or by [`RunHooks::cleanup`], whatever happened in
/// between. The engine is contacted only when a hook has a container to act on. Cheap to
/// clone: clones share their state (the runner holds one, the CLI another for the cleanup
/// after an interruption).
#[derive(Debug, Clone)]
pub struct DockerHooks(Arc<Inner>);

impl DockerHooks {
    /// Hooks for `config`, reporting through `report`. Fails only on a host that is not a
    /// unix socket; the socket itself is checked at first use.
    pub fn new(config: DockerConfig, report: Reporter) -> Result<Self> {
        Ok(Self(Arc::new(Inner::new(config, report)?)))
    }

    /// The socket path used.
    pub fn socket(&self) -> &str {
        &self.0.socket
    }

    /// Connect and check that every configured container exists, changing nothing.
    pub async fn check(&self) -> Result<()> {
        let docker = self.0.client().await?;
        let c = &self.0.config;
        self.0
            .resolve(docker, &c.pause_during_backup, "pause_during_backup")
            .await?;
        self.0
            .resolve(docker, &c.stop_during_restore, "stop_during_restore")
            .await?;
        self.0
            .resolve(docker, &c.restart_after_restore, "restart_after_restore")
            .await?;
        Ok(())
    }
}

#[async_trait]
impl RunHooks for DockerHooks {
    async fn before_backup(&self, _: &HookContext) -> Result<()> {
        self.0.pause_all().await
    }
    async fn all_consistent(&self, _: &HookContext) -> Result<()> {
        self.0.unpause_all().await.map(|_| ())
    }
    fn quiesces(&self, _: &HookContext) -> bool {
        // `before_backup` paused every container of `pause_during_backup` (or failed the
        // backup), and they stay paused until every component reached its cut.
        !self.0.config.pause_during_backup.is_empty()
    }
    async fn after_backup(&self, _: &HookContext) -> Result<()> {
        self.0.unpause_all().await.map(|_| ())
    }
    async fn before_restore(&self, cx: &HookContext) -> Result<()> {
        self.0.stop_for_restore(cx.runbook).await
    }
    async fn after_restore(&self, _: &HookContext) -> Result<()> {
        let unpaused = self.0.unpause_all().await;
        let started = self.0.start_all().await;
        let restarted = self.0.restart_after().await;
        let errors: Vec<String> = [unpaused.err(), started.err(), restarted.err()]
            .into_iter()
            .flatten()
            .map(|e| e.to_string())
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Other(errors.join("; ")))
        }
    }
    async fn cleanup(&self) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let mut errors = Vec::new();
        match self.0.unpause_all().await {
            Ok(d) => done.extend(d),
            Err(e) => errors.push(e.to_string()),
        }
        match self.0.start_all().await {
            Ok(d) => done.extend(d),
            Err(e) => errors.push(e.to_string()),
        }
        if errors.is_empty() {
            Ok(done)
        } else {
            Err(Error::Other(errors.join("; ")))
        }
    }
    async fn doctor(&self) -> Option<amber_dr_core::doctor::HookCheck> {
        let err = self.check().await.err().map(|e| e.full_message());
        let socket = self.socket();
        Some(amber_dr_core::doctor::HookCheck {
            ok: err.is_none(),
            line: match &err {
                None => {
                    format!("docker unix://{socket}: reachable, every container in [docker] exists")
                }
                Some(e) => format!("docker: PROBLEM: {e}"),
            },
            json: serde_json::json!({ "socket": socket, "ok": err.is_none(), "error": err }),
        })
    }
}

/// Connect to the engine at `socket` and check that it answers: a missing socket or a
/// permission problem is reported with the socket's path.
pub(crate) async fn connect(socket: &str) -> Result<Docker> {
    let err = |what: String| Error::Other(format!("docker (unix://{socket}): {what}"));
    let path = std::path::Path::new(socket);
    if !path.exists() {
        return Err(err(format!(
            "the Docker socket {socket} does not exist: is the Docker engine running on this host? (set `host` under [docker] if it listens elsewhere)"
        )));
    }
    if let Err(e) = tokio::net::UnixStream::connect(path).await {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (permission denied: run amber-dr as root or as a member of the group that owns the socket, usually `docker`)"
        } else {
            ""
        };
        return Err(err(format!(
            "cannot connect to the Docker socket {socket}: {e}{hint}"
        )));
    }
    let docker =
        Docker::connect_with_unix(socket, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(|e| err(e.to_string()))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| err(format!("the engine did not answer: {e}")))
}
