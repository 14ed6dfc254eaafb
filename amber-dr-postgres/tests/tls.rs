//! Issue 18: every connection option reaches the tools. A TLS-only PostgreSQL cluster made by
//! the test (initdb, a port the server claims itself, a CA and a server certificate made with
//! openssl, `hostssl` only in pg_hba.conf): a backup and restore with
//! `sslmode=verify-full&sslrootcert=CA` work (pg_dump, pg_dumpall, pg_restore and psql get the
//! TLS settings, or the server would refuse them), and a wrong root certificate fails the
//! backup with a clear error.
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use amber_dr_core::{testkit, BackupOptions, Component, RestorePlanOptions, Runner, Selection};
use amber_dr_postgres::{Postgres, PostgresConfig};

const PASSWORD: &str = "tls-only-pw";

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The server's programs run as `postgres` when the test runs as root (initdb refuses root).
fn as_owner(prog: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(prog);
        c
    } else {
        Command::new(prog)
    }
}

struct Cluster {
    bindir: PathBuf,
    dir: tempfile::TempDir,
    client: tempfile::TempDir,
    port: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_owner(&self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

impl Cluster {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// With the client certificate and key: without them the server refuses any connection,
    /// so every tool proves that it got them from the URL.
    fn url(&self, db: &str, extra: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@localhost:{}/{db}?{extra}&sslcert={}&sslkey={}",
            self.port,
            self.client.path().join("client.crt").display(),
            self.client.path().join("client.key").display()
        )
    }

    /// psql over TLS, verified against the test's CA.
    fn psql(&self, db: &str, sql: &str) -> String {
        run(
            Command::new(self.bindir.join("psql"))
                .env("PGHOST", "localhost")
                .env("PGPORT", self.port.to_string())
                .env("PGUSER", "postgres")
                .env("PGPASSWORD", PASSWORD)
                .env("PGDATABASE", db)
                .env("PGSSLMODE", "verify-full")
                .env("PGSSLROOTCERT", self.path("ca.crt"))
                .env("PGSSLCERT", self.client.path().join("client.crt"))
                .env("PGSSLKEY", self.client.path().join("client.key"))
                .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]),
            &format!("psql {sql}"),
        )
        .trim()
        .to_string()
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    run(
        Command::new("openssl").current_dir(dir).args(args),
        &format!("openssl {}", args.join(" ")),
    );
}

fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

fn start() -> Option<Cluster> {
    let Some(bindir) = std::env::var("AMBER_DR_PG_BINDIR")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        testkit::service_missing("PostgreSQL server binaries (AMBER_DR_PG_BINDIR)");
        return None;
    };
    if Command::new("openssl").arg("version").output().is_err() {
        testkit::service_missing("openssl");
        return None;
    }
    let bindir = PathBuf::from(bindir);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_ca(d, "wrong-ca");
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    std::fs::write(d.join("pw"), PASSWORD).unwrap();
    if is_root() {
        run(
            Command::new("chown").args(["-R", "postgres"]).arg(d),
            "chown",
        );
    }
    run(
        Command::new("chmod")
            .args(["0600"])
            .arg(d.join("server.key")),
        "chmod",
    );
    run(
        as_owner(&bindir.join("initdb"))
            .arg("-D")
            .arg(d.join("data"))
            .args(["-U", "postgres", "--auth=scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", d.join("pw").display())),
        "initdb",
    );
    // No port here: the server claims its own at start (below).
    let conf = format!(
        "listen_addresses = 'localhost'\nunix_socket_directories = '{}'\n\
         ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\nfsync = off\n",
        d.display(),
        d.join("server.crt").display(),
        d.join("server.key").display(),
        d.join("ca.crt").display()
    );
    let conf_path = d.join("data/postgresql.conf");
    let mut text = std::fs::read_to_string(&conf_path).unwrap();
    text.push_str(&conf);
    std::fs::write(&conf_path, text).unwrap();
    // TLS only (no `local`, no `host`, no `hostnossl` line), with a password and a client
    // certificate signed by the CA.
    std::fs::write(
        d.join("data/pg_hba.conf"),
        "hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-full\n\
         hostssl all all ::1/128 scram-sha-256 clientcert=verify-full\n",
    )
    .unwrap();
    // A client certificate for `postgres`, owned by the test's user (libpq checks that).
    let client = tempfile::tempdir().unwrap();
    let c = client.path();
    std::fs::write(
        c.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        c,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=postgres",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
        ],
    );
    openssl(
        c,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            &d.join("ca.crt").to_string_lossy(),
            "-CAkey",
            &d.join("ca.key").to_string_lossy(),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "client.ext",
            "-out",
            "client.crt",
        ],
    );
    run(
        Command::new("chmod").arg("0600").arg(c.join("client.key")),
        "chmod",
    );
    let mut cluster = Cluster {
        bindir,
        dir,
        client,
        port: 0,
    };
    // The server binds its port itself — never one reserved and released by the test, which
    // another process could take in between. A port drawn below the kernel's ephemeral range;
    // when the server cannot bind it (on 127.0.0.1 or ::1), it is stopped and another is tried.
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for attempt in 0..20u64 {
        let port = 20_000 + (seed.wrapping_mul(7_919) + attempt * 1_009) % 12_000;
        let log = cluster.path(&format!("log-{attempt}"));
        let started = as_owner(&cluster.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(cluster.path("data"))
            .arg("-l")
            .arg(&log)
            .args(["-o", &format!("-p {port}"), "-w", "-t", "60", "start"])
            .output()
            .unwrap();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let collided = text.contains("Address already in use");
        if started.status.success() && !collided {
            cluster.port = port as u16;
            return Some(cluster);
        }
        assert!(
            collided,
            "pg_ctl start failed: {}{}\n{text}",
            String::from_utf8_lossy(&started.stdout),
            String::from_utf8_lossy(&started.stderr)
        );
        if started.status.success() {
            run(
                as_owner(&cluster.bindir.join("pg_ctl"))
                    .arg("-D")
                    .arg(cluster.path("data"))
                    .args(["-m", "immediate", "-w", "stop"]),
                "pg_ctl stop",
            );
        }
    }
    panic!("no free port for the TLS cluster after 20 tries")
}

fn component(url: String) -> Arc<dyn Component> {
    let mut cfg = PostgresConfig::new(url).databases(["tlsdb"]);
    cfg.connect_timeout_secs = 5;
    Arc::new(Postgres::new("pg", cfg).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_reaches_every_tool_and_a_wrong_root_fails_clearly() {
    let Some(c) = start() else { return };
    c.psql("postgres", "CREATE DATABASE tlsdb");
    c.psql(
        "tlsdb",
        "CREATE TABLE t (id serial PRIMARY KEY, v text); \
         INSERT INTO t (v) SELECT 'row ' || g FROM generate_series(1, 500) g",
    );
    // The server refuses anything but TLS.
    let plain = Command::new(c.bindir.join("psql"))
        .env("PGPASSWORD", PASSWORD)
        .args(["-X", "-At", "-c", "SELECT 1"])
        .arg(format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
            c.port
        ))
        .output()
        .unwrap();
    assert!(
        !plain.status.success(),
        "the test cluster accepts plain TCP"
    );
    let no_cert = Command::new(c.bindir.join("psql"))
        .env("PGPASSWORD", PASSWORD)
        .args(["-X", "-At", "-c", "SELECT 1"])
        .arg(format!(
            "host=localhost port={} user=postgres dbname=postgres sslmode=require",
            c.port
        ))
        .output()
        .unwrap();
    assert!(
        !no_cert.status.success(),
        "the test cluster accepts TLS without a client certificate"
    );

    let ca = c.path("ca.crt");
    let url = c.url(
        "postgres",
        &format!(
            "sslmode=verify-full&sslrootcert={}&application_name=amber-tls-test",
            ca.display()
        ),
    );
    let (repo, _guard) = testkit::temp_repo();
    let runner = Runner::new(repo, vec![component(url)]);
    let m = runner.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    let v = runner
        .verify(&m.id, &Selection::all(), amber_dr_core::VerifyLevel::Full)
        .await
        .unwrap();
    assert!(v.is_ok(), "{:?}", v.components);

    c.psql(
        "tlsdb",
        "DELETE FROM t WHERE id % 2 = 0; DROP SEQUENCE IF EXISTS nothing",
    );
    let out = runner
        .restore(
            &m.id,
            &RestorePlanOptions {
                selection: Selection::all(),
                options: Default::default(),
                safety_backup: true,
                components: Default::default(),
            },
        )
        .await
        .unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(
        c.psql("tlsdb", "SELECT count(*) || ' ' || sum(id) FROM t"),
        "500 125250"
    );
    assert_eq!(c.psql("tlsdb", "SELECT last_value FROM t_id_seq"), "500");

    // A root certificate that did not sign the server's: the backup fails, saying why.
    let wrong = c.url(
        "postgres",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            c.path("wrong-ca.crt").display()
        ),
    );
    let (repo, _guard2) = testkit::temp_repo();
    let runner = Runner::new(repo, vec![component(wrong)]);
    let msg = match runner.backup(&BackupOptions::default()).await {
        Ok(m) => {
            assert!(
                !m.is_complete(),
                "a backup with a wrong root certificate completed"
            );
            format!("{:?}", m.components)
        }
        Err(e) => e.to_string(),
    };
    eprintln!("wrong root certificate: {msg}");
    assert!(
        msg.contains("certificate") && msg.contains("localhost"),
        "unclear error: {msg}"
    );
    assert!(!msg.contains(PASSWORD), "{msg}");
}
