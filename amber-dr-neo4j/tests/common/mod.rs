//! The real Neo4j servers of `scripts/stack.sh`, reached with plain Cypher over neo4rs —
//! independently of the driver under test.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use amber_dr_core::testkit;
use amber_dr_neo4j::Neo4jConfig;
use neo4rs::{query, BoltType, Graph};

/// Tests that change a server's data take this lock (they share the two servers).
pub static SERVER_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone)]
pub struct Neo {
    pub uris: [String; 2],
    pub password: String,
}

impl Neo {
    /// The stack's two Neo4j servers, or `None` (skip, or panic under AMBER_DR_REQUIRE_SERVICES=1).
    pub async fn from_env() -> Option<Neo> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let neo = match (
            var("AMBER_DR_NEO4J_URI"),
            var("AMBER_DR_NEO4J_URI_2"),
            var("AMBER_DR_NEO4J_PASSWORD"),
        ) {
            (Some(a), Some(b), Some(password)) => Neo {
                uris: [a, b],
                password,
            },
            _ => {
                testkit::service_missing("Neo4j (AMBER_DR_NEO4J_* from scripts/stack.sh)");
                return None;
            }
        };
        for slot in 0..2 {
            let ok = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                let g = neo.try_graph(slot).await.ok()?;
                let mut s = g.execute(query("RETURN 1 AS x")).await.ok()?;
                s.next().await.ok()?
            })
            .await
            .ok()
            .flatten()
            .is_some();
            if !ok {
                testkit::service_missing(&format!("Neo4j at {}", neo.uris[slot]));
                return None;
            }
        }
        Some(neo)
    }

    pub fn config(&self, slot: usize) -> Neo4jConfig {
        let mut c = Neo4jConfig::new(self.uris[slot].clone(), self.password.clone());
        c.page_size = 500;
        c.batch_size = 700;
        c
    }

    async fn try_graph(&self, slot: usize) -> neo4rs::Result<Graph> {
        Graph::new(
            self.uris[slot].trim_start_matches("bolt://"),
            "neo4j",
            self.password.clone(),
        )
        .await
    }

    pub async fn graph(&self, slot: usize) -> Graph {
        self.try_graph(slot).await.unwrap()
    }

    pub async fn run(&self, slot: usize, q: neo4rs::Query) {
        let g = self.graph(slot).await;
        g.run(q)
            .await
            .unwrap_or_else(|e| panic!("cypher on slot {slot} failed: {e}"));
    }

    pub async fn rows(&self, slot: usize, q: neo4rs::Query) -> Vec<neo4rs::Row> {
        let g = self.graph(slot).await;
        let mut s = g.execute(q).await.unwrap();
        let mut out = Vec::new();
        while let Some(r) = s.next().await.unwrap() {
            out.push(r);
        }
        out
    }

    /// Drop every constraint and non-lookup index, delete all data.
    pub async fn make_empty(&self, slot: usize) {
        for r in self
            .rows(slot, query("SHOW CONSTRAINTS YIELD name RETURN name"))
            .await
        {
            let n: String = r.get("name").unwrap();
            self.run(slot, query(&format!("DROP CONSTRAINT `{n}`")))
                .await;
        }
        for r in self
            .rows(slot, query("SHOW INDEXES YIELD name, type, owningConstraint WHERE type <> 'LOOKUP' AND owningConstraint IS NULL RETURN name"))
            .await
        {
            let n: String = r.get("name").unwrap();
            self.run(slot, query(&format!("DROP INDEX `{n}`"))).await;
        }
        self.run(
            slot,
            query("MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS"),
        )
        .await;
    }

    /// The awkward graph: every property type, odd names, several shapes, a schema.
    pub async fn populate(&self, slot: usize) {
        self.make_empty(slot).await;
        for stmt in SCHEMA {
            self.run(slot, query(stmt)).await;
        }
        self.run(slot, query("CALL db.awaitIndexes(300)")).await;
        self.run(
            slot,
            query(TYPES_NODE)
                .param("imax", i64::MAX)
                .param("imin", i64::MIN)
                .param("bytes", vec![0u8, 1, 127, 128, 255])
                .param("empty_bytes", Vec::<u8>::new())
                .param("slot", slot as i64),
        )
        .await;
        self.run(slot, query(SHAPES)).await;
        self.run(slot, query(HUB)).await;
    }

    /// The disaster: delete, change and add data, and drop an index.
    pub async fn destroy(&self, slot: usize) {
        self.run(
            slot,
            query("MATCH (n:Person) WHERE n.name STARTS WITH 'A' DETACH DELETE n"),
        )
        .await;
        self.run(
            slot,
            query("MATCH (t:Types) SET t.int_max = 0, t.hacked = true"),
        )
        .await;
        self.run(
            slot,
            query("MATCH (h:Hub)-[r]->() WITH r LIMIT 10 DELETE r"),
        )
        .await;
        self.run(slot, query("CREATE (:Junk {x: 1})-[:JUNK]->(:Junk)"))
            .await;
        self.run(slot, query("DROP INDEX person_name IF EXISTS"))
            .await;
    }

    /// The live graph described by independent Cypher: schema, every node and relationship
    /// (labels, property types and exact values; relationships by their end nodes' content),
    /// sorted.
    pub async fn fingerprint(&self, slot: usize) -> String {
        self.fingerprint_without(slot, None).await
    }

    /// [`Neo::fingerprint`] without the nodes labelled `label` and their relationships.
    pub async fn fingerprint_without(&self, slot: usize, label: Option<&str>) -> String {
        let (wn, wr) = match label {
            Some(l) => (
                format!("WHERE NOT n:`{l}`"),
                format!("WHERE NOT a:`{l}` AND NOT b:`{l}`"),
            ),
            None => (String::new(), String::new()),
        };
        let mut out = Vec::new();
        for r in self
            .rows(slot, query("SHOW INDEXES YIELD name, type, owningConstraint, createStatement WHERE type <> 'LOOKUP' RETURN createStatement AS s ORDER BY s"))
            .await
        {
            out.push(format!("schema {}", r.get::<String>("s").unwrap()));
        }
        for r in self
            .rows(
                slot,
                query(
                    "SHOW CONSTRAINTS YIELD createStatement RETURN createStatement AS s ORDER BY s",
                ),
            )
            .await
        {
            out.push(format!("schema {}", r.get::<String>("s").unwrap()));
        }
        let mut nodes: Vec<String> = self
            .rows(
                slot,
                query(&format!("MATCH (n) {wn} RETURN {} AS d", desc("n"))),
            )
            .await
            .iter()
            .map(|r| format!("node {:?}", r.get::<BoltType>("d").unwrap()))
            .collect();
        nodes.sort();
        let mut rels: Vec<String> = self
            .rows(
                slot,
                query(&format!(
                    "MATCH (a)-[r]->(b) {wr} RETURN [{}, type(r), {}, {}] AS d",
                    desc("a"),
                    props_desc("r"),
                    desc("b")
                )),
            )
            .await
            .iter()
            .map(|r| format!("rel {:?}", r.get::<BoltType>("d").unwrap()))
            .collect();
        rels.sort();
        out.extend(nodes);
        out.extend(rels);
        out.join("\n")
    }
}

/// Exact, comparable form of a property value: temporal values and points as their ISO text,
/// durations as their four parts, integers as text (neo4rs 0.8 reads the tiny integers
/// -16..-1 as 240..255), lists element by element, everything else as is (floats and byte
/// arrays keep their Bolt type; an integer list also comes as itself, so a byte array shows).
fn repr(v: &str) -> String {
    let scalar = |x: &str| {
        format!(
            "CASE WHEN {x} IS :: DURATION THEN [toString({x}.months), toString({x}.days), toString({x}.seconds), toString({x}.nanosecondsOfSecond)] \
             WHEN {x} IS :: DATE OR {x} IS :: LOCAL TIME OR {x} IS :: ZONED TIME OR {x} IS :: LOCAL DATETIME \
             OR {x} IS :: ZONED DATETIME OR {x} IS :: POINT OR {x} IS :: INTEGER THEN toString({x}) ELSE {x} END"
        )
    };
    format!(
        "CASE WHEN {v} IS :: LIST<ANY> AND size({v}) > 0 AND ({v}[0] IS :: DURATION OR {v}[0] IS :: POINT \
         OR {v}[0] IS :: DATE OR {v}[0] IS :: ZONED DATETIME OR {v}[0] IS :: LOCAL TIME OR {v}[0] IS :: ZONED TIME \
         OR {v}[0] IS :: LOCAL DATETIME) THEN [x IN {v} | {}] \
         WHEN {v} IS :: LIST<ANY> AND size({v}) > 0 AND {v}[0] IS :: INTEGER THEN [[x IN {v} | toString(x)], {v}] \
         ELSE {} END",
        scalar("x"),
        scalar(v)
    )
}

fn props_desc(e: &str) -> String {
    format!(
        "COLLECT {{ UNWIND keys({e}) AS k WITH k, {e}[k] AS v RETURN [k, valueType(v), {}] AS p ORDER BY k }}",
        repr("v")
    )
}

fn desc(n: &str) -> String {
    format!(
        "[COLLECT {{ UNWIND labels({n}) AS l RETURN l ORDER BY l }}, {}]",
        props_desc(n)
    )
}

pub const SCHEMA: &[&str] = &[
    "CREATE CONSTRAINT person_email FOR (p:Person) REQUIRE p.email IS UNIQUE",
    "CREATE INDEX person_name FOR (p:Person) ON (p.name)",
    "CREATE INDEX person_name_age FOR (p:Person) ON (p.name, p.age)",
    "CREATE TEXT INDEX doc_title FOR (d:`Weird Label`) ON (d.`odd key`)",
    "CREATE POINT INDEX place_loc FOR (p:Place) ON (p.loc)",
    "CREATE FULLTEXT INDEX doc_fulltext FOR (d:Doc|`Weird Label`) ON EACH [d.body, d.`odd key`] OPTIONS {indexConfig: {`fulltext.analyzer`: 'english'}}",
    "CREATE VECTOR INDEX doc_embedding FOR (d:Doc) ON (d.embedding) OPTIONS {indexConfig: {`vector.dimensions`: 3, `vector.similarity_function`: 'cosine'}}",
    "CREATE INDEX knows_since FOR ()-[k:KNOWS]-() ON (k.since)",
];

pub const TYPES_NODE: &str = "CREATE (t:Types {
  slot: $slot,
  int_max: $imax, int_min: $imin, int_zero: 0,
  int_m1: -1, int_m16: -16, int_m17: -17, int_127: 127, int_240: 240, int_255: 255,
  float_nan: 0.0 / 0.0, float_inf: 1.0 / 0.0, float_ninf: -1.0 / 0.0, float_negzero: -0.0,
  float_small: 4.9e-324, float_pi: 3.141592653589793,
  str_empty: '', str_unicode: 'Grüße, 世界 🌍 \\u0000 end', bool_t: true, bool_f: false,
  bytes: $bytes, bytes_empty: $empty_bytes,
  ints: [$imin, -1, 0, $imax], floats: [0.0 / 0.0, -0.0, 1.0 / 0.0, 2.5], strs: ['', 'a', 'ü'],
  bools: [true, false], empty_list: [],
  date: date('2024-02-29'), date_old: date('0001-01-01'),
  local_time: localtime('23:59:59.999999999'),
  time: time('12:34:56.123456789+05:45'),
  local_datetime: localdatetime('2024-03-31T02:30:00.5'),
  datetime_offset: datetime('2024-06-01T12:00:00.000000001-03:30'),
  datetime_utc: datetime('2024-06-01T12:00:00Z'),
  datetime_zone: datetime('2024-07-01T10:00:00[Europe/Berlin]'),
  datetime_ambiguous_first: datetime('2024-10-27T02:30:00+02:00[Europe/Berlin]'),
  datetime_ambiguous_second: datetime('2024-10-27T02:30:00+01:00[Europe/Berlin]'),
  duration: duration({months: 14, days: 3, seconds: 5, nanoseconds: 7}),
  duration_negative: duration({months: -1, days: -2, seconds: -3, nanoseconds: -4}),
  duration_mixed: duration({months: 1, days: -40, seconds: 86401, nanoseconds: 999999999}),
  point_cartesian: point({x: 1.5, y: -2.25}),
  point_cartesian_3d: point({x: 1.0, y: 2.0, z: -0.0}),
  point_wgs84: point({longitude: 13.404954, latitude: 52.520008}),
  point_wgs84_3d: point({longitude: -0.1278, latitude: 51.5074, height: 35.5}),
  dates: [date('2020-01-01'), date('1969-12-31')],
  durations: [duration('P1M'), duration('-PT1.5S')],
  points: [point({x: 0.0, y: 0.0}), point({x: 1.0, y: 1.0})],
  datetimes: [datetime('2024-10-27T02:30:00+01:00[Europe/Berlin]'), datetime('2000-01-01T00:00:00Z')]
})";

pub const SHAPES: &str = "
CREATE (a:Person {name: 'Ada', email: 'ada@example.org', age: 36})
CREATE (b:Person:Admin:`Weird Label` {name: 'Bob', email: 'bob@example.org', `odd key`: 'x', `prop-with-dash`: 1})
CREATE (c:Person {name: 'Alan', email: 'alan@example.org'})
CREATE (nolabel {note: 'no label'})
CREATE (bare)
CREATE (place:Place {loc: point({longitude: 2.35, latitude: 48.85})})
CREATE (doc:Doc {body: 'hello world', embedding: [0.1, 0.2, 0.3], pg_document_id: 42})
CREATE (tick:`we``ird` {`key``tick`: 'backtick'})
CREATE (a)-[:KNOWS {since: date('2001-01-01'), weight: -0.0}]->(b)
CREATE (a)-[:KNOWS {since: date('2001-01-01'), weight: -0.0}]->(b)
CREATE (a)-[:KNOWS]->(b)
CREATE (b)-[:`HAS ODD-TYPE` {`odd key`: duration('P1Y')}]->(c)
CREATE (a)-[:SELF {at: datetime('2024-10-27T02:30:00+01:00[Europe/Berlin]')}]->(a)
CREATE (bare)-[:`RE``L`]->(nolabel)
CREATE (doc)-[:ABOUT]->(place)
CREATE (c)-[:WROTE {bytes_len: 3}]->(doc)
";

pub const HUB: &str = "CREATE (h:Hub {name: 'hub'}) WITH h UNWIND range(1, 3000) AS i \
  CREATE (h)-[:LINK {i: i}]->(:Leaf {i: i})";
