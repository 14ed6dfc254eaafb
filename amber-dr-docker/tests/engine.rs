//! The `[docker]` hooks against the real dockerd of `scripts/stack.sh`: busybox "app"
//! containers that write continuously are paused during a backup, stopped and restarted around
//! a restore, and always brought back.
// test-lane: rest (uses DOCKER: no state shared with other tests)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use amber_dr_core::archive::Directory;
use amber_dr_core::testkit::Fake;
use amber_dr_core::tool::{self, ToolCommand};
use amber_dr_core::{
    async_trait, BackupOptions, Capabilities, Component, ComponentRecord, HookContext, Probe,
    ReadContext, Repository, RepositoryConfig, RestoreOptions, RestorePlanOptions, RestoreReport,
    Result, RunHooks, Runner, SnapshotContext, VerifyLevel, VerifyReport,
};
use amber_dr_docker::{DockerConfig, DockerHooks, Reporter};
use common::{unique, App, Engine};

type Lines = Arc<Mutex<Vec<String>>>;

fn hooks(engine: &Engine, config: DockerConfig) -> (DockerHooks, Lines) {
    let lines: Lines = Arc::default();
    let l = lines.clone();
    let report: Reporter = Arc::new(move |s: &str| l.lock().unwrap().push(s.to_string()));
    let config = DockerConfig {
        host: Some(engine.host.clone()),
        ..config
    };
    (DockerHooks::new(config, report).unwrap(), lines)
}

fn repo(dir: &std::path::Path) -> Repository {
    Repository::open(&RepositoryConfig::new(dir.to_string_lossy())).unwrap()
}

/// The test kit's fake, consistent after `before` ms, finished `after` ms later; optionally
/// failing (its snapshot and its restore).
fn slow(before: u64, after: u64, fail: bool) -> Arc<dyn Component> {
    let f = Fake::new("slow").delays(Duration::from_millis(before), Duration::from_millis(after));
    Arc::new(if fail { f.failing() } else { f })
}

/// An app's data directory, backed up and restored with core's directory mechanism (what the
/// `files` driver does; this crate needs only core).
#[derive(Debug)]
struct DataDir(Directory);

impl DataDir {
    fn new(name: &str, dir: &std::path::Path) -> Self {
        Self(Directory::new("files", name, dir))
    }
}

#[async_trait]
impl Component for DataDir {
    fn kind(&self) -> &'static str {
        "files"
    }
    fn name(&self) -> &str {
        self.0.name()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .restore_to_target(true)
            .deep_verify(true)
    }
    async fn probe(&self) -> Result<Probe> {
        self.0.probe().await
    }
    async fn snapshot(&self, cx: &SnapshotContext) -> Result<ComponentRecord> {
        self.0.snapshot(cx).await
    }
    async fn verify(
        &self,
        cx: &ReadContext,
        rec: &ComponentRecord,
        level: VerifyLevel,
    ) -> Result<VerifyReport> {
        self.0.verify(cx, rec, level).await
    }
    async fn restore(
        &self,
        cx: &ReadContext,
        rec: &ComponentRecord,
        opts: &RestoreOptions,
    ) -> Result<RestoreReport> {
        self.0.restore(cx, rec, opts).await
    }
}

/// Wraps the Docker hooks and looks at the containers (through the docker CLI) at each step.
#[derive(Debug)]
struct Watch {
    inner: DockerHooks,
    apps: Vec<(String, std::path::PathBuf)>,
    engine: Engine,
    seen: Arc<Mutex<Seen>>,
}

impl Watch {
    fn look(&self, step: &str) {
        let states = self
            .apps
            .iter()
            .map(|(name, dir)| {
                let lines = std::fs::read_to_string(dir.join("log"))
                    .map(|s| s.lines().count())
                    .unwrap_or(0);
                (self.engine.status(name), lines)
            })
            .collect();
        self.seen.lock().unwrap().push((step.to_string(), states));
    }
}

#[async_trait]
impl RunHooks for Watch {
    async fn before_backup(&self, cx: &HookContext) -> Result<()> {
        self.look("before pause");
        self.inner.before_backup(cx).await?;
        self.look("paused");
        Ok(())
    }
    async fn all_consistent(&self, cx: &HookContext) -> Result<()> {
        self.look("consistent");
        self.inner.all_consistent(cx).await?;
        self.look("unpaused");
        Ok(())
    }
    fn quiesces(&self, cx: &HookContext) -> bool {
        self.inner.quiesces(cx)
    }
    async fn after_backup(&self, cx: &HookContext) -> Result<()> {
        self.look("snapshots done");
        self.inner.after_backup(cx).await?;
        self.look("after backup");
        Ok(())
    }
    async fn before_restore(&self, cx: &HookContext) -> Result<()> {
        self.inner.before_restore(cx).await?;
        self.look("stopped");
        Ok(())
    }
    async fn after_restore(&self, cx: &HookContext) -> Result<()> {
        self.inner.after_restore(cx).await?;
        self.look("after restore");
        Ok(())
    }
    async fn cleanup(&self) -> Result<Vec<String>> {
        self.inner.cleanup().await
    }
}

type Seen = Vec<(String, Vec<(String, usize)>)>;

fn step<'a>(seen: &'a Seen, name: &str) -> &'a [(String, usize)] {
    &seen
        .iter()
        .find(|(s, _)| s == name)
        .unwrap_or_else(|| panic!("no step `{name}` in {seen:?}"))
        .1
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_during_backup_freezes_the_apps_until_every_component_is_consistent() {
    let Some(engine) = Engine::from_env() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let api_name = unique("api");
    let worker_name = unique("worker");
    let service = unique("svc-worker");
    let api = App::start(&engine, &api_name, &tmp.path().join("api"), &[]);
    // The worker is named in the config by its compose service label only.
    let worker = App::start(
        &engine,
        &worker_name,
        &tmp.path().join("worker"),
        &[&format!("com.docker.compose.service={service}")],
    );
    let (docker, lines) = hooks(
        &engine,
        DockerConfig {
            pause_during_backup: vec![api_name.clone(), service.clone()],
            ..Default::default()
        },
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let watch = Watch {
        inner: docker,
        apps: vec![
            (api_name.clone(), api.dir.clone()),
            (worker_name.clone(), worker.dir.clone()),
        ],
        engine: engine.clone(),
        seen: seen.clone(),
    };
    // The api's directory is backed up as the files driver does (consistent when its archive
    // ends); `slow` is consistent after 600 ms and ends 1.5 s later.
    let comps: Vec<Arc<dyn Component>> = vec![
        Arc::new(DataDir::new("api-data", &api.dir)),
        slow(600, 1500, false),
    ];
    let runner = Runner::new(repo(&tmp.path().join("repo")), comps).with_hooks(Arc::new(watch));
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{m:?}");
    // Paused until every component was cut: the manifest says so.
    assert_eq!(
        m.cut.as_ref().map(|c| c.class),
        Some(amber_dr_core::ConsistencyClass::Quiesced),
        "{:?}",
        m.cut
    );
    let seen = seen.lock().unwrap().clone();

    let before = step(&seen, "before pause");
    let paused = step(&seen, "paused");
    let consistent = step(&seen, "consistent");
    let unpaused = step(&seen, "unpaused");
    let done = step(&seen, "snapshots done");
    assert!(before.iter().all(|(s, _)| s == "running"), "{seen:?}");
    assert!(paused.iter().all(|(s, _)| s == "paused"), "{seen:?}");
    assert!(consistent.iter().all(|(s, _)| s == "paused"), "{seen:?}");
    // 600 ms or more between the pause and the consistent point, at 20 lines a second:
    // the log did not move.
    for i in 0..2 {
        assert_eq!(
            paused[i].1, consistent[i].1,
            "an app wrote while paused: {seen:?}"
        );
    }
    assert!(unpaused.iter().all(|(s, _)| s == "running"), "{seen:?}");
    // Unpaused before the backup ended: the apps wrote while `slow` was still running.
    for i in 0..2 {
        assert!(
            done[i].1 > unpaused[i].1,
            "app {i} did not write between the consistent point and the end: {seen:?}"
        );
    }
    // The api's data in the backup is the frozen state.
    let rec = &m.components["api-data"];
    let log_bytes: u64 = rec.stats["bytes"].as_u64().unwrap();
    let frozen = paused[0].1;
    let expected: u64 = (1..=frozen).map(|i| i.to_string().len() as u64 + 1).sum();
    assert_eq!(
        log_bytes, expected,
        "the backup holds the paused state of the log"
    );

    let lines = lines.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("docker: paused {api_name}")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("docker: paused {worker_name} (service {service})")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("docker: unpaused {api_name} (paused "))),
        "{lines:?}"
    );
    api.assert_alive();
    worker.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_stops_the_app_and_starts_and_restarts_containers_after_it() {
    let Some(engine) = Engine::from_env() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let app_name = unique("rapp");
    let other_name = unique("rother");
    // Stopped only around a runbook-directory restore: this one is not.
    let runbook_name = unique("rrunbook");
    let app = App::start(&engine, &app_name, &tmp.path().join("app"), &[]);
    let other = App::start(&engine, &other_name, &tmp.path().join("other"), &[]);
    let runbook_only = App::start(&engine, &runbook_name, &tmp.path().join("runbook"), &[]);
    let (docker, lines) = hooks(
        &engine,
        DockerConfig {
            // Paused during the backup, so that what it holds is known exactly.
            pause_during_backup: vec![app_name.clone()],
            stop_during_restore: vec![app_name.clone()],
            stop_during_runbook_restore: vec![runbook_name.clone()],
            restart_after_restore: vec![other_name.clone()],
            stop_timeout_secs: 5,
            ..Default::default()
        },
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let watch = Watch {
        inner: docker,
        apps: vec![
            (app_name.clone(), app.dir.clone()),
            (other_name.clone(), other.dir.clone()),
            (runbook_name.clone(), runbook_only.dir.clone()),
        ],
        engine: engine.clone(),
        seen: seen.clone(),
    };
    let comps: Vec<Arc<dyn Component>> = vec![Arc::new(DataDir::new("app-data", &app.dir))];
    let runner = Runner::new(repo(&tmp.path().join("repo")), comps).with_hooks(Arc::new(watch));
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    let backed_up_lines = step(&seen.lock().unwrap(), "paused")[0].1;
    let backed_up: String = (1..=backed_up_lines).map(|i| format!("{i}\n")).collect();
    // Let the app write on, so that the restore has something to undo.
    std::thread::sleep(Duration::from_millis(300));
    assert!(app.lines() > backed_up_lines);
    let other_started = engine.started_at(&other_name);

    let outcome = runner
        .restore(
            &m.id,
            &RestorePlanOptions {
                safety_backup: true,
                components: Default::default(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
    let seen = seen.lock().unwrap().clone();
    let stopped = step(&seen, "stopped");
    assert_eq!(
        stopped[0].0, "exited",
        "app not stopped for the restore: {seen:?}"
    );
    assert_eq!(stopped[1].0, "running", "{seen:?}");
    assert_eq!(
        stopped[2].0, "running",
        "stop_during_runbook_restore stopped for a restore of an amber-dr backup: {seen:?}"
    );
    // The safety backup ran while the app was stopped: it holds the app's last line.
    let safety = outcome.safety_backup.as_ref().unwrap();
    assert!(safety != &m.id);

    // After: started again, writing into the *restored* directory (the old one was swapped
    // out while the container was stopped), which begins with exactly the backed-up lines.
    app.assert_alive();
    let now = std::fs::read_to_string(app.dir.join("log")).unwrap();
    assert!(
        now.starts_with(&backed_up),
        "the restored log lost its backed-up content"
    );
    assert!(now.lines().count() > backed_up_lines);
    // The app's counter restarted at 1 after the backed-up lines: it was started again.
    assert_eq!(now.lines().nth(backed_up_lines), Some("1"), "{now}");
    // `other` was restarted.
    other.assert_alive();
    assert_ne!(
        engine.started_at(&other_name),
        other_started,
        "not restarted"
    );
    let lines = lines.lock().unwrap().clone();
    for want in [
        format!("docker: stopped {app_name} for the restore"),
        format!("docker: started {app_name} again"),
        format!("docker: restarted {other_name}"),
    ] {
        assert!(lines.contains(&want), "no `{want}` in {lines:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_component_still_brings_every_container_back() {
    let Some(engine) = Engine::from_env() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let name = unique("fapp");
    let app = App::start(&engine, &name, &tmp.path().join("app"), &[]);
    let (docker, lines) = hooks(
        &engine,
        DockerConfig {
            pause_during_backup: vec![name.clone()],
            stop_during_restore: vec![name.clone()],
            ..Default::default()
        },
    );
    let failing: Vec<Arc<dyn Component>> = vec![slow(300, 0, true)];
    let runner =
        Runner::new(repo(&tmp.path().join("repo")), failing).with_hooks(Arc::new(docker.clone()));
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(!m.is_complete());
    app.assert_alive();
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with(&format!("docker: unpaused {name}"))));

    // A restore whose component fails: the app is started again all the same.
    let ok: Vec<Arc<dyn Component>> = vec![slow(0, 0, false)];
    let good = Runner::new(repo(&tmp.path().join("repo")), ok)
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    let outcome = runner
        .restore(
            &good.id,
            &RestorePlanOptions {
                safety_backup: false,
                components: Default::default(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!outcome.is_ok());
    app.assert_alive();
    let lines = lines.lock().unwrap().clone();
    assert!(
        lines.contains(&format!("docker: stopped {name} for the restore")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("docker: started {name} again")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_backup_unpauses_by_itself() {
    let Some(engine) = Engine::from_env() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let name = unique("capp");
    let app = App::start(&engine, &name, &tmp.path().join("app"), &[]);
    let (docker, _) = hooks(
        &engine,
        DockerConfig {
            pause_during_backup: vec![name.clone()],
            ..Default::default()
        },
    );
    let comps: Vec<Arc<dyn Component>> = vec![slow(60_000, 0, false)];
    let runner =
        Runner::new(repo(&tmp.path().join("repo")), comps).with_hooks(Arc::new(docker.clone()));
    // Drop the backup while the app is paused (an embedding program dropping the future).
    let opts = BackupOptions::default();
    {
        let backup = runner.backup(&opts);
        tokio::pin!(backup);
        tokio::select! {
            _ = &mut backup => panic!("the backup should still be running"),
            _ = tokio::time::sleep(Duration::from_millis(1500)) => {}
        }
        assert_eq!(app.status(), "paused");
    }
    // Core undoes the hooks' changes of a dropped run by itself, in the background.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while app.status() != "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "still {} after the backup was dropped",
            app.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.assert_alive();
    // Nothing is left for an explicit cleanup; calling it is harmless.
    assert!(docker.cleanup().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_container_fails_before_anything_is_paused() {
    let Some(engine) = Engine::from_env() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let name = unique("mapp");
    let app = App::start(&engine, &name, &tmp.path().join("app"), &[]);
    let missing = unique("no-such-container");
    let (docker, lines) = hooks(
        &engine,
        DockerConfig {
            // The existing container comes first: it must not be paused either.
            pause_during_backup: vec![name.clone(), missing.clone()],
            stop_during_restore: vec![name.clone()],
            restart_after_restore: vec![missing.clone()],
            ..Default::default()
        },
    );
    let comps: Vec<Arc<dyn Component>> = vec![slow(0, 0, false)];
    let runner = Runner::new(repo(&tmp.path().join("repo")), comps.clone())
        .with_hooks(Arc::new(docker.clone()));
    let err = runner
        .backup(&BackupOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("`{missing}`")), "{err}");
    assert!(err.contains("pause_during_backup"), "{err}");
    assert!(err.contains(&engine.host), "names the socket: {err}");
    assert!(
        lines.lock().unwrap().is_empty(),
        "{:?}",
        lines.lock().unwrap()
    );
    assert!(runner.repository().list().await.unwrap().is_empty());
    app.assert_alive();
    assert!(docker.check().await.is_err());

    // A restore with an unknown restart_after_restore entry stops nothing.
    let good = Runner::new(repo(&tmp.path().join("repo")), comps)
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    let err = runner
        .restore(&good.id, &RestorePlanOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("restart_after_restore"), "{err}");
    assert!(
        lines.lock().unwrap().is_empty(),
        "{:?}",
        lines.lock().unwrap()
    );
    app.assert_alive();
}

#[tokio::test]
async fn a_bad_socket_is_a_clear_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let comps: Vec<Arc<dyn Component>> = vec![slow(0, 0, false)];
    let report: Reporter = Arc::new(|_| {});

    // No such file.
    let path = tmp.path().join("nowhere/docker.sock");
    let docker = DockerHooks::new(
        DockerConfig {
            host: Some(format!("unix://{}", path.display())),
            pause_during_backup: vec!["amber-api".into()],
            ..Default::default()
        },
        report.clone(),
    )
    .unwrap();
    let runner =
        Runner::new(repo(&tmp.path().join("repo")), comps.clone()).with_hooks(Arc::new(docker));
    let err = runner
        .backup(&BackupOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("does not exist"), "{err}");

    // A socket file nobody listens on.
    let dead = tmp.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let docker = DockerHooks::new(
        DockerConfig {
            host: Some(dead.display().to_string()),
            pause_during_backup: vec!["amber-api".into()],
            ..Default::default()
        },
        report.clone(),
    )
    .unwrap();
    let runner =
        Runner::new(repo(&tmp.path().join("repo")), comps.clone()).with_hooks(Arc::new(docker));
    let err = runner
        .backup(&BackupOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "cannot connect to the Docker socket {}",
            dead.display()
        )),
        "{err}"
    );

    // A [docker] section with nothing to pause needs no engine for a backup.
    let docker = DockerHooks::new(
        DockerConfig {
            host: Some(path.display().to_string()),
            stop_during_restore: vec!["amber-api".into()],
            ..Default::default()
        },
        report,
    )
    .unwrap();
    let runner = Runner::new(repo(&tmp.path().join("repo")), comps).with_hooks(Arc::new(docker));
    assert!(runner
        .backup(&BackupOptions::default())
        .await
        .unwrap()
        .is_complete());
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_streams_stdin_and_stdout_and_reports_failures() {
    let Some(engine) = Engine::from_env() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let name = unique("exec");
    let _app = App::start(&engine, &name, &tmp.path().join("app"), &[]);
    // Through core's registry, as a driver gets it (the Postgres driver's `via_container`).
    amber_dr_docker::register_tool_runner();
    let runner = tool::runner(Some(&name), Some(&engine.host), "test").unwrap();
    assert!(!runner.sees_host_files());
    assert_eq!(runner.location(), format!("container `{name}`"));
    // 3 MiB through stdin and back out of stdout.
    let input: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut out = Vec::new();
    let mut reader = input.as_slice();
    let cat = ToolCommand::new("cat");
    let run = runner.run(&cat, Some(&mut reader), Some(&mut out), "cat");
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("stdin was not closed at its end")
        .unwrap();
    assert_eq!(out.len(), input.len());
    assert!(out == input);
    // Environment, and a failure with its stderr.
    let mut cmd = ToolCommand::new("sh");
    cmd.args(["-c", "echo $X; echo boom >&2; exit 3"])
        .env("X", "hello");
    let mut out = Vec::new();
    let err = tool::stdout_into(runner.as_ref(), &cmd, &mut out, "sh")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(String::from_utf8_lossy(&out), "hello\n");
    assert!(err.contains("exit code 3") && err.contains("boom"), "{err}");
    assert!(err.contains(&format!("container `{name}`")), "{err}");
    // The input is read to its end when the tool stops reading early, and stdout discarded.
    let mut head = ToolCommand::new("sh");
    head.args(["-c", "head -c 10; exit 0"]);
    let mut reader = input.as_slice();
    tool::stdin_from(runner.as_ref(), &head, &mut reader, "head")
        .await
        .unwrap();
    assert!(
        reader.is_empty(),
        "{} bytes of input left unread",
        reader.len()
    );
}
