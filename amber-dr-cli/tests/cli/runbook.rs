//! The runbook's scripts and its backup directories, restored by `amber-dr restore DIR`.

use super::*;

#[test]
fn runbook_scripts_wrap_amber_dr_and_restore_asks_for_y() {
    let site = Site::new();
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let run = |script: &str, args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = Command::new(scripts.join(script))
            .args(args)
            .current_dir(site.dir.path())
            .env("AMBER_DR_BIN", BIN)
            .env("AMBER_DR_CONFIG", site.path("amber-dr.toml"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run script");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        Run::from(out, args)
    };
    let r = run("backup.sh", &[], "");
    assert_eq!(r.code, 0, "{}", r.both());
    let id = r.stdout.lines().last().expect("id").to_string();
    assert!(
        site.repo().join(&id).join("manifest.json").exists(),
        "{}",
        r.both()
    );
    assert!(r.stderr.contains("verified"), "{}", r.both());

    let before = tree(&site.uploads());
    fs::write(
        site.uploads().join("readme.txt"),
        "changed after the backup\n",
    )
    .expect("write");
    let changed = tree(&site.uploads());
    // Anything but `y`: nothing happens.
    let r = run("restore.sh", &[&id], "n\n");
    assert_eq!(r.code, 1, "{}", r.both());
    assert!(r.stderr.contains("Type y to continue"), "{}", r.both());
    assert!(
        r.stdout.contains("restore plan"),
        "the plan is shown first: {}",
        r.both()
    );
    assert_eq!(tree(&site.uploads()), changed);
    // `y`: restored, by id and by the backup's directory alike.
    let r = run("restore.sh", &["latest"], "y\n");
    assert_eq!(r.code, 0, "{}", r.both());
    assert_eq!(tree(&site.uploads()), before);
    fs::write(site.uploads().join("readme.txt"), "changed again\n").expect("write");
    let dir = site.repo().join(&id);
    let r = run(
        "restore.sh",
        &[dir.to_str().expect("utf-8"), "--only", "uploads"],
        "y\n",
    );
    assert_eq!(r.code, 0, "{}", r.both());
    assert_eq!(tree(&site.uploads()), before);
}

fn stack_env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// The runbook's Neo4j side, through the official Python driver of the stack (independent of
/// amber-dr): seed, export as the runbook does (`apoc.export.cypher.all`, cypher-shell format),
/// describe, wreck.
const NEO4J_TOOL: &str = r#"
import sys
from neo4j import GraphDatabase
uri, user, pw, cmd = sys.argv[1:5]
d = GraphDatabase.driver(uri, auth=(user, pw))
with d.session() as s:
    if cmd == "seed":
        s.run("MATCH (n) DETACH DELETE n").consume()
        s.run("UNWIND range(1, 25) AS i CREATE (:RunbookDoc {id: i, key: 'doc-' + i})-[:IN {w: i}]->(:RunbookFolder {n: i})").consume()
    elif cmd == "export":
        rows = s.run("CALL apoc.export.cypher.all(null, {stream: true, format: 'cypher-shell'}) YIELD cypherStatements RETURN cypherStatements AS s")
        sys.stdout.write("".join(r["s"] for r in rows))
    elif cmd == "state":
        n = s.run("MATCH (n) RETURN count(n) AS c").single()["c"]
        r = s.run("MATCH ()-[r]->() RETURN count(r) AS c, sum(r.w) AS w").single()
        k = s.run("MATCH (d:RunbookDoc) RETURN collect(d.key) AS k").single()["k"]
        print(n, r["c"], r["w"], sorted(k))
    elif cmd == "wreck":
        s.run("MATCH (n) DETACH DELETE n").consume()
        s.run("CREATE (:Wreck {at: 1})").consume()
d.close()
"#;

fn neo4j_tool(args: &[&str]) -> String {
    let py = stack_env("AMBER_DR_NEO4J_PYTHON").expect("AMBER_DR_NEO4J_PYTHON");
    let out = Command::new(py)
        .arg("-c")
        .arg(NEO4J_TOOL)
        .arg(stack_env("AMBER_DR_NEO4J_URI").expect("uri"))
        .arg(stack_env("AMBER_DR_NEO4J_USER").unwrap_or_else(|| "neo4j".into()))
        .arg(stack_env("AMBER_DR_NEO4J_PASSWORD").expect("password"))
        .args(args)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "neo4j tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pg_tool(tool: &str, args: &[&str]) -> Output {
    let bindir = stack_env("AMBER_DR_PG_BINDIR").expect("AMBER_DR_PG_BINDIR");
    let out = Command::new(format!("{bindir}/{tool}"))
        .args(args)
        .env("PGHOST", stack_env("AMBER_DR_PG_HOST").expect("host"))
        .env("PGPORT", stack_env("AMBER_DR_PG_PORT").expect("port"))
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", stack_env("AMBER_DR_PG_PASSWORD").expect("pw"))
        .output()
        .expect("postgres client");
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn psql(db: &str, sql: &str) -> String {
    let out = pg_tool(
        "psql",
        &[
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A runbook backup directory with all four parts, made with the runbook's commands
/// (`pg_dump > postgres.sql`, APOC's cypher export, `tar czf` of MinIO's volume and of the
/// uploads), restored whole by `amber-dr restore DIR` after every store was changed.
#[test]
fn runbook_directory_with_all_four_parts_restores() {
    let have = [
        "AMBER_DR_PG_BINDIR",
        "AMBER_DR_PG_PASSWORD",
        "AMBER_DR_NEO4J_URI",
    ]
    .iter()
    .all(|k| stack_env(k).is_some())
        && stack_env("AMBER_DR_NEO4J_PYTHON").is_some();
    if !have {
        if stack_env("AMBER_DR_REQUIRE_SERVICES").as_deref() == Some("1") {
            panic!("Postgres and Neo4j not available and AMBER_DR_REQUIRE_SERVICES=1: run scripts/stack.sh up");
        }
        eprintln!("SKIPPED: Postgres and Neo4j not available (scripts/stack.sh up)");
        return;
    }
    let site = Site::new();
    let db = format!("amber_cli_runbook_{}", std::process::id());
    psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
    psql("postgres", &format!("CREATE DATABASE {db}"));
    psql(
        &db,
        "CREATE TABLE docs (id serial PRIMARY KEY, key text NOT NULL, body text); \
         INSERT INTO docs (key, body) SELECT 'minio/' || i, repeat('x', i) FROM generate_series(1, 300) i",
    );
    let pg_state = || {
        psql(
            &db,
            "SELECT count(*) || ' ' || md5(string_agg(d::text, '|' ORDER BY id)) FROM docs d",
        )
    };
    neo4j_tool(&["seed"]);
    let (pg_then, neo_then) = (pg_state(), neo4j_tool(&["state"]));
    assert!(neo_then.starts_with("50 25 325"), "{neo_then}");
    // MinIO's data volume as its single-drive mode keeps it: a directory per bucket.
    let volume = site.path("volumes/amber_minio_data/_data");
    fs::create_dir_all(volume.join(".minio.sys/config")).expect("mkdir");
    fs::create_dir_all(volume.join("documents/2024/01")).expect("mkdir");
    fs::write(volume.join(".minio.sys/config/config.json"), "{}").expect("write");
    fs::write(
        volume.join("documents/2024/01/a.pdf"),
        pseudo_random(3, 300_000),
    )
    .expect("write");
    fs::write(volume.join("documents/readme"), "hello minio").expect("write");
    let minio_then = tree(&volume);
    let uploads_then = tree(&site.uploads());

    // The runbook's backup.sh.
    let runbook = site.path("backups/20240301_020000");
    fs::create_dir_all(&runbook).expect("mkdir");
    let dump = pg_tool("pg_dump", &[&db]);
    fs::write(runbook.join("postgres.sql"), &dump.stdout).expect("write");
    fs::write(runbook.join("neo4j.cypher"), neo4j_tool(&["export"])).expect("write");
    for (archive, dir) in [
        ("minio_data.tar.gz", volume.clone()),
        ("uploads.tar.gz", site.uploads()),
    ] {
        let st = Command::new("tar")
            .arg("czf")
            .arg(runbook.join(archive))
            .arg("-C")
            .arg(&dir)
            .arg(".")
            .status()
            .expect("tar");
        assert!(st.success());
    }

    // Today: every store moved on. MinIO is stopped (nothing listens on its endpoint).
    let live_minio = site.path("minio-data");
    fs::create_dir_all(live_minio.join("today")).expect("mkdir");
    fs::write(live_minio.join("today/new.txt"), "new").expect("write");
    psql(
        &db,
        "DELETE FROM docs WHERE id % 2 = 0; INSERT INTO docs (key) VALUES ('late')",
    );
    neo4j_tool(&["wreck"]);
    fs::write(site.uploads().join("readme.txt"), "changed").expect("write");
    // Nothing answers there (a bound socket that does not listen: no other process takes it).
    let closed = amber_dr_core::testkit::closed_port();
    let port = closed.port;
    let mut config = fs::read_to_string(site.path("amber-dr.toml")).expect("config");
    config.push_str(&format!(
        r#"
[components.postgres]
kind = "postgres"
url = "postgres://postgres:${{AMBER_DR_PG_PASSWORD}}@{host}:{pgport}/{db}"

[components.neo4j]
kind = "neo4j"
uri = "{neo}"
user = "neo4j"
password = "${{AMBER_DR_NEO4J_PASSWORD}}"

[components.minio]
kind = "minio"
endpoint = "http://127.0.0.1:{port}"
access_key = "minioadmin"
secret_key = "not-used"
legacy_data_dir = "./minio-data"
"#,
        host = stack_env("AMBER_DR_PG_HOST").expect("host"),
        pgport = stack_env("AMBER_DR_PG_PORT").expect("port"),
        neo = stack_env("AMBER_DR_NEO4J_URI").expect("uri"),
    ));
    fs::write(site.path("amber-dr.toml"), config).expect("config");

    let r = site.expect(0, &["restore", "backups/20240301_020000", "--dry-run"]);
    for part in ["postgres", "neo4j", "minio", "uploads"] {
        assert!(
            r.stdout.contains(&format!("{part} (")),
            "{part}: {}",
            r.both()
        );
    }
    let r = site.expect(0, &["restore", "backups/20240301_020000", "--yes"]);
    assert!(r.stdout.contains("safety backup"), "{}", r.both());
    assert_eq!(pg_state(), pg_then, "{}", r.both());
    assert_eq!(neo4j_tool(&["state"]), neo_then, "{}", r.both());
    assert_eq!(tree(&live_minio), minio_then, "{}", r.both());
    assert_eq!(tree(&site.uploads()), uploads_then, "{}", r.both());
    // The safety backup holds all four components; MinIO's is its data directory.
    let safety = list_json(&site)
        .into_iter()
        .find(|e| e["purpose"] == "safety")
        .and_then(|e| e["id"].as_str().map(str::to_string))
        .expect("a safety backup");
    for c in ["postgres", "neo4j", "uploads"] {
        assert!(site.repo().join(&safety).join(c).is_dir(), "{c}");
    }
    assert!(site
        .repo()
        .join(&safety)
        .join("minio/files.tar.zst")
        .is_file());
    psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
}
