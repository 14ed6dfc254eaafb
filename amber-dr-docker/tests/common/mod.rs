//! The private dockerd of `scripts/stack.sh`, driven with the `docker` CLI — independently of
//! the crate under test — and busybox "app" containers that write continuously.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use amber_dr_core::testkit;

#[derive(Debug, Clone)]
pub struct Engine {
    /// `unix:///…/docker.sock`
    pub host: String,
    pub image: String,
}

impl Engine {
    /// The stack's engine, or `None` (skip, or panic under AMBER_DR_REQUIRE_SERVICES=1).
    pub fn from_env() -> Option<Engine> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let Some(host) = var("AMBER_DR_DOCKER_HOST") else {
            testkit::service_missing("Docker engine (AMBER_DR_DOCKER_HOST from scripts/stack.sh)");
            return None;
        };
        let e = Engine {
            host,
            image: var("AMBER_DR_DOCKER_IMAGE").unwrap_or_else(|| "amber-dr-busybox:latest".into()),
        };
        if e.try_docker(&["image", "inspect", &e.image]).is_err() {
            testkit::service_missing(&format!(
                "Docker engine at {} with image {}",
                e.host, e.image
            ));
            return None;
        }
        Some(e)
    }

    pub fn try_docker(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .args(args)
            .output()
            .map_err(|e| format!("docker: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    pub fn docker(&self, args: &[&str]) -> String {
        self.try_docker(args).unwrap()
    }

    /// `running`, `paused`, `exited`, ...
    pub fn status(&self, name: &str) -> String {
        self.docker(&["inspect", "-f", "{{.State.Status}}", name])
    }

    pub fn started_at(&self, name: &str) -> String {
        self.docker(&["inspect", "-f", "{{.State.StartedAt}}", name])
    }
}

/// A busybox container that appends a line to `/data/log` every 50 ms; `/data` is a host
/// directory. Removed on drop.
pub struct App {
    pub engine: Engine,
    pub name: String,
    pub dir: PathBuf,
}

/// A name unique to this test process.
pub fn unique(name: &str) -> String {
    format!("amberdr-{name}-{}", std::process::id())
}

impl App {
    pub fn start(engine: &Engine, name: &str, dir: &Path, labels: &[&str]) -> App {
        std::fs::create_dir_all(dir).unwrap();
        let _ = engine.try_docker(&["rm", "-f", name]);
        let mount = format!("{}:/data", dir.display());
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "-v",
            &mount,
        ];
        for l in labels {
            args.push("--label");
            args.push(l);
        }
        args.extend([
            engine.image.as_str(),
            "sh",
            "-c",
            "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo $i >> /data/log; sleep 0.05; done",
        ]);
        engine.docker(&args);
        let app = App {
            engine: engine.clone(),
            name: name.to_string(),
            dir: dir.to_path_buf(),
        };
        // Writing before the test starts.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while app.lines() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} does not write"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        app
    }

    /// Lines written so far.
    pub fn lines(&self) -> usize {
        std::fs::read_to_string(self.dir.join("log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    pub fn status(&self) -> String {
        self.engine.status(&self.name)
    }

    /// Running, and writing (the log grows within a second).
    pub fn assert_alive(&self) {
        assert_eq!(self.status(), "running", "{} is not running", self.name);
        let before = self.lines();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.lines() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "{} is running but does not write",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.engine.try_docker(&["rm", "-f", &self.name]);
    }
}
