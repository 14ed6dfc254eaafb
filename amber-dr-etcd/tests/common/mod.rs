//! The real etcd of `scripts/stack.sh`, reached with `etcdctl` — independently of the driver.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

use amber_dr_core::testkit;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

#[derive(Clone, Debug)]
pub struct EtcdCtl {
    pub endpoint: String,
}

impl EtcdCtl {
    /// The stack's etcd, or `None` (skip, or panic under AMBER_DR_REQUIRE_SERVICES=1).
    pub fn from_env() -> Option<EtcdCtl> {
        let Some(endpoint) = std::env::var("AMBER_DR_ETCD_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty())
        else {
            testkit::service_missing("etcd (AMBER_DR_ETCD_ENDPOINT from scripts/stack.sh)");
            return None;
        };
        let e = EtcdCtl { endpoint };
        if e.try_run(&[OsStr::new("endpoint"), OsStr::new("health")], None)
            .is_err()
        {
            testkit::service_missing(&format!("etcd at {}", e.endpoint));
            return None;
        }
        Some(e)
    }

    fn try_run(&self, args: &[&OsStr], stdin: Option<&[u8]>) -> Result<Vec<u8>, String> {
        let mut c = Command::new("etcdctl");
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .arg("--command-timeout=30s")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| format!("etcdctl: {e}"))?;
        let mut input = child.stdin.take().unwrap();
        if let Some(data) = stdin {
            input.write_all(data).map_err(|e| e.to_string())?;
        }
        drop(input);
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(out.stdout)
    }

    fn run(&self, args: &[&OsStr], stdin: Option<&[u8]>) -> Vec<u8> {
        self.try_run(args, stdin)
            .unwrap_or_else(|e| panic!("etcdctl {args:?} failed: {e}"))
    }

    /// Put any bytes, NUL included (etcdctl cannot take a NUL in an argument): curl to the
    /// JSON gateway with base64, another client than the driver's.
    pub fn put(&self, key: &[u8], value: &[u8]) {
        let body = serde_json::json!({"key": B64.encode(key), "value": B64.encode(value)});
        let mut child = Command::new("curl")
            .args([
                "-sS",
                "-f",
                "--max-time",
                "30",
                "-X",
                "POST",
                "--data-binary",
                "@-",
            ])
            .arg(format!("{}/v3/kv/put", self.endpoint))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "curl put failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Put many printable key/value pairs, 100 per transaction.
    pub fn put_many(&self, pairs: &[(String, String)]) {
        for chunk in pairs.chunks(100) {
            let mut script = String::from("\n");
            for (k, v) in chunk {
                script.push_str(&format!("put {k:?} {v:?}\n"));
            }
            script.push_str("\n\n");
            self.run(&[OsStr::new("txn")], Some(script.as_bytes()));
        }
    }

    /// One transaction of printable `put "k" "v"` / `del "k"` lines (etcdctl txn syntax).
    pub fn txn(&self, ops: &[String]) -> Result<(), String> {
        let script = format!("\n{}\n\n\n", ops.join("\n"));
        self.try_run(&[OsStr::new("txn")], Some(script.as_bytes()))
            .map(|_| ())
    }

    pub fn delete(&self, key: &[u8]) {
        let body = serde_json::json!({"key": B64.encode(key)});
        let out = Command::new("curl")
            .args(["-sS", "-f", "--max-time", "30", "-X", "POST", "-d"])
            .arg(body.to_string())
            .arg(format!("{}/v3/kv/deleterange", self.endpoint))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl delete failed");
    }

    pub fn delete_prefix(&self, prefix: &[u8]) {
        self.run(
            &[
                OsStr::new("del"),
                OsStr::new("--prefix"),
                OsStr::from_bytes(prefix),
            ],
            None,
        );
    }

    /// Every key and value under `prefix`, in key order.
    pub fn get_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let out = self.run(
            &[
                OsStr::new("get"),
                OsStr::new("--prefix"),
                OsStr::new("-w"),
                OsStr::new("json"),
                OsStr::from_bytes(prefix),
            ],
            None,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        v.get("kvs")
            .and_then(|k| k.as_array())
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| {
                        let d = |f: &str| {
                            kv.get(f)
                                .and_then(|x| x.as_str())
                                .map(|s| B64.decode(s).unwrap())
                                .unwrap_or_default()
                        };
                        (d("key"), d("value"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of one key, if present.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let out = self.run(
            &[
                OsStr::new("get"),
                OsStr::new("-w"),
                OsStr::new("json"),
                OsStr::from_bytes(key),
            ],
            None,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let kv = v.get("kvs")?.as_array()?.first()?.clone();
        Some(
            kv.get("value")
                .and_then(|x| x.as_str())
                .map(|s| B64.decode(s).unwrap())
                .unwrap_or_default(),
        )
    }

    /// A description of everything under `prefix`: one line per key (its bytes in hex), the
    /// value's length and SHA-256.
    pub fn describe(&self, prefix: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        let kvs = self.get_prefix(prefix);
        let mut s = format!("{} keys\n", kvs.len());
        for (k, v) in kvs {
            let sum = hex(&Sha256::digest(&v));
            s.push_str(&format!("{} {} {sum}\n", hex(&k), v.len()));
        }
        s
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Deterministic pseudo-random bytes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The awkward data set under `prefix`: the prefix itself as a key, nested and binary keys,
/// empty and binary values, a 1 MB value, and 1,500 small keys (many pages, many transactions).
pub fn populate(e: &EtcdCtl, prefix: &str) {
    e.delete_prefix(prefix.as_bytes());
    let p = prefix.as_bytes();
    let k = |suffix: &[u8]| [p, suffix].concat();
    e.put(p, b"the prefix itself is a key");
    e.put(&k(b"plain"), b"hello");
    e.put(&k(b"nested/a/b/c"), b"deep");
    e.put(&k(b"empty-value"), b"");
    e.put(&k(b"binary-value"), &[0, 1, 2, 0xff, 0xfe, b'\n', 0, 0x80]);
    e.put(&k(&[0x00, 0xff, 0x80, b'\n', b' ']), b"binary key");
    e.put(&k("unicodé/ключ/鍵".as_bytes()), "värde".as_bytes());
    e.put(&k(b"trailing-newline"), b"line\n\n");
    e.put(&k(b"large"), &noise(1_000_000, 7));
    let many: Vec<(String, String)> = (0..1500)
        .map(|i| {
            (
                format!("{prefix}many/{i:05}"),
                format!("value {i} {}", "x".repeat(i % 50)),
            )
        })
        .collect();
    e.put_many(&many);
}

/// Change, delete and add keys under `prefix`.
pub fn destroy(e: &EtcdCtl, prefix: &str) {
    let p = prefix.as_bytes();
    let k = |suffix: &[u8]| [p, suffix].concat();
    e.delete(&k(b"plain"));
    e.delete(&k(&[0x00, 0xff, 0x80, b'\n', b' ']));
    e.put(&k(b"large"), b"small now");
    e.put(&k(b"new-key"), b"not in the backup");
    e.delete_prefix(&k(b"many/001"));
}
