//! The real Milvus of `scripts/stack.sh`, reached with pymilvus (tests/common/fixture.py) —
//! independently of the driver.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use amber_dr_core::testkit;

/// The pymilvus fixture script, embedded so that it runs from any crate.
const FIXTURE: &str = include_str!("fixture.py");

#[derive(Clone, Debug)]
pub struct Mv {
    pub endpoint: String,
    pub host: String,
    pub port: String,
    pub python: String,
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
        let mv = Mv {
            endpoint: endpoint.clone(),
            host: host.to_string(),
            port: port.to_string(),
            python,
        };
        let ok = Command::new(&mv.python)
            .args(["-c", &format!("from pymilvus import connections, utility; connections.connect(host='{}', port='{}', timeout=5); utility.get_server_version()", mv.host, mv.port)])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            testkit::service_missing(&format!("Milvus at {endpoint}"));
            return None;
        }
        Some(mv)
    }

    /// Run a fixture command (populate | empty | destroy | fingerprint) on collections
    /// `<prefix>_a` and `<prefix>_b`.
    pub fn fixture(&self, cmd: &str, prefix: &str) -> String {
        // Fed on stdin (`python - ARGS`), so that suites of other crates can include this module.
        let mut child = Command::new(&self.python)
            .args(["-", &self.host, &self.port, cmd, prefix])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(FIXTURE.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "fixture.py {cmd} {prefix} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run a Python snippet with `c` = a pymilvus connection; returns its stdout.
    pub fn py(&self, code: &str) -> String {
        let full = format!(
            "from pymilvus import *\nconnections.connect(host='{}', port='{}', timeout=30)\n{code}",
            self.host, self.port
        );
        let out = Command::new(&self.python)
            .args(["-c", &full])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python failed:\n{}\n{code}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}
