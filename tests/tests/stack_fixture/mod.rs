//! The whole-stack fixture shared by the stack tests (`stack.rs`): every store of the local
//! stack loaded with one data set whose rows point into every other store, each store
//! described by an independent tool, and the cross-store references checked without amber-dr.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use amber_dr_core::references::{ReferenceCheck, ReferenceSpec};
use amber_dr_core::{BackupOptions, Component, Manifest, Runner};
use amber_dr_files::{Files, FilesConfig};
use amber_dr_milvus::{Milvus, MilvusConfig};
use amber_dr_neo4j::Neo4j;
use amber_dr_postgres::{Postgres, PostgresConfig};
use neo4rs::query;
use serde_json::Value;

use crate::{files_common, minio_common, mv_common, neo_common, pg_common};

/// boto3, outside amber-dr: the names of every bucket.
const S3_BUCKETS_PY: &str = r#"
import sys
import boto3
from botocore.config import Config
endpoint, access, secret = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
for b in s3.list_buckets()["Buckets"]:
    print(b["Name"])
"#;

/// The Postgres database of the drill.
pub(crate) const DB: &str = "amber_e2e_stack";
/// Milvus collections `<MV>_a` (auto id: the one documents point at) and `<MV>_b`
/// (see amber-dr-milvus/tests/common/fixture.py).
pub(crate) const MV: &str = "amber_e2e_stack";
/// The Neo4j server (slot of the two in the stack) the drill owns; the second, so that
/// `scripts/demo.sh` (on the first) can run beside the suite.
pub(crate) const NEO: usize = 1;

/// boto3, outside amber-dr: `put` or `delete` the given keys of a bucket.
pub(crate) const S3_KEYS_PY: &str = r#"
import sys
import boto3
from botocore.config import Config
endpoint, access, secret, cmd, bucket, *keys = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"},
                                request_checksum_calculation="when_required",
                                response_checksum_validation="when_required"))
for k in keys:
    if cmd == "put":
        s3.put_object(Bucket=bucket, Key=k, Body=("document stored at " + k + "\n").encode(),
                      ContentType="application/pdf", Metadata={"source": "amber"})
    elif cmd == "delete":
        s3.delete_object(Bucket=bucket, Key=k)
    else:
        sys.exit("unknown command " + cmd)
"#;

/// Handles on every store of the stack, each reached by its own independent tool.
#[derive(Clone)]
pub(crate) struct Stack {
    pub(crate) pg: pg_common::Pg,
    pub(crate) neo: neo_common::Neo,
    s3: minio_common::S3,
    pub(crate) mv: mv_common::Mv,
    pub(crate) uploads: PathBuf,
    /// The documents bucket (awkward objects plus one object per `documents.minio_key`).
    pub(crate) docs: String,
    /// A second bucket of the same component.
    pub(crate) other: String,
}

/// Every store described by its independent tool.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct State {
    pub(crate) postgres: String,
    pub(crate) neo4j: String,
    pub(crate) buckets: String,
    pub(crate) milvus: String,
    pub(crate) uploads: String,
}

/// Cross-store references that do not resolve, by kind, and how many references were checked.
#[derive(Debug, Default)]
pub(crate) struct Dangling {
    pub(crate) checked: usize,
    pub(crate) minio_keys: Vec<String>,
    pub(crate) milvus_ids: Vec<i64>,
    pub(crate) neo4j_doc_ids: Vec<i64>,
    pub(crate) upload_paths: Vec<String>,
}

impl Dangling {
    pub(crate) fn is_empty(&self) -> bool {
        self.minio_keys.is_empty()
            && self.milvus_ids.is_empty()
            && self.neo4j_doc_ids.is_empty()
            && self.upload_paths.is_empty()
    }
}

/// One `app.documents` row as the application reads it.
pub(crate) struct Doc {
    pub(crate) id: i64,
    pub(crate) minio_key: String,
    pub(crate) milvus_id: Option<i64>,
    pub(crate) upload_path: Option<String>,
}

impl Stack {
    /// Every store, or `None` (skip; a panic under AMBER_DR_REQUIRE_SERVICES=1).
    pub(crate) async fn from_env(uploads: PathBuf) -> Option<Stack> {
        let pg = pg_common::Pg::from_env()?;
        let neo = neo_common::Neo::from_env().await?;
        let s3 = minio_common::S3::s3s()?;
        let mv = mv_common::Mv::from_env()?;
        Some(Stack {
            pg,
            neo,
            s3,
            mv,
            uploads,
            docs: minio_common::unique("e2e-docs"),
            other: minio_common::unique("e2e-other"),
        })
    }

    /// The components as an operator configures them: Milvus restricted to the drill's
    /// collections (the stack's Milvus is shared with other suites), its bucket and etcd
    /// prefix not components.
    pub(crate) fn components(&self) -> Vec<Arc<dyn Component>> {
        self.components_with(&["a", "b"])
    }

    /// The components, Milvus covering the drill's collections `<MV>_<suffix>`.
    pub(crate) fn components_with(&self, milvus: &[&str]) -> Vec<Arc<dyn Component>> {
        let mv = MilvusConfig::new(&self.mv.endpoint)
            .collections(milvus.iter().map(|s| format!("{MV}_{s}")));
        vec![
            Arc::new(
                Postgres::new(
                    "postgres",
                    PostgresConfig::new(self.pg.url("postgres")).databases([DB]),
                )
                .unwrap(),
            ),
            Arc::new(Neo4j::new("neo4j", self.neo.config(NEO)).unwrap()),
            Arc::new(self.s3.component("minio", &[&self.docs, &self.other])),
            Arc::new(Milvus::new("milvus", mv).unwrap()),
            Arc::new(Files::new("uploads", FilesConfig::new(&self.uploads))),
        ]
    }

    /// The demo's `[[references]]`: documents → objects, Milvus ids, upload files; graph →
    /// documents.
    pub(crate) fn references(&self) -> Vec<ReferenceSpec> {
        let toml = format!(
            r#"
[[references]]
name = "document objects"
from = {{ component = "postgres", database = "{DB}", query = "SELECT '{bucket}/' || minio_key FROM app.documents" }}
to = {{ component = "minio" }}
[[references]]
name = "document embeddings"
from = {{ component = "postgres", database = "{DB}", query = "SELECT milvus_id FROM app.documents WHERE milvus_id IS NOT NULL" }}
to = {{ component = "milvus", collection = "default.{MV}_a" }}
[[references]]
name = "document files"
from = {{ component = "postgres", database = "{DB}", query = "SELECT upload_path FROM app.documents" }}
to = {{ component = "uploads" }}
[[references]]
name = "graph documents"
from = {{ component = "neo4j", query = "MATCH (n) WHERE n.pg_document_id IS NOT NULL RETURN n.pg_document_id" }}
to = {{ component = "postgres", database = "{DB}", query = "SELECT id FROM app.documents" }}
"#,
            bucket = self.docs
        );
        amber_dr_core::config::Config::parse(&toml, Path::new("stack.toml"), &|_| None)
            .unwrap()
            .references
    }

    /// Run blocking tool calls on a clone of the handles, beside other work (the tools mostly
    /// wait for their servers).
    pub(crate) fn bg<T: Send + 'static>(
        &self,
        f: impl FnOnce(Stack) -> T + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        let s = self.clone();
        tokio::task::spawn_blocking(move || f(s))
    }

    pub(crate) fn s3_keys(&self, cmd: &str, bucket: &str, keys: &[String]) {
        let out = Command::new(&self.s3.python)
            .args(["-c", S3_KEYS_PY, &self.s3.endpoint, &self.s3.access_key])
            .args([&self.s3.secret_key, cmd, bucket])
            .args(keys)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "boto3 {cmd} on {bucket} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The keys in a bucket, from the boto3 listing of the minio driver's test tool.
    pub(crate) fn bucket_keys(&self, bucket: &str) -> HashSet<String> {
        let prefix = format!("{bucket} ");
        self.s3
            .fingerprint(&[bucket])
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|rest| {
                // `"key" size sha256 headers`: the key is a JSON string.
                serde_json::Deserializer::from_str(rest)
                    .into_iter::<String>()
                    .next()
                    .unwrap()
                    .unwrap()
            })
            .collect()
    }

    /// The primary keys of the referenced Milvus collection, with pymilvus.
    pub(crate) fn milvus_ids(&self) -> HashSet<i64> {
        let out = self.mv.py(&format!(
            "import json\nc = Collection('{MV}_a'); c.load()\n\
             print(json.dumps([r['id'] for r in c.query('id > 0', output_fields=['id'], limit=16384)]))"
        ));
        serde_json::from_str(&out).unwrap()
    }

    pub(crate) fn documents(&self) -> Vec<Doc> {
        let json = self.pg.psql(
            DB,
            "SELECT coalesce(json_agg(json_build_array(id, minio_key, milvus_id, upload_path) ORDER BY id), '[]') FROM app.documents",
        );
        let rows: Vec<Value> = serde_json::from_str(json.trim()).unwrap();
        rows.iter()
            .map(|r| Doc {
                id: r[0].as_i64().unwrap(),
                minio_key: r[1].as_str().unwrap().to_string(),
                milvus_id: r[2].as_i64(),
                upload_path: r[3].as_str().map(str::to_string),
            })
            .collect()
    }

    /// The demo data set: each driver's awkward data, tied together by `app.documents`.
    pub(crate) async fn load(&self) {
        // Each driver's awkward data, the stores filled concurrently: Postgres (its 300
        // documents get an upload path), Milvus (`_a` has auto-generated primary keys), the two
        // buckets, the uploads tree and the Neo4j graph.
        let filling = [
            self.bg(|s| {
                s.pg.populate(DB);
                s.pg.psql(DB, "ALTER TABLE app.documents ADD COLUMN upload_path text");
            }),
            self.bg(|s| drop(s.mv.fixture("populate", MV))),
            self.bg(|s| drop(s.s3.tool(&["populate", &s.docs, &s.other]))),
            self.bg(|s| files_common::populate(&s.uploads, 42)),
        ];
        self.neo.populate(NEO).await;
        for h in filling {
            h.await.unwrap();
        }
        // Then the references: every document gets a Milvus id, an object, an upload file and
        // a graph node.
        let mut mids: Vec<i64> = self.milvus_ids().into_iter().collect();
        mids.sort_unstable();
        assert!(mids.len() > 100, "{mids:?}");
        let docs = self.documents();
        assert!(docs.len() >= mids.len(), "every Milvus id gets a document");
        let values: Vec<String> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| format!("({}, {})", d.id, mids[i % mids.len()]))
            .collect();
        self.pg.psql(
            DB,
            &format!(
                "UPDATE app.documents d SET milvus_id = v.mid, \
                 upload_path = 'documents/tenant-' || d.tenant_id || '/doc-' || d.id || '.txt' \
                 FROM (VALUES {}) v(id, mid) WHERE d.id = v.id",
                values.join(", ")
            ),
        );
        let keys: Vec<String> = docs.iter().map(|d| d.minio_key.clone()).collect();
        let objects = self.bg(move |s| s.s3_keys("put", &s.docs, &keys));
        for d in self.documents() {
            let p = self.uploads.join(d.upload_path.unwrap());
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("upload of document {}\n", d.id)).unwrap();
        }
        let ids: Vec<i64> = docs.iter().map(|d| d.id).collect();
        self.neo
            .run(
                NEO,
                query(
                    "MATCH (d:Doc) WHERE d.pg_document_id IS NOT NULL SET d.pg_document_id = $id",
                )
                .param("id", ids[0]),
            )
            .await;
        self.neo
            .run(
                NEO,
                query(
                    "UNWIND $ids AS id CREATE (d:Document {pg_document_id: id}) \
                     CREATE (e:Entity {name: 'entity ' + toString(id)})-[:MENTIONED_IN {score: 0.5}]->(d)",
                )
                .param("ids", ids),
            )
            .await;
        objects.await.unwrap();
    }

    /// Every store's description, the stores described concurrently (each tool mostly waits
    /// for its server).
    pub(crate) async fn state(&self) -> State {
        let postgres = self.bg(|s| s.pg.fingerprint(DB));
        let buckets = self.bg(|s| s.s3.fingerprint(&[&s.docs, &s.other]));
        let milvus = self.bg(|s| s.mv.fixture("fingerprint", MV));
        let uploads = self.bg(|s| files_common::fingerprint(&s.uploads));
        let neo4j = self.neo.fingerprint(NEO).await;
        State {
            postgres: postgres.await.unwrap(),
            neo4j,
            buckets: buckets.await.unwrap(),
            milvus: milvus.await.unwrap(),
            uploads: uploads.await.unwrap(),
        }
    }

    /// Follow every reference: documents → bucket, Milvus and uploads; graph → documents.
    pub(crate) async fn dangling(&self) -> Dangling {
        let docs = self.bg(|s| s.documents());
        let keys = self.bg(|s| s.bucket_keys(&s.docs));
        let mids = self.bg(|s| s.milvus_ids());
        let graph = self
            .neo
            .rows(
                NEO,
                query("MATCH (n) WHERE n.pg_document_id IS NOT NULL RETURN n.pg_document_id AS id"),
            )
            .await;
        let (docs, keys, mids) = (
            docs.await.unwrap(),
            keys.await.unwrap(),
            mids.await.unwrap(),
        );
        let doc_ids: HashSet<i64> = docs.iter().map(|d| d.id).collect();
        let mut out = Dangling::default();
        for d in &docs {
            out.checked += 3;
            if !keys.contains(&d.minio_key) {
                out.minio_keys.push(d.minio_key.clone());
            }
            match d.milvus_id {
                Some(m) if mids.contains(&m) => {}
                Some(m) => out.milvus_ids.push(m),
                None => panic!("document {} has no milvus_id", d.id),
            }
            let path = d.upload_path.as_deref().unwrap();
            if std::fs::symlink_metadata(self.uploads.join(path)).is_err() {
                out.upload_paths.push(path.to_string());
            }
        }
        for r in graph {
            out.checked += 1;
            let id: i64 = r.get("id").unwrap();
            if !doc_ids.contains(&id) {
                out.neo4j_doc_ids.push(id);
            }
        }
        out
    }

    /// The references break: objects, Milvus entities, upload files and documents the graph
    /// points at are deleted — besides each driver's fixture damage.
    pub(crate) async fn break_references(&self) {
        let docs = self.documents();
        let keys: Vec<String> = docs.iter().take(5).map(|d| d.minio_key.clone()).collect();
        let objects = self.bg(move |s| s.s3_keys("delete", &s.docs, &keys));
        // Deletes 40 entities of `_a`, drops `_b`.
        let milvus = self.bg(|s| drop(s.mv.fixture("destroy", MV)));
        files_common::destroy(&self.uploads);
        std::fs::remove_dir_all(self.uploads.join("documents/tenant-2")).unwrap();
        self.pg.destroy(DB);
        self.pg.psql(
            DB,
            &format!(
                "DELETE FROM app.documents WHERE id IN ({}, {})",
                docs[10].id, docs[11].id
            ),
        );
        self.neo.destroy(NEO).await;
        objects.await.unwrap();
        milvus.await.unwrap();
    }

    /// The stores described and every reference followed, concurrently.
    pub(crate) async fn checkpoint(&self) -> (State, Dangling) {
        tokio::join!(self.state(), self.dangling())
    }

    /// Then the stores are lost: database dropped, graph and schema gone, uploads gone, the
    /// buckets damaged (one deleted).
    pub(crate) async fn lose_stores(&self) {
        let buckets = self.bg(|s| drop(s.s3.tool(&["destroy", &s.docs, &s.other])));
        self.pg
            .psql("postgres", &format!("DROP DATABASE \"{DB}\" WITH (FORCE)"));
        self.neo.make_empty(NEO).await;
        files_common::unlock(&self.uploads);
        std::fs::remove_dir_all(&self.uploads).unwrap();
        buckets.await.unwrap();
    }

    /// Newer data in every store, references kept consistent: a document with its object,
    /// Milvus entity, upload file and graph node.
    /// What drills left on the servers, seen by the independent tools: scratch databases,
    /// buckets, collections (any drill's: `drill_` / `drill-` in the name), and the files
    /// under `dir`.
    pub(crate) fn drill_leftovers(&self, dir: &Path) -> Vec<String> {
        let mut left: Vec<String> = self
            .pg
            .psql(
                "postgres",
                "SELECT datname FROM pg_database WHERE datname LIKE '%drill\\_%'",
            )
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("database {l}"))
            .collect();
        let out = Command::new(&self.s3.python)
            .args(["-c", S3_BUCKETS_PY, &self.s3.endpoint, &self.s3.access_key])
            .arg(&self.s3.secret_key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        left.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|b| b.contains("drill-"))
                .map(|b| format!("bucket {b}")),
        );
        let colls = self
            .mv
            .py("import json\nprint(json.dumps(utility.list_collections()))");
        let colls: Vec<String> = serde_json::from_str(&colls).unwrap();
        left.extend(
            colls
                .into_iter()
                .filter(|c| c.contains("drill_"))
                .map(|c| format!("collection {c}")),
        );
        if let Ok(rd) = std::fs::read_dir(dir) {
            left.extend(rd.map(|e| format!("path {}", e.unwrap().path().display())));
        }
        left
    }

    pub(crate) async fn add_newer_data(&self) {
        let mid: i64 = self
            .mv
            .py(&format!(
                "c = Collection('{MV}_a')\n\
                 row = {{'id': 10**12 + 77, 'vec': [0.25] * 8, 'title': 'newer', 'doc': {{'newer': True}}, \
                 'flag': True, 'i8': 1, 'i16': 2, 'i32': 3, 'f32': 0.5, 'f64': 0.25, 'tags': [1]}}\n\
                 if c.schema.auto_id: del row['id']\n\
                 r = c.insert([row]); c.flush(); print(r.primary_keys[0])"
            ))
            .parse()
            .unwrap();
        let (key, path) = ("newer/doc ✓ 2026+1.pdf", "documents/newer/doc.txt");
        let id: i64 = self
            .pg
            .psql(
                DB,
                &format!(
                    "INSERT INTO app.documents (tenant_id, state, minio_key, milvus_id, upload_path) \
                     VALUES (1, 'published', '{key}', {mid}, '{path}') RETURNING id"
                ),
            )
            .trim()
            .parse()
            .unwrap();
        self.s3_keys("put", &self.docs, &[key.to_string()]);
        let p = self.uploads.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"newer upload\n").unwrap();
        self.neo
            .run(
                NEO,
                query(
                    "CREATE (:Entity {name: 'newer'})-[:MENTIONED_IN {score: 1.0}]->(:Document {pg_document_id: $id})",
                )
                .param("id", id),
            )
            .await;
    }
}

pub(crate) async fn backup(runner: &Runner, tag: &str) -> Manifest {
    let m = runner
        .backup(&BackupOptions {
            tags: vec![tag.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    assert_eq!(m.components.len(), 5, "{:?}", m.components.keys());
    m
}

/// The product's reference checks against the independent check `d` (`docs` rows).
pub(crate) fn assert_references(checks: &[ReferenceCheck], d: &Dangling, docs: u64) {
    let by = |name: &str| {
        checks
            .iter()
            .find(|c| c.spec.name == name)
            .unwrap_or_else(|| panic!("no reference `{name}`: {checks:?}"))
    };
    for c in checks {
        assert!(c.error.is_none(), "{}", c.summary());
    }
    for (name, dangling, checked) in [
        ("document objects", d.minio_keys.len(), Some(docs)),
        ("document embeddings", d.milvus_ids.len(), Some(docs)),
        ("document files", d.upload_paths.len(), Some(docs)),
        ("graph documents", d.neo4j_doc_ids.len(), None),
    ] {
        let c = by(name);
        assert_eq!(c.dangling, dangling as u64, "{} vs {d:?}", c.summary());
        if let Some(n) = checked {
            assert_eq!(c.checked, n, "{}", c.summary());
        }
    }
    let graph = by("graph documents");
    assert_eq!(
        graph.checked as usize,
        d.checked - 3 * docs as usize,
        "{}",
        graph.summary()
    );
    // The keys named are the ones the independent check found.
    let named: Vec<(&str, Vec<String>)> = vec![
        (
            "document objects",
            d.minio_keys.iter().map(|k| format!("/{k}")).collect(),
        ),
        (
            "document embeddings",
            d.milvus_ids.iter().map(i64::to_string).collect(),
        ),
        ("document files", d.upload_paths.clone()),
        (
            "graph documents",
            d.neo4j_doc_ids.iter().map(i64::to_string).collect(),
        ),
    ];
    for (name, keys) in named {
        for k in &by(name).first_dangling {
            assert!(
                keys.iter().any(|x| k.ends_with(x.as_str())),
                "{name}: {k} is not among the independent check's {keys:?}"
            );
        }
    }
}

pub(crate) fn assert_each_differs(now: &State, before: &State, what: &str) {
    assert_ne!(now.postgres, before.postgres, "Postgres {what}");
    assert_ne!(now.neo4j, before.neo4j, "Neo4j {what}");
    assert_ne!(now.buckets, before.buckets, "buckets {what}");
    assert_ne!(now.milvus, before.milvus, "Milvus {what}");
    assert_ne!(now.uploads, before.uploads, "uploads {what}");
}

pub(crate) fn assert_each_equal(now: &State, expected: &State, what: &str) {
    assert_eq!(now.postgres, expected.postgres, "Postgres {what}");
    assert_eq!(now.neo4j, expected.neo4j, "Neo4j {what}");
    assert_eq!(now.buckets, expected.buckets, "buckets {what}");
    assert_eq!(now.milvus, expected.milvus, "Milvus {what}");
    assert_eq!(now.uploads, expected.uploads, "uploads {what}");
}

pub(crate) fn uploads_dir(base: &Path) -> PathBuf {
    base.join("uploads")
}
