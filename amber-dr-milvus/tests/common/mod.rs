//! The real Milvus of `scripts/stack.sh`, reached with pymilvus (tests/common/fixture.py) —
//! independently of the driver. One `fixture.py serve` process per [`Mv`] answers every
//! request, so pymilvus is imported and connected once per test, not once per call.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use amber_dr_core::testkit;

/// The pymilvus fixture script, embedded so that it runs from any crate.
pub const FIXTURE: &str = include_str!("fixture.py");

/// The `fixture.py serve` process.
#[derive(Debug)]
struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Send one request; `(ok, output)`, or `None` when the process is gone.
    fn ask(&mut self, req: &serde_json::Value) -> Option<(bool, String)> {
        writeln!(self.stdin, "{req}").ok()?;
        self.stdin.flush().ok()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&line).ok()?;
        Some((
            v["ok"].as_bool().unwrap_or(false),
            v["out"].as_str().unwrap_or_default().to_string(),
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Debug)]
pub struct Mv {
    pub endpoint: String,
    pub host: String,
    pub port: String,
    pub python: String,
    server: Arc<Mutex<Server>>,
}

impl Mv {
    /// The stack's Milvus, or `None` (skip, or panic under AMBER_DR_REQUIRE_SERVICES=1).
    pub fn from_env() -> Option<Mv> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(endpoint), Some(python)) = (
            var("AMBER_DR_MILVUS_ENDPOINT"),
            var("AMBER_DR_MILVUS_PYTHON"),
        ) else {
            testkit::service_missing("Milvus (AMBER_DR_MILVUS_* from scripts/stack.sh)");
            return None;
        };
        let hostport = endpoint.trim_start_matches("http://").to_string();
        let (host, port) = hostport.split_once(':').unwrap();
        // Given with `-c` (stdin carries the requests), so that suites of other crates can
        // include this module.
        let started = Command::new(&python)
            .args(["-c", FIXTURE, host, port, "serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let Ok(mut child) = started else {
            testkit::service_missing(&format!("pymilvus ({python})"));
            return None;
        };
        let mut server = Server {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        };
        let probe = serde_json::json!({"cmd": "py", "code": "utility.get_server_version()"});
        if !matches!(server.ask(&probe), Some((true, _))) {
            testkit::service_missing(&format!("Milvus at {endpoint}"));
            return None;
        }
        Some(Mv {
            endpoint: endpoint.clone(),
            host: host.to_string(),
            port: port.to_string(),
            python,
            server: Arc::new(Mutex::new(server)),
        })
    }

    fn ask(&self, req: serde_json::Value, what: &str) -> String {
        let mut server = self.server.lock().unwrap_or_else(|p| p.into_inner());
        match server.ask(&req) {
            Some((true, out)) => out,
            Some((false, out)) => panic!("{what} failed:\n{out}"),
            None => panic!("{what}: the fixture.py process is gone"),
        }
    }

    /// Run a fixture command (populate | empty | destroy | fingerprint) on collections
    /// `<prefix>_a` and `<prefix>_b`.
    pub fn fixture(&self, cmd: &str, prefix: &str) -> String {
        self.ask(
            serde_json::json!({"cmd": cmd, "prefix": prefix}),
            &format!("fixture.py {cmd} {prefix}"),
        )
    }

    /// Run a Python snippet with pymilvus's names in scope (connected); returns its stdout.
    pub fn py(&self, code: &str) -> String {
        self.ask(
            serde_json::json!({"cmd": "py", "code": code}),
            &format!("python\n{code}\n"),
        )
        .trim()
        .to_string()
    }
}

/// Milvus's bucket as the stack configures it (`AMBER_DR_S3_*`, `AMBER_DR_MILVUS_BUCKET`), or
/// `None` (skip, or panic under AMBER_DR_REQUIRE_SERVICES=1).
pub fn milvus_storage() -> Option<amber_dr_milvus::MilvusStorageConfig> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("AMBER_DR_S3_ENDPOINT"),
        var("AMBER_DR_MILVUS_BUCKET"),
        var("AMBER_DR_S3_ACCESS_KEY"),
        var("AMBER_DR_S3_SECRET_KEY"),
    ) {
        (Some(ep), Some(bucket), Some(ak), Some(sk)) => Some(
            amber_dr_milvus::MilvusStorageConfig::new(ep, bucket, ak, sk),
        ),
        _ => {
            testkit::service_missing("Milvus's bucket (AMBER_DR_S3_*, AMBER_DR_MILVUS_BUCKET)");
            None
        }
    }
}
