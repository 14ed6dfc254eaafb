//! Exact round trip of every property type and graph shape, checked by independent Cypher;
//! probe; bad input (wrong credentials, wrong database, a server that goes away mid-export).
// test-lane: stores (uses the Postgres cluster or Neo4j, whose global state other tests change)
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use amber_dr_core::testkit;
use amber_dr_core::{
    BackupOptions, Component, RestoreOptions, RestorePlanOptions, Runner, Selection,
};
use amber_dr_neo4j::Neo4j;
use common::Neo;
use neo4rs::{query, BoltType};

fn comp(neo: &Neo, slot: usize) -> Arc<dyn Component> {
    Arc::new(Neo4j::new(format!("graph{slot}"), neo.config(slot)).unwrap())
}

fn plan() -> RestorePlanOptions {
    RestorePlanOptions {
        selection: Selection::all(),
        options: RestoreOptions::default(),
        safety_backup: false,
        components: Default::default(),
    }
}

async fn one(neo: &Neo, slot: usize, q: &str) -> neo4rs::Row {
    let mut rows = neo.rows(slot, query(q)).await;
    assert_eq!(rows.len(), 1, "{q}");
    rows.remove(0)
}

async fn count(neo: &Neo, slot: usize, q: &str) -> i64 {
    one(neo, slot, q).await.get::<i64>("c").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_property_type_and_shape_round_trips_exactly() {
    let Some(neo) = Neo::from_env().await else {
        return;
    };
    let _lock = common::SERVER_LOCK.lock().await;
    neo.populate(0).await;
    let original = neo.fingerprint(0).await;
    let (repo, _guard) = testkit::temp_repo();
    let r = Runner::new(repo.clone(), vec![comp(&neo, 0)]);
    let m = r.backup(&BackupOptions::default()).await.unwrap();
    assert!(m.is_complete(), "{:?}", m.components);
    let rec = m.components.values().next().unwrap();
    assert_eq!(rec.stat_u64("nodes"), Some(3010));
    assert_eq!(rec.stat_u64("relationships.type.LINK"), Some(3000));
    assert_eq!(rec.stat_u64("nodes.label.Person"), Some(3));
    assert_eq!(rec.stat_u64("schema_items"), Some(8));

    // Restore into a graph that holds other data.
    neo.destroy(0).await;
    let out = r.restore(&m.id, &plan()).await.unwrap();
    assert!(out.is_ok(), "{:?}", out.components);
    assert_eq!(neo.fingerprint(0).await, original);

    // Spot checks by plain Cypher, value by value.
    let t = one(&neo, 0, "MATCH (t:Types) RETURN t {.int_max, .int_min, .float_nan, .float_inf, .float_ninf, .float_negzero, \
         .float_small, .str_empty, .str_unicode, .bytes, .bytes_empty, .ints} AS t").await;
    let BoltType::Map(t) = t.get::<BoltType>("t").unwrap() else {
        panic!("properties() is not a map")
    };
    let p = |k: &str| {
        t.value
            .get(&neo4rs::BoltString::new(k))
            .cloned()
            .unwrap_or_else(|| panic!("no property {k}"))
    };
    let int = |k: &str| match p(k) {
        BoltType::Integer(i) => i.value,
        other => panic!("{k}: {other:?}"),
    };
    let float = |k: &str| match p(k) {
        BoltType::Float(f) => f.value,
        other => panic!("{k}: {other:?}"),
    };
    let string = |k: &str| match p(k) {
        BoltType::String(s) => s.value,
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(int("int_max"), i64::MAX);
    assert_eq!(int("int_min"), i64::MIN);
    assert!(float("float_nan").is_nan());
    assert_eq!(float("float_inf"), f64::INFINITY);
    assert_eq!(float("float_ninf"), f64::NEG_INFINITY);
    assert_eq!(float("float_negzero").to_bits(), (-0.0f64).to_bits());
    assert_eq!(float("float_small").to_bits(), 4.9e-324f64.to_bits());
    assert_eq!(string("str_empty"), "");
    assert_eq!(string("str_unicode"), "Grüße, 世界 🌍 \u{0} end");
    match p("bytes") {
        BoltType::Bytes(b) => assert_eq!(b.value.as_ref(), &[0u8, 1, 127, 128, 255]),
        other => panic!("byte array came back as {other:?}"),
    }
    assert!(
        matches!(p("bytes_empty"), BoltType::Bytes(_)),
        "{:?}",
        p("bytes_empty")
    );
    // Integers as text: neo4rs 0.8 misreads -16..-1 (see the crate docs).
    let ints = one(&neo, 0, "MATCH (t:Types) RETURN [x IN t.ints | toString(x)] AS i, toString(t.duration_negative.months) AS m").await;
    assert_eq!(
        ints.get::<Vec<String>>("i").unwrap(),
        [
            i64::MIN.to_string(),
            "-1".into(),
            "0".into(),
            i64::MAX.to_string()
        ]
    );
    assert_eq!(ints.get::<String>("m").unwrap(), "-1");
    // Scalars around the misread tiny integers: -16..-1 travel as text, the rest as they are.
    let small = one(&neo, 0, "MATCH (t:Types) RETURN [x IN [t.int_m1, t.int_m16, t.int_m17, t.int_127, t.int_240, t.int_255] | toString(x)] AS s").await;
    assert_eq!(
        small.get::<Vec<String>>("s").unwrap(),
        ["-1", "-16", "-17", "127", "240", "255"]
    );

    let row = one(
        &neo,
        0,
        "MATCH (t:Types) RETURN \
           t.datetime_ambiguous_first.epochSeconds AS a, t.datetime_ambiguous_second.epochSeconds AS b, \
           t.datetime_ambiguous_second.timezone AS tz, toString(t.datetime_ambiguous_second) AS bs, \
           t.duration.months AS dm, t.duration.days AS dd, t.duration.seconds AS ds, t.duration.nanosecondsOfSecond AS dn, \
           toString(t.duration_negative.days) AS nd, \
           toString(t.time) AS time, toString(t.local_time) AS lt, toString(t.date_old) AS dold, \
           t.point_wgs84_3d.srid AS srid, t.point_wgs84_3d.z AS z, t.point_cartesian_3d.srid AS csrid, \
           valueType(t.dates) AS dates_type, valueType(t.points) AS points_type, \
           toString(t.datetimes[0]) AS dt0",
    )
    .await;
    assert_eq!(row.get::<i64>("a").unwrap(), 1_729_989_000);
    assert_eq!(row.get::<i64>("b").unwrap(), 1_729_992_600);
    assert_eq!(row.get::<String>("tz").unwrap(), "Europe/Berlin");
    assert_eq!(
        row.get::<String>("bs").unwrap(),
        "2024-10-27T02:30:00+01:00[Europe/Berlin]"
    );
    assert_eq!(
        [
            row.get::<i64>("dm").unwrap(),
            row.get("dd").unwrap(),
            row.get("ds").unwrap(),
            row.get("dn").unwrap()
        ],
        [14, 3, 5, 7]
    );
    assert_eq!(
        row.get::<String>("time").unwrap(),
        "12:34:56.123456789+05:45"
    );
    assert_eq!(row.get::<String>("lt").unwrap(), "23:59:59.999999999");
    assert_eq!(row.get::<String>("dold").unwrap(), "0001-01-01");
    assert_eq!(row.get::<i64>("srid").unwrap(), 4979);
    assert_eq!(row.get::<f64>("z").unwrap(), 35.5);
    assert_eq!(row.get::<i64>("csrid").unwrap(), 9157);
    assert_eq!(
        row.get::<String>("dates_type").unwrap(),
        "LIST<DATE NOT NULL> NOT NULL"
    );
    assert_eq!(
        row.get::<String>("points_type").unwrap(),
        "LIST<POINT NOT NULL> NOT NULL"
    );
    assert_eq!(
        row.get::<String>("dt0").unwrap(),
        "2024-10-27T02:30:00+01:00[Europe/Berlin]"
    );

    // Shapes.
    assert_eq!(
        count(
            &neo,
            0,
            "MATCH (:Person {name: 'Ada'})-[r:KNOWS]->(:Person {name: 'Bob'}) RETURN count(r) AS c"
        )
        .await,
        3
    );
    assert_eq!(
        count(&neo, 0, "MATCH (a)-[r:SELF]->(a) RETURN count(r) AS c").await,
        1
    );
    assert_eq!(
        count(
            &neo,
            0,
            "MATCH (n) WHERE size(labels(n)) = 0 RETURN count(n) AS c"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &neo,
            0,
            "MATCH (:Person:Admin:`Weird Label`) RETURN count(*) AS c"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &neo,
            0,
            "MATCH (n:`we``ird`) WHERE n.`key``tick` = 'backtick' RETURN count(n) AS c"
        )
        .await,
        1
    );
    assert_eq!(
        count(&neo, 0, "MATCH ()-[r:`RE``L`]->() RETURN count(r) AS c").await,
        1
    );
    assert_eq!(
        count(
            &neo,
            0,
            "MATCH (:Hub)-[r:LINK]->(:Leaf) RETURN count(r) AS c"
        )
        .await,
        3000
    );
    // Nothing of the restore's machinery is left.
    assert_eq!(
        count(&neo, 0, "MATCH (n:_AmberDrRestore) RETURN count(n) AS c").await,
        0
    );
    assert_eq!(
        count(
            &neo,
            0,
            "MATCH (n) WHERE n.__amber_dr_id IS NOT NULL RETURN count(n) AS c"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &neo,
            0,
            "SHOW INDEXES YIELD name WHERE name = 'amber_dr_restore_id' RETURN count(*) AS c"
        )
        .await,
        0
    );
    // The unique constraint works again.
    let g = neo.graph(0).await;
    let dup = g
        .run(query("CREATE (:Person {email: 'ada@example.org'})"))
        .await;
    assert!(dup.is_err(), "the unique constraint was not restored");
}

#[tokio::test]
async fn probe_reports_version_edition_and_counts() {
    let Some(neo) = Neo::from_env().await else {
        return;
    };
    let p = comp(&neo, 1).probe().await.unwrap();
    assert!(p.reachable);
    assert!(
        p.version.as_deref().unwrap_or("").starts_with("5.26"),
        "{:?}",
        p.version
    );
    assert_eq!(
        p.details.get("edition").and_then(|v| v.as_str()),
        Some("community")
    );
    assert!(p.details.get("nodes").and_then(|v| v.as_i64()).is_some());
    assert!(p
        .details
        .get("relationships")
        .and_then(|v| v.as_i64())
        .is_some());
}

#[tokio::test]
async fn wrong_credentials_are_a_clear_error() {
    let Some(neo) = Neo::from_env().await else {
        return;
    };
    let mut cfg = neo.config(0);
    cfg.password = "not-the-password".into();
    let c = Neo4j::new("graph-badpw", cfg).unwrap();
    let e = c.probe().await.unwrap_err().to_string();
    assert!(e.contains(&neo.uris[0]) && e.contains("`neo4j`"), "{e}");
    assert!(
        e.to_lowercase().contains("unauthorized") || e.to_lowercase().contains("authentication"),
        "{e}"
    );
    assert!(!e.contains("not-the-password"), "{e}");
    let (repo, _guard) = testkit::temp_repo();
    let m = Runner::new(repo, vec![Arc::new(c) as Arc<dyn Component>])
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    assert!(!m.is_complete());
}

#[tokio::test]
async fn wrong_database_name_is_a_clear_error() {
    let Some(neo) = Neo::from_env().await else {
        return;
    };
    let c = Neo4j::new("graph-nodb", neo.config(0).database("nosuchdb")).unwrap();
    let e = c.probe().await.unwrap_err().to_string();
    assert!(
        e.contains("`nosuchdb`") && e.contains("does not exist"),
        "{e}"
    );
}

/// A TCP proxy in front of the real server that cuts every connection once it has passed
/// `limit` bytes from the server: the server "goes away" in the middle of an export.
async fn cutting_proxy(target: String, limit: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let mut passed = 0usize;
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    passed += n;
                    if passed > limit || cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    format!("bolt://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gone_mid_export_fails_the_backup() {
    let Some(neo) = Neo::from_env().await else {
        return;
    };
    let _lock = common::SERVER_LOCK.lock().await;
    neo.populate(1).await;
    let proxy = cutting_proxy(
        neo.uris[1].trim_start_matches("bolt://").to_string(),
        20_000,
    )
    .await;
    let mut cfg = neo.config(1);
    cfg.uri = proxy;
    cfg.connect_timeout_secs = 5;
    let c: Arc<dyn Component> = Arc::new(Neo4j::new("graph-cut", cfg).unwrap());
    let (repo, _guard) = testkit::temp_repo();
    let m = Runner::new(repo.clone(), vec![c])
        .backup(&BackupOptions::default())
        .await
        .unwrap();
    assert!(!m.is_complete(), "a backup cut off mid-export was complete");
    let rec = m.components.values().next().unwrap();
    let err = rec.error.clone().unwrap_or_default();
    assert!(err.contains("graph-cut") && err.contains("export"), "{err}");
    assert!(rec.artifacts.is_empty(), "{:?}", rec.artifacts);
    assert!(repo.resolve("latest").await.is_err());
}
