//! End to end through the real binary, against the local stack: the repository in S3
//! (s3s-fs), Postgres and an uploads directory backed up together, destroyed, restored, and
//! compared with psql and a directory listing — tools outside amber-dr.
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{amber, env, missing};

struct Stack {
    s3_endpoint: String,
    bucket: String,
    pg_host: String,
    pg_port: String,
    pg_bindir: String,
}

impl Stack {
    fn get() -> Option<Stack> {
        let s = Stack {
            s3_endpoint: env("AMBER_DR_S3_ENDPOINT")?,
            bucket: env("AMBER_DR_S3_BUCKET")?,
            pg_host: env("AMBER_DR_PG_HOST")?,
            pg_port: env("AMBER_DR_PG_PORT")?,
            pg_bindir: env("AMBER_DR_PG_BINDIR")?,
        };
        env("AMBER_DR_S3_ACCESS_KEY")?;
        env("AMBER_DR_PG_PASSWORD")?;
        Some(s)
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(format!("{}/psql", self.pg_bindir))
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGHOST", &self.pg_host)
            .env("PGPORT", &self.pg_port)
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", env("AMBER_DR_PG_PASSWORD").unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = amber(dir, args);
    assert_eq!(code, 0, "amber-dr {args:?}\nstdout: {out}\nstderr: {err}");
    out
}

fn listing(dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("find . -printf '%y %m %T@ %s %l %P\\n' | LC_ALL=C sort && find . -type f -exec sha256sum {} + | LC_ALL=C sort -k2")
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const DB: &str = "amber_cli_e2e";

fn pg_state(s: &Stack) -> String {
    s.psql(
        DB,
        "SELECT 'docs ' || count(*) || ' ' || md5(string_agg(d::text, '|' ORDER BY d::text)) FROM docs d \
         UNION ALL SELECT 'seq ' || last_value FROM docs_id_seq",
    )
}

#[test]
fn s3_repository_postgres_and_uploads_round_trip_through_the_cli() {
    let Some(s) = Stack::get() else {
        missing("the local stack (S3 and Postgres env from scripts/stack.sh)");
        return;
    };
    let site = tempfile::tempdir().unwrap();
    let dir = site.path();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::fs::write(
        dir.join("amber-dr.toml"),
        format!(
            r#"[repository]
url = "s3://{bucket}/cli-e2e-{nanos}"
endpoint = "{endpoint}"
access_key_id = "${{AMBER_DR_S3_ACCESS_KEY}}"
secret_access_key = "${{AMBER_DR_S3_SECRET_KEY}}"

[components.postgres]
kind = "postgres"
url = "postgres://postgres:${{AMBER_DR_PG_PASSWORD}}@{host}:{port}/postgres"
databases = ["{DB}"]

[components.uploads]
kind = "files"
path = "./uploads"
"#,
            bucket = s.bucket,
            endpoint = s.s3_endpoint,
            host = s.pg_host,
            port = s.pg_port,
        ),
    )
    .unwrap();

    // Data: documents in Postgres pointing at files in uploads.
    s.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"),
    );
    s.psql("postgres", &format!("CREATE DATABASE {DB}"));
    s.psql(
        DB,
        "CREATE TABLE docs (id serial PRIMARY KEY, path text NOT NULL, meta jsonb); \
         INSERT INTO docs (path, meta) SELECT 'tenant-' || i % 3 || '/doc-' || i || '.txt', jsonb_build_object('i', i) FROM generate_series(1, 300) i",
    );
    let uploads = dir.join("uploads");
    for i in 1..=300 {
        let p = uploads.join(format!("tenant-{}/doc-{i}.txt", i % 3));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("document {i}\n").repeat(i)).unwrap();
    }
    let (pg_before, files_before) = (pg_state(&s), listing(&uploads));

    ok(dir, &["doctor"]);
    let id = ok(dir, &["backup", "--tag", "e2e"])
        .lines()
        .last()
        .unwrap()
        .to_string();
    let list = ok(dir, &["--json", "list"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert!(list.contains(&id) && list.contains("complete"), "{v}");
    ok(dir, &["verify", &id]);

    // Disaster on both stores.
    s.psql(DB, "DELETE FROM docs WHERE id % 2 = 0; UPDATE docs SET meta = '{}'; SELECT nextval('docs_id_seq')");
    std::fs::remove_dir_all(uploads.join("tenant-1")).unwrap();
    std::fs::write(uploads.join("tenant-2/doc-2.txt"), "overwritten").unwrap();
    assert_ne!(pg_state(&s), pg_before);
    assert_ne!(listing(&uploads), files_before);

    let out = ok(dir, &["restore", &id, "--yes"]);
    assert!(out.contains("safety backup"), "{out}");
    assert_eq!(pg_state(&s), pg_before, "Postgres restored");
    assert_eq!(listing(&uploads), files_before, "uploads restored");
    // Every restored document's file is there.
    for path in s.psql(DB, "SELECT path FROM docs").lines() {
        assert!(uploads.join(path).is_file(), "{path} missing");
    }

    // Partial restore: only Postgres goes back to the backup; uploads keep newer data.
    s.psql(DB, "TRUNCATE docs");
    std::fs::write(uploads.join("new.txt"), "newer data").unwrap();
    let files_newer = listing(&uploads);
    ok(
        dir,
        &[
            "restore",
            &id,
            "--only",
            "postgres",
            "--yes",
            "--no-safety-backup",
        ],
    );
    assert_eq!(pg_state(&s), pg_before);
    assert_eq!(
        listing(&uploads),
        files_newer,
        "uploads untouched by --only postgres"
    );

    // One database by name, under another name (a drill).
    s.psql(
        "postgres",
        "DROP DATABASE IF EXISTS amber_cli_drill WITH (FORCE)",
    );
    ok(
        dir,
        &[
            "restore",
            &id,
            "--only",
            &format!("postgres/{DB}"),
            "--target",
            "postgres=amber_cli_drill",
            "--yes",
            "--no-safety-backup",
        ],
    );
    assert_eq!(
        s.psql("amber_cli_drill", "SELECT count(*) FROM docs")
            .trim(),
        "300"
    );
    s.psql(
        "postgres",
        "DROP DATABASE IF EXISTS amber_cli_drill WITH (FORCE)",
    );

    // `--only uploads/x`: the files driver has no parts and says so (usage error).
    let (code, _, err) = amber(
        dir,
        &[
            "restore",
            &id,
            "--only",
            "uploads/x",
            "--yes",
            "--no-safety-backup",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("the files driver of `uploads` has no parts to restore separately"),
        "{err}"
    );
    ok(dir, &["verify", "latest", "--quick"]);
}
