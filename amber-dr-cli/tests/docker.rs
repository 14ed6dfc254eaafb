//! `[docker]` through the real binary and the stack's dockerd: the output says what was paused,
//! stopped and brought back, and a SIGTERM'd amber-dr still leaves every container running.
// test-lane: stores (uses Postgres, through a container, besides the Docker engine)
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// The stack's engine (`unix://…`) and image, or `None` (skip; panic when services are
/// required).
fn engine() -> Option<(String, String)> {
    let got = env("AMBER_DR_DOCKER_HOST").map(|h| {
        (
            h,
            env("AMBER_DR_DOCKER_IMAGE").unwrap_or_else(|| "amber-dr-busybox:latest".into()),
        )
    });
    if got.is_none() {
        if env("AMBER_DR_REQUIRE_SERVICES").as_deref() == Some("1") {
            panic!("Docker engine not available and AMBER_DR_REQUIRE_SERVICES=1: run scripts/stack.sh up");
        }
        eprintln!("SKIPPED: Docker engine not available (scripts/stack.sh up)");
    }
    got
}

fn docker(host: &str, args: &[&str]) -> String {
    let out = Command::new("docker")
        .arg("-H")
        .arg(host)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A busybox container appending to `dir/log`; removed on drop.
struct App {
    host: String,
    name: String,
    dir: PathBuf,
}

impl App {
    fn start(host: &str, image: &str, name: &str, dir: &Path) -> App {
        std::fs::create_dir_all(dir).unwrap();
        let _ = Command::new("docker")
            .args(["-H", host, "rm", "-f", name])
            .output();
        docker(
            host,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "none",
                "-v",
                &format!("{}:/data", dir.display()),
                image,
                "sh",
                "-c",
                "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo $i >> /data/log; sleep 0.05; done",
            ],
        );
        App {
            host: host.into(),
            name: name.into(),
            dir: dir.into(),
        }
    }
    fn status(&self) -> String {
        docker(
            &self.host,
            &["inspect", "-f", "{{.State.Status}}", &self.name],
        )
    }
    fn lines(&self) -> usize {
        std::fs::read_to_string(self.dir.join("log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
    fn assert_alive(&self) {
        assert_eq!(self.status(), "running", "{}", self.name);
        let before = self.lines();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.lines() <= before {
            assert!(Instant::now() < deadline, "{} does not write", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["-H", &self.host, "rm", "-f", &self.name])
            .output();
    }
}

fn amber(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_amber-dr"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &Path, docker: &str) {
    std::fs::write(
        dir.join("amber-dr.toml"),
        format!(
            "[repository]\nurl = \"./repo\"\n\n[components.uploads]\nkind = \"files\"\npath = \"./uploads\"\n\n[docker]\n{docker}\n"
        ),
    )
    .unwrap();
}

fn name(n: &str) -> String {
    format!("amberdr-cli-{n}-{}", std::process::id())
}

#[test]
fn backup_and_restore_pause_stop_and_bring_back_the_app() {
    let Some((host, image)) = engine() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let app = App::start(&host, &image, &name("app"), &tmp.path().join("uploads"));
    write_config(
        tmp.path(),
        &format!(
            "host = \"{host}\"\npause_during_backup = [\"{0}\"]\nstop_during_restore = [\"{0}\"]\nstop_timeout_secs = 5",
            app.name
        ),
    );
    std::thread::sleep(Duration::from_millis(200));
    let (code, out, err) = amber(tmp.path(), &["backup"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(&format!("docker: paused {}\n", app.name)),
        "{err}"
    );
    assert!(
        err.contains(&format!("docker: unpaused {} (paused ", app.name)),
        "{err}"
    );
    app.assert_alive();

    let (code, out, err) = amber(tmp.path(), &["restore", "latest", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "docker: stop before and start after: {}",
            app.name
        )),
        "{out}"
    );
    assert!(
        err.contains(&format!("docker: stopped {} for the restore", app.name)),
        "{err}"
    );
    assert!(
        err.contains(&format!("docker: started {} again", app.name)),
        "{err}"
    );
    app.assert_alive();
}

#[test]
fn sigterm_during_a_backup_or_a_restore_leaves_every_container_running() {
    let Some((host, image)) = engine() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let app = App::start(&host, &image, &name("term"), &tmp.path().join("uploads"));
    write_config(
        tmp.path(),
        &format!(
            "host = \"{host}\"\npause_during_backup = [\"{0}\"]\nstop_during_restore = [\"{0}\"]\nstop_timeout_secs = 5",
            app.name
        ),
    );
    // A quick backup to restore later, then a big sparse file: the next snapshot of the
    // directory reads for many seconds, the app paused all along.
    let (code, out, err) = amber(tmp.path(), &["backup"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let big = std::fs::File::create(tmp.path().join("uploads/big.bin")).unwrap();
    big.set_len(64 << 30).unwrap();
    drop(big);

    let run_and_term = |args: &[&str], wait_for: &str| -> (i32, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_amber-dr"))
            .current_dir(tmp.path())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("amber-dr ended before `{wait_for}`: {seen}");
            }
            seen.push_str(&line);
            if line.starts_with(wait_for) {
                break;
            }
            assert!(Instant::now() < deadline, "no `{wait_for}` in {seen}");
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished too early: {seen}"
        );
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        seen.push_str(&rest);
        (child.wait().unwrap().code().unwrap_or(-1), seen)
    };

    // Backup: SIGTERM while the app is paused.
    let (code, err) = run_and_term(&["backup"], "docker: paused");
    assert_eq!(code, 130, "{err}");
    assert!(
        err.contains(&format!("docker: unpaused {}", app.name)),
        "{err}"
    );
    assert!(err.contains("interrupted"), "{err}");
    app.assert_alive();

    // Restore: SIGTERM during the safety backup, the app stopped.
    let (code, err) = run_and_term(
        &["restore", "latest", "--yes"],
        &format!("docker: stopped {}", app.name),
    );
    assert_eq!(code, 130, "{err}");
    assert!(
        err.contains(&format!("docker: started {} again", app.name)),
        "{err}"
    );
    app.assert_alive();
    // The lock was released: a new command runs.
    std::fs::remove_file(tmp.path().join("uploads/big.bin")).unwrap();
    let (code, out, err) = amber(tmp.path(), &["backup"]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn bad_docker_settings_are_clear_errors() {
    let Some((host, image)) = engine() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let app = App::start(&host, &image, &name("bad"), &tmp.path().join("uploads"));

    // A socket that does not exist: named in the error.
    write_config(
        tmp.path(),
        "host = \"unix:///nonexistent/amber/docker.sock\"\npause_during_backup = [\"amber-api\"]",
    );
    let (code, _, err) = amber(tmp.path(), &["backup"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("/nonexistent/amber/docker.sock does not exist"),
        "{err}"
    );

    // An unknown container: nothing paused, the backup refused.
    let missing = name("missing");
    write_config(
        tmp.path(),
        &format!(
            "host = \"{host}\"\npause_during_backup = [\"{}\", \"{missing}\"]",
            app.name
        ),
    );
    let (code, _, err) = amber(tmp.path(), &["backup"]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("no container named `{missing}`")),
        "{err}"
    );
    assert!(!err.contains("docker: paused"), "{err}");
    app.assert_alive();

    // doctor says so too, naming the container.
    let (code, out, err) = amber(tmp.path(), &["doctor"]);
    assert_ne!(code, 0);
    assert!(
        out.contains("docker: PROBLEM") && out.contains(&missing),
        "{out}\n{err}"
    );
    write_config(
        tmp.path(),
        &format!(
            "host = \"{host}\"\npause_during_backup = [\"{}\"]",
            app.name
        ),
    );
    let (code, out, err) = amber(tmp.path(), &["doctor"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("every container in [docker] exists"), "{out}");

    // An unknown key: a usage error naming the section.
    write_config(tmp.path(), "pause_during_bakcup = [\"x\"]");
    let (code, _, err) = amber(tmp.path(), &["backup"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("[docker]") && err.contains("pause_during_bakcup"),
        "{err}"
    );
}

/// A busybox container standing for MinIO: it serves MinIO's endpoint (host network, busybox
/// httpd on `port`) and writes into its data directory like a server would; removed on drop.
struct FakeMinio {
    host: String,
    name: String,
    port: u16,
}

impl FakeMinio {
    /// A stand-in for MinIO on the host network: busybox httpd on a port it binds itself (port
    /// 0, chosen by the kernel at the first start) and reports in `state/port`; a restart of
    /// the container binds that port again.
    fn start(host: &str, image: &str, name: &str, data: &Path, state: &Path) -> FakeMinio {
        std::fs::create_dir_all(data).unwrap();
        std::fs::create_dir_all(state).unwrap();
        let _ = Command::new("docker")
            .args(["-H", host, "rm", "-f", name])
            .output();
        // The port httpd bound: its socket's inode (/proc/PID/fd) looked up in /proc/net/tcp
        // (the host's, on the host network), hex to decimal.
        let script = r#"trap "exit 0" TERM
p=$(cat /state/port 2>/dev/null || echo 0)
httpd -f -p 127.0.0.1:$p &
h=$!
while [ ! -s /state/port ]; do
  i=$(ls -l /proc/$h/fd 2>/dev/null | sed -n "s/.*socket:\[\([0-9]*\)\].*/\1/p" | head -n 1)
  x=$(awk -v i="$i" '$10 == i { split($2, a, ":"); print a[2] }' /proc/net/tcp)
  if [ -n "$i" ] && [ -n "$x" ]; then
    printf "%d\n" 0x$x > /state/port.new && mv /state/port.new /state/port
  else
    sleep 0.05
  fi
done
while true; do date > /data/.heartbeat; sleep 0.05; done"#;
        docker(
            host,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "host",
                "-v",
                &format!("{}:/data", data.display()),
                "-v",
                &format!("{}:/state", state.display()),
                image,
                "sh",
                "-c",
                script,
            ],
        );
        let mut m = FakeMinio {
            host: host.into(),
            name: name.into(),
            port: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reported = std::fs::read_to_string(state.join("port")).unwrap_or_default();
            if let Ok(port) = reported.trim().parse::<u16>() {
                m.port = port;
                if m.answers() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "{} does not answer", m.name);
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }
    fn answers(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }
    fn status(&self) -> String {
        docker(
            &self.host,
            &["inspect", "-f", "{{.State.Status}}", &self.name],
        )
    }
}

impl Drop for FakeMinio {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["-H", &self.host, "rm", "-f", &self.name])
            .output();
    }
}

/// Every file under `root` except the container's heartbeat: relative path → content.
fn files_of(root: &Path) -> Vec<(String, Vec<u8>)> {
    let out = Command::new("find")
        .arg(".")
        .arg("-type")
        .arg("f")
        .current_dir(root)
        .output()
        .unwrap();
    let mut v: Vec<(String, Vec<u8>)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.ends_with(".heartbeat"))
        .map(|l| (l.to_string(), std::fs::read(root.join(l)).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn runbook_minio_volume_is_extracted_while_its_container_is_stopped() {
    let Some((host, image)) = engine() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // The runbook's volume archive, made from the volume's parent (`_data/...`).
    let volume = tmp.path().join("volumes/amber_minio_data/_data");
    std::fs::create_dir_all(volume.join("documents/a")).unwrap();
    std::fs::write(volume.join("documents/a/report.pdf"), vec![7u8; 200_000]).unwrap();
    std::fs::write(volume.join("documents/readme"), "from the runbook").unwrap();
    let runbook = tmp.path().join("backups/20240101_000000");
    std::fs::create_dir_all(&runbook).unwrap();
    let st = Command::new("tar")
        .arg("czf")
        .arg(runbook.join("minio_data.tar.gz"))
        .arg("-C")
        .arg(volume.parent().unwrap())
        .arg("_data")
        .status()
        .unwrap();
    assert!(st.success());

    let data = tmp.path().join("minio-data");
    let minio = FakeMinio::start(
        &host,
        &image,
        &name("minio"),
        &data,
        &tmp.path().join("minio-state"),
    );
    let port = minio.port;
    std::fs::create_dir_all(data.join("today")).unwrap();
    std::fs::write(data.join("today/obj"), "today's object").unwrap();
    let components = format!(
        "[repository]\nurl = \"./repo\"\n\n[components.minio]\nkind = \"minio\"\nendpoint = \"http://127.0.0.1:{port}\"\naccess_key = \"minioadmin\"\nsecret_key = \"unused\"\nlegacy_data_dir = \"./minio-data\"\n"
    );
    let args = [
        "restore",
        "backups/20240101_000000",
        "--only",
        "minio",
        "--yes",
    ];

    // Not listed under [docker]: MinIO keeps running, the restore is refused, nothing changed.
    std::fs::write(tmp.path().join("amber-dr.toml"), &components).unwrap();
    let before = files_of(&data);
    let (code, out, err) = amber(tmp.path(), &args);
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("still answers") && err.contains("stop_during_runbook_restore"),
        "{out}\n{err}"
    );
    assert_eq!(files_of(&data), before);
    assert!(
        !tmp.path().join("repo").exists()
            || std::fs::read_dir(tmp.path().join("repo"))
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().starts_with("20")),
        "no safety backup"
    );

    // Listed under stop_during_runbook_restore (MinIO must run for restores of amber-dr
    // backups): stopped before the safety backup, the archive extracted, started again.
    std::fs::write(
        tmp.path().join("amber-dr.toml"),
        format!(
            "{components}\n[docker]\nhost = \"{host}\"\nstop_during_runbook_restore = [\"{}\"]\nstop_timeout_secs = 5\n",
            minio.name
        ),
    )
    .unwrap();
    let (code, out, err) = amber(tmp.path(), &args);
    assert_eq!(code, 0, "{out}\n{err}");
    let stopped = err
        .find(&format!("docker: stopped {} for the restore", minio.name))
        .unwrap_or_else(|| panic!("{err}"));
    let started = err
        .find(&format!("docker: started {} again", minio.name))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(stopped < started, "{err}");
    assert_eq!(files_of(&data), files_of(&volume), "{out}\n{err}");
    assert_eq!(minio.status(), "running");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !minio.answers() {
        assert!(
            Instant::now() < deadline,
            "MinIO's stand-in is not serving again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The safety backup is the data directory as it was, taken while the container was
    // stopped (its endpoint did not answer).
    let safety: Vec<_> = std::fs::read_dir(tmp.path().join("repo"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("minio/files.tar.zst").is_file())
        .collect();
    assert_eq!(safety.len(), 1, "{out}\n{err}");
}

/// A busybox container on the host network that sees the host's PostgreSQL client tools at a
/// path that does not exist on the host (a tool run on the host by mistake fails); removed on
/// drop.
struct PgTools {
    host: String,
    name: String,
}

const PG_BIN_IN_CONTAINER: &str = "/opt/amber-pgbin";

impl PgTools {
    fn start(host: &str, image: &str, bindir: &str) -> PgTools {
        let name = name("pgtools");
        let _ = Command::new("docker")
            .args(["-H", host, "rm", "-f", &name])
            .output();
        let guard = PgTools {
            host: host.into(),
            name: name.clone(),
        };
        docker(
            host,
            &[
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                "host",
                "-v",
                &format!("{bindir}:{PG_BIN_IN_CONTAINER}:ro"),
                "-v",
                "/usr/lib:/usr/lib:ro",
                "-v",
                "/usr/lib:/lib:ro",
                "-v",
                "/usr/lib64:/lib64:ro",
                "-v",
                "/etc/ld.so.cache:/etc/ld.so.cache:ro",
                image,
                "sleep",
                "100000",
            ],
        );
        assert!(!Path::new(PG_BIN_IN_CONTAINER).exists());
        guard
    }
}

impl Drop for PgTools {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["-H", &self.host, "rm", "-f", &self.name])
            .output();
    }
}

/// The binary registers the Docker tool runner with core (the Postgres driver never names
/// Docker): with `via_container`, pg_dump, pg_restore and psql run in the container for a
/// backup, a full verify and a restore.
#[test]
fn postgres_via_container_through_the_binary() {
    let Some((host, image)) = engine() else {
        return;
    };
    let (Some(pg_host), Some(port), Some(password), Some(bindir)) = (
        env("AMBER_DR_PG_HOST"),
        env("AMBER_DR_PG_PORT"),
        env("AMBER_DR_PG_PASSWORD"),
        env("AMBER_DR_PG_BINDIR"),
    ) else {
        if env("AMBER_DR_REQUIRE_SERVICES").as_deref() == Some("1") {
            panic!("Postgres not available and AMBER_DR_REQUIRE_SERVICES=1");
        }
        eprintln!("SKIPPED: Postgres not available (scripts/stack.sh up)");
        return;
    };
    let psql = |db: &str, sql: &str| {
        let out = Command::new(format!("{bindir}/psql"))
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGHOST", &pg_host)
            .env("PGPORT", &port)
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", &password)
            .env("PGDATABASE", db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let db = format!("amber_cli_via_{}", std::process::id());
    psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
    psql("postgres", &format!("CREATE DATABASE {db}"));
    psql(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g",
    );
    let tools = PgTools::start(&host, &image, &bindir);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("amber-dr.toml"),
        format!(
            "[repository]\nurl = \"./repo\"\n\n[components.pg]\nkind = \"postgres\"\nurl = \"postgres://postgres:{password}@{pg_host}:{port}/postgres\"\ndatabases = [\"{db}\"]\nbin_dir = \"{PG_BIN_IN_CONTAINER}\"\nvia_container = \"{}\"\ndocker_host = \"{host}\"\n",
            tools.name
        ),
    )
    .unwrap();
    let (code, out, err) = amber(tmp.path(), &["backup"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = amber(tmp.path(), &["verify", "latest"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("dump readable by pg_restore"), "{out}\n{err}");
    psql(&db, "DELETE FROM t WHERE id > 100");
    let (code, out, err) = amber(tmp.path(), &["restore", "latest", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(psql(&db, "SELECT count(*) FROM t"), "500");
    psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
}
