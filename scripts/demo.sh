#!/usr/bin/env bash
# The main job, end to end: local stack up, sample data in every store (Postgres documents that
# point at objects in the bucket, Milvus embeddings, Neo4j nodes and upload files), backup, list,
# verify, disaster, restore, compare — with tools outside amber-dr doing the comparing — and
# check that every cross-store reference resolves again (amber-dr's own reference check).
#
# Usage: scripts/demo.sh [--s3]     (--s3: keep the repository in the stack's S3 server)
# Work files go to ./demo-work (ignored by git); it is recreated on every run.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$AMBER_DR_REPO_ROOT"

USE_S3=""
[[ "${1:-}" == "--s3" ]] && USE_S3=1

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

step "1. local stack up (installs servers on first use)"
scripts/stack.sh up
eval "$(scripts/stack.sh env)"

step "2. build amber-dr"
ensure_cargo
cargo build --locked -p amber-dr-cli >&2
AMBER="$AMBER_DR_REPO_ROOT/target/debug/amber-dr"

WORK="$AMBER_DR_REPO_ROOT/demo-work"
if [[ -d "$WORK" ]]; then chmod -R u+rwX "$WORK"; rm -rf "$WORK"; fi
mkdir -p "$WORK"
cd "$WORK"

step "3. configuration (amber-dr init, then pointed at the demo's data)"
"$AMBER" init >&2
if [[ -n "$USE_S3" ]]; then
  REPO_TOML=$(cat <<TOML
[repository]
url = "s3://$AMBER_DR_S3_BUCKET/demo-$(date +%s)"
endpoint = "\${AMBER_DR_S3_ENDPOINT}"
access_key_id = "\${AMBER_DR_S3_ACCESS_KEY}"
secret_access_key = "\${AMBER_DR_S3_SECRET_KEY}"
region = "\${AMBER_DR_S3_REGION}"
TOML
)
else
  REPO_TOML=$'[repository]\nurl = "./backups"'
fi
cat > amber-dr.toml <<TOML
# Demo config: every store of the stack: Postgres, the Neo4j graph, the Milvus embeddings
# (logical backup; Milvus's own bucket and etcd prefix are not components), the uploads
# directory and the documents bucket.
$REPO_TOML

[components.postgres]
kind = "postgres"
url = "postgres://postgres:\${AMBER_DR_PG_PASSWORD}@$AMBER_DR_PG_HOST:$AMBER_DR_PG_PORT/postgres"
databases = ["amber_demo"]

[components.neo4j]
kind = "neo4j"
uri = "$AMBER_DR_NEO4J_URI"
password = "\${AMBER_DR_NEO4J_PASSWORD}"

[components.uploads]
kind = "files"
path = "./uploads"

[components.minio]
kind = "minio"
endpoint = "\${AMBER_DR_S3_ENDPOINT}"
access_key = "\${AMBER_DR_S3_ACCESS_KEY}"
secret_key = "\${AMBER_DR_S3_SECRET_KEY}"
buckets = ["amber-demo-documents"]

[components.milvus]
kind = "milvus"
endpoint = "\${AMBER_DR_MILVUS_ENDPOINT}"
collections = ["amber_demo_embeddings"]

# Milvus's own bucket: collections are backed up as its segment files and restored through
# Milvus's import, so the auto-id collection stays auto-id with every id kept.
[components.milvus.storage]
endpoint = "\${AMBER_DR_S3_ENDPOINT}"
bucket = "\${AMBER_DR_MILVUS_BUCKET}"
access_key = "\${AMBER_DR_S3_ACCESS_KEY}"
secret_key = "\${AMBER_DR_S3_SECRET_KEY}"

# The references between the stores: checked in every backup (and by verify --references),
# and against the live stores after every restore.
[[references]]
name = "document objects"
from = { component = "postgres", database = "amber_demo", query = "SELECT 'amber-demo-documents/' || minio_key FROM documents" }
to = { component = "minio" }

[[references]]
name = "document embeddings"
from = { component = "postgres", database = "amber_demo", query = "SELECT milvus_id FROM documents WHERE milvus_id IS NOT NULL" }
to = { component = "milvus", collection = "default.amber_demo_embeddings" }

[[references]]
name = "document files"
from = { component = "postgres", database = "amber_demo", query = "SELECT upload_path FROM documents" }
to = { component = "uploads" }

[[references]]
name = "graph documents"
from = { component = "neo4j", query = "MATCH (n) WHERE n.pg_document_id IS NOT NULL RETURN n.pg_document_id" }
to = { component = "postgres", database = "amber_demo", query = "SELECT id FROM documents" }

# amber-dr drill (the last step): scratch copies beside the live data, removed afterwards;
# the graph goes to the stack's second Neo4j server (Community has one database).
[drill]
dir = "./drill-scratch"
neo4j_uri = "$AMBER_DR_NEO4J_URI_2"
rto_budget_seconds = 600
TOML
cat amber-dr.toml >&2

step "4a. sample data: Postgres (tenants, users, documents pointing at uploads and bucket objects)"
export PGHOST="$AMBER_DR_PG_HOST" PGPORT="$AMBER_DR_PG_PORT" PGUSER=postgres PGPASSWORD="$AMBER_DR_PG_PASSWORD"
PSQL=("$AMBER_DR_PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1)
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS amber_demo WITH (FORCE)" -c "CREATE DATABASE amber_demo"
"${PSQL[@]}" -d amber_demo <<'SQL'
CREATE TABLE tenants (id serial PRIMARY KEY, name text UNIQUE NOT NULL, settings jsonb);
CREATE TABLE users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id int REFERENCES tenants, email text NOT NULL, created timestamptz DEFAULT now());
CREATE TYPE doc_state AS ENUM ('uploaded', 'indexed');
CREATE TABLE documents (id bigserial PRIMARY KEY, tenant_id int REFERENCES tenants, upload_path text NOT NULL, minio_key text, milvus_id bigint, state doc_state, body bytea);
INSERT INTO tenants (name, settings) VALUES ('tenant-1', '{"plan": "gold"}'), ('tenant-2', '{"plan": "free", "note": "Ünïcödé 🎉"}');
INSERT INTO users (tenant_id, email) SELECT 1 + i % 2, 'user' || i || '@example.com' FROM generate_series(1, 1000) i;
INSERT INTO documents (tenant_id, upload_path, minio_key, milvus_id, state, body)
SELECT 1 + i % 2, 'tenant-' || (1 + i % 2) || '/docs/doc-' || i || '.pdf', 'documents/tenant-' || (1 + i % 2) || '/' || i,
       NULL, (ARRAY['uploaded', 'indexed'])[1 + i % 2]::doc_state, decode(md5(i::text), 'hex')
FROM generate_series(1, 5000) i;
SQL
pg_listing() {
  "${PSQL[@]}" -At -d amber_demo -c "
    SELECT 'tenants ' || count(*) || ' ' || md5(string_agg(t::text, '|' ORDER BY t::text)) FROM tenants t UNION ALL
    SELECT 'users ' || count(*) || ' ' || md5(string_agg(u::text, '|' ORDER BY u::text)) FROM users u UNION ALL
    SELECT 'documents ' || count(*) || ' ' || md5(string_agg(d::text, '|' ORDER BY d::text)) FROM documents d UNION ALL
    SELECT 'seq ' || last_value FROM documents_id_seq"
}

step "4b. sample data: Milvus embeddings, one per document; documents.milvus_id = its auto-generated id"
# mvpy COMMAND: fill FILE | disaster | listing | ids | insert-new of the embeddings collection, with
# pymilvus (outside amber-dr).
mvpy() {
  "$AMBER_DR_MILVUS_PYTHON" - "$@" <<'PY'
import hashlib, json, os, sys
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility
host, port = os.environ["AMBER_DR_MILVUS_ENDPOINT"].split("://")[-1].split(":")
connections.connect(host=host, port=port, timeout=30)
C, DIM = "amber_demo_embeddings", 8
def vec(doc):
    return [((doc * 31 + j * 7) % 97) / 97.0 for j in range(DIM)]
def rows(c):
    c.load()
    out = c.query("id > 0", output_fields=["id", "document_id", "chunk", "embedding"], limit=16384)
    return sorted(out, key=lambda r: r["id"])
cmd = sys.argv[1]
if cmd == "fill":  # fill FILE (document ids); stdout: "document_id<TAB>milvus_id"
    if utility.has_collection(C):
        utility.drop_collection(C)
    schema = CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True, auto_id=True),
        FieldSchema("document_id", DataType.INT64),
        FieldSchema("chunk", DataType.VARCHAR, max_length=200),
        FieldSchema("embedding", DataType.FLOAT_VECTOR, dim=DIM),
    ], description="document embeddings; documents.milvus_id holds their ids")
    c = Collection(C, schema, consistency_level="Strong")
    with open(sys.argv[2]) as f:
        docs = [int(line) for line in f if line.strip()]
    for i in range(0, len(docs), 1000):
        part = docs[i:i + 1000]
        r = c.insert([part, [f"chunk of document {d} ✓" for d in part], [vec(d) for d in part]])
        for d, pk in zip(part, r.primary_keys):
            print(f"{d}\t{pk}")
    c.flush()
    c.create_index("embedding", {"index_type": "IVF_FLAT", "metric_type": "L2", "params": {"nlist": 16}},
                   index_name="embedding_idx")
    c.load()
elif cmd == "disaster":
    c = Collection(C)
    c.load()
    gone = [r["id"] for r in c.query("document_id <= 500", output_fields=["id"], limit=16384)]
    c.delete(f"id in {gone}")
    c.insert([[-1], ["stray"], [vec(0)]])
    c.flush()
elif cmd == "listing":
    c = Collection(C)
    s = c.schema
    print("fields", [(f.name, f.dtype.name, f.is_primary, f.auto_id, sorted((k, str(v)) for k, v in f.params.items()))
                     for f in s.fields], repr(s.description))
    print("indexes", sorted((i.field_name, i.index_name, json.dumps(i.params, sort_keys=True)) for i in c.indexes))
    rs = rows(c)
    h = hashlib.sha256()
    for r in rs:
        h.update(json.dumps([r["id"], r["document_id"], r["chunk"], [repr(x) for x in r["embedding"]]],
                            ensure_ascii=False).encode())
    print("entities", len(rs), h.hexdigest())
elif cmd == "ids":
    for r in rows(Collection(C)):
        print(r["id"])
elif cmd == "insert-new":  # the application's next write: an embedding without an id
    c = Collection(C)
    old = {r["id"] for r in rows(c)}
    r = c.insert([[999999], ["chunk of a new document"], [vec(999999)]])
    c.flush()
    new = r.primary_keys[0]
    if not c.schema.auto_id or new in old:
        sys.exit(f"the insert got id {new}: auto_id={c.schema.auto_id}, collides={new in old}")
    print(f"a new embedding inserted without an id got id {new} (auto-id, not among the {len(old)} restored ids)")
PY
}
"${PSQL[@]}" -At -d amber_demo -c "SELECT id FROM documents ORDER BY id" > document-ids.txt
mvpy fill document-ids.txt > milvus-ids.tsv
"${PSQL[@]}" -d amber_demo \
  -c "CREATE TEMP TABLE mv (document_id bigint, milvus_id bigint)" \
  -c "\\copy mv FROM 'milvus-ids.tsv'" \
  -c "UPDATE documents d SET milvus_id = mv.milvus_id FROM mv WHERE d.id = mv.document_id"
mvpy listing > original-milvus.txt
cat original-milvus.txt >&2
"${PSQL[@]}" -At -d amber_demo -c "SELECT 'documents.milvus_id, e.g. ' || string_agg(milvus_id::text, ', ') FROM (SELECT milvus_id FROM documents ORDER BY id LIMIT 3) x" >&2
pg_listing > original-postgres.txt
cat original-postgres.txt >&2

step "4c. sample data: the Neo4j graph (entities mentioned in documents, by Postgres document id)"
cypher() { "$AMBER_DR_NEO4J_PYTHON" "$AMBER_DR_REPO_ROOT/scripts/cypher.py" "$AMBER_DR_NEO4J_URI" "$AMBER_DR_NEO4J_PASSWORD"; }
DOC_IDS=$("${PSQL[@]}" -At -d amber_demo -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM documents")
cypher <<CYPHER
MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS
;
CREATE CONSTRAINT demo_document_id IF NOT EXISTS FOR (d:Document) REQUIRE d.pg_document_id IS UNIQUE
;
UNWIND [$DOC_IDS] AS id
CREATE (d:Document {pg_document_id: id, indexed: datetime({epochSeconds: 1700000000 + id, timezone: 'Europe/Berlin'})})
;
UNWIND range(0, 199) AS i
CREATE (:Entity:\`Named Entity\` {name: 'entity ' + i, score: i / 7.0, aliases: ['e' + i, 'ë' + i]})
;
MATCH (e:Entity) MATCH (d:Document) WHERE d.pg_document_id % 200 = toInteger(substring(e.name, 7))
CREATE (e)-[:MENTIONED_IN {weight: -0.0, since: date('2024-02-29'), span: duration({months: 1, days: -2})}]->(d)
;
MATCH (a:Entity {name: 'entity 1'}), (b:Entity {name: 'entity 2'})
CREATE (a)-[:RELATED]->(b), (a)-[:RELATED]->(b), (a)-[:RELATED]->(a)
CYPHER
graph_listing() {
  {
    printf 'MATCH (n) RETURN labels(n), properties(n)\n;\n'
    printf 'MATCH (a)-[r]->(b) RETURN labels(a), properties(a), type(r), properties(r), labels(b), properties(b)\n'
  } | cypher | LC_ALL=C sort | sha256sum
  printf 'MATCH (n) RETURN count(n)\n;\nMATCH ()-[r]->() RETURN count(r)\n' | cypher
}
graph_listing > original-graph.txt
cat original-graph.txt >&2

step "4d. sample data: uploads with the awkward cases, and the file of every document"
mkdir -p uploads/tenant-1/docs uploads/tenant-2 "uploads/empty dir/nested"
printf 'quarterly report\n' > uploads/tenant-1/docs/report.txt
head -c 5000000 /dev/urandom > uploads/tenant-1/docs/scan.pdf
printf 'unicode name\n' > "uploads/tenant-2/résumé 🎉.txt"
printf 'latin-1 name\n' > "uploads/tenant-2/$(printf 'caf\xe9').txt"
: > uploads/tenant-2/empty.txt
ln -s docs/report.txt uploads/tenant-1/latest-report
ln -s /nonexistent/target uploads/dangling-link
mkdir -p "uploads/$(printf 'd%.0s' {1..90})"
printf 'long path\n' > "uploads/$(printf 'd%.0s' {1..90})/$(printf 'f%.0s' {1..90}).txt"
chmod 0640 uploads/tenant-1/docs/report.txt
chmod 0755 uploads/tenant-2/empty.txt
touch -h -d '2001-02-03 04:05:06.123456789' uploads/tenant-1/latest-report
touch -d '1999-12-31 23:59:59.5' uploads/tenant-2/empty.txt
mkdir -p uploads/tenant-1/docs uploads/tenant-2/docs
while IFS= read -r p; do printf 'upload %s\n' "$p" > "uploads/$p"; done \
  < <("${PSQL[@]}" -At -d amber_demo -c "SELECT upload_path FROM documents")
cp -a uploads original-uploads
# Sizes of files only: a directory's own size depends on how its entries were created.
listing() { (cd "$1" && find . \( -type d -printf '%y %m %T@ - %l %P\n' \) -o -printf '%y %m %T@ %s %l %P\n' | LC_ALL=C sort); }
find uploads -not -path '*/docs/doc-*' >&2
echo "... and $(find uploads -path '*/docs/doc-*' | wc -l) document files (uploads/tenant-N/docs/doc-ID.pdf)" >&2

step "4e. sample data: the documents bucket, one object per documents.minio_key (boto3)"
# s3py COMMAND: fill | disaster | listing of the bucket, with boto3 (outside amber-dr).
s3py() {
  "$AMBER_DR_S3_PYTHON" - "$@" <<'PY'
import hashlib, os, sys
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["AMBER_DR_S3_ENDPOINT"],
    aws_access_key_id=os.environ["AMBER_DR_S3_ACCESS_KEY"],
    aws_secret_access_key=os.environ["AMBER_DR_S3_SECRET_KEY"], region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, max_pool_connections=16,
                  request_checksum_calculation="when_required"))
# Raw keys in listings: boto3's encoding-type=url round trip turns `+` into a space here.
import botocore.handlers
s3.meta.events.unregister("before-parameter-build.s3.ListObjectsV2",
                          botocore.handlers.set_list_objects_encoding_type_url)
B = "amber-demo-documents"
def keys():
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=B):
        yield from (o["Key"] for o in page.get("Contents", []))
cmd = sys.argv[1]
if cmd == "fill":
    try:
        for k in list(keys()):
            s3.delete_object(Bucket=B, Key=k)
    except s3.exceptions.NoSuchBucket:
        s3.create_bucket(Bucket=B)
    def put(i):
        s3.put_object(Bucket=B, Key=f"documents/tenant-{1 + i % 2}/{i}",
                      Body=f"document {i}\n".encode() * (1 + i % 50), ContentType="application/pdf",
                      Metadata={"tenant": str(1 + i % 2), "doc-id": str(i)})
    with ThreadPoolExecutor(8) as p:
        list(p.map(put, range(1, 5001)))
    s3.put_object(Bucket=B, Key="notes/réunion 2024+Q1 #1.txt", Body=b"minutes", ContentType="text/plain")
elif cmd == "disaster":
    ks = sorted(keys())
    for k in ks[:500]:
        s3.delete_object(Bucket=B, Key=k)
    s3.put_object(Bucket=B, Key=ks[600], Body=b"ransom note")
    s3.put_object(Bucket=B, Key="junk/new.bin", Body=b"junk")
elif cmd == "keys":
    for k in keys():
        print(k)
elif cmd == "listing":
    for k in sorted(keys()):
        h = s3.head_object(Bucket=B, Key=k)
        body = s3.get_object(Bucket=B, Key=k)["Body"].read()
        print(k, len(body), hashlib.sha256(body).hexdigest(), h.get("ContentType"), sorted(h.get("Metadata", {}).items()))
PY
}
s3py fill
s3py listing > original-documents.txt
echo "$(wc -l < original-documents.txt) objects in s3://amber-demo-documents" >&2

step "5. amber-dr doctor"
"$AMBER" doctor

step "6. amber-dr backup (its summary includes the reference checks)"
"$AMBER" backup --tag demo | tee backup.out
ID=$(tail -1 backup.out)
echo "backup id: $ID" >&2
grep -q "references: 4 declared, all resolve" backup.out || die "the sample data has broken references"

step "6b. amber-dr verify --references (re-checked from the backup's artifacts alone)"
"$AMBER" verify --references "$ID"

step "7. amber-dr list / show"
"$AMBER" list
"$AMBER" show "$ID"

step "8. amber-dr verify (full)"
"$AMBER" verify "$ID"

step "9. disaster: embeddings, objects, files, entities and documents deleted or changed; then a table dropped"
mvpy disaster
if diff <(mvpy listing) original-milvus.txt >/dev/null; then die "the disaster did not change Milvus"; fi
echo "the embeddings collection now differs from the original (500 deleted, 1 stray added)" >&2
s3py disaster
if diff <(s3py listing) original-documents.txt >/dev/null; then die "the disaster did not change the bucket"; fi
echo "the documents bucket now differs from the original (500 deleted, 1 overwritten, 1 added)" >&2
rm -rf uploads/tenant-1
printf 'ransom note\n' > uploads/tenant-2/empty.txt
printf 'junk\n' > uploads/new-junk.txt
if diff -r original-uploads uploads >/dev/null 2>&1; then die "the disaster did not change anything"; fi
echo "uploads now differs from the original" >&2
printf 'MATCH (e:Entity) WHERE e.name ENDS WITH "7" DETACH DELETE e\n;\nMATCH (d:Document) SET d.indexed = null, d.junk = true\n' | cypher
if diff <(graph_listing) original-graph.txt >/dev/null; then die "the disaster did not change the graph"; fi
echo "the graph now differs from the original" >&2
"${PSQL[@]}" -d amber_demo -c "DELETE FROM documents WHERE id > 4900"
echo "a backup of the damaged stores finds the broken references (a warning; verify --references exits 4):" >&2
BROKEN=$("$AMBER" backup --tag broken | tee broken.out | tail -1)
grep -q "DANGLING" broken.out || die "the reference check did not notice the disaster"
set +e; "$AMBER" verify --references "$BROKEN" >/dev/null; rc=$?; set -e
[[ $rc == 4 ]] || die "verify --references of the broken backup exited $rc, not 4"
"${PSQL[@]}" -d amber_demo -c "DROP TABLE documents" -c "DELETE FROM users WHERE email LIKE 'user1%'" -c "UPDATE tenants SET settings = '{}'"
if diff <(pg_listing 2>/dev/null || true) original-postgres.txt >/dev/null; then die "the disaster did not change Postgres"; fi
echo "Postgres now differs from the original (documents table dropped, users deleted, tenants changed)" >&2

step "10. amber-dr restore --dry-run (changes nothing)"
"$AMBER" restore "$ID" --dry-run

step "11. amber-dr restore --yes (takes a safety backup of the damaged state first)"
"$AMBER" restore "$ID" --yes | tee restore.out

step "12. compare with tools outside amber-dr: psql checksums, pymilvus listing, Cypher listing (Python driver), diff -r, modes/mtimes/links listing, boto3 listing"
diff original-postgres.txt <(pg_listing)
echo "restored Postgres rows and sequence are identical to the original" >&2
diff original-milvus.txt <(mvpy listing)
echo "restored embeddings are identical to the original (fields, index, every id, document id, chunk and vector)" >&2
diff original-graph.txt <(graph_listing)
echo "restored graph is identical to the original (labels, properties, relationships)" >&2
diff -r --no-dereference original-uploads uploads
diff <(listing original-uploads) <(listing uploads)
echo "restored uploads are identical to the original (content, modes, mtimes, symlinks)" >&2
diff original-documents.txt <(s3py listing)
echo "restored bucket is identical to the original (keys, bodies, content types, metadata)" >&2

step "13. every cross-store reference resolves again (the restore's check of the live stores, step 11)"
grep -q "references: 4 declared, all resolve" restore.out || die "references are broken after the restore"

step "13b. the application's next write after the restore: a new embedding without an id (auto-id kept)"
mvpy insert-new >&2

step "14. the repository now holds the backup, the backup of the damaged stores and the safety backup"
"$AMBER" list

step "15. amber-dr drill: the backup restored again, into scratch targets; checked, timed, reported, removed"
"$AMBER" drill "$ID" | tee drill.out
grep -q "^drill .*: passed$" drill.out || die "the drill of backup $ID did not pass"
REPORT=$(sed -n 's/^report: //p' drill.out)
if [[ "$REPORT" != *://* ]]; then [[ -s "$REPORT" ]] || die "the drill's report page is missing: $REPORT"; fi
"$AMBER" report -o "$PWD/history.html" >&2
"$AMBER" list

printf '\n\033[1;32mdemo passed\033[0m: backup %s restored, every store identical, every reference resolves\n' "$ID" >&2
printf 'drill report: %s\nhistory page: %s\n' "$REPORT" "$PWD/history.html" >&2
