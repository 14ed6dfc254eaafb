//! The peers of `scripts/bench-neo4j.sh`, run through the same Bolt client (neo4rs) as the
//! driver:
//!
//! ```text
//! neo4j_peer json-export URI PASSWORD OUT     CALL apoc.export.json.all(null, {stream:true}), drained into OUT
//! neo4j_peer cypher-export URI PASSWORD OUT   CALL apoc.export.cypher.all(null, {stream:true}) (default options) into OUT
//! neo4j_peer cypher-replay URI PASSWORD FILE  replay FILE statement by statement (the runbook's restore path)
//! ```
#![allow(clippy::unwrap_used)]

use std::io::Write;

use amber_dr_neo4j::{Neo4j, Neo4jConfig};
use neo4rs::{query, Graph};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, uri, password, path] = args.as_slice() else {
        eprintln!("usage: neo4j_peer json-export|cypher-export|cypher-replay URI PASSWORD PATH");
        std::process::exit(2);
    };
    match mode.as_str() {
        "json-export" | "cypher-export" => {
            let (q, col) = if mode == "json-export" {
                (
                    "CALL apoc.export.json.all(null, {stream: true}) YIELD data RETURN data",
                    "data",
                )
            } else {
                (
                    "CALL apoc.export.cypher.all(null, {stream: true}) YIELD cypherStatements RETURN cypherStatements AS data",
                    "data",
                )
            };
            let g = Graph::new(uri.trim_start_matches("bolt://"), "neo4j", password.clone())
                .await
                .unwrap();
            let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
            let mut s = g.execute(query(q)).await.unwrap();
            let (mut bytes, mut rows) = (0usize, 0usize);
            while let Some(row) = s.next().await.unwrap() {
                let text: String = row.get(col).unwrap();
                bytes += text.len();
                rows += 1;
                out.write_all(text.as_bytes()).unwrap();
                // A row's text does not end its last line.
                if !text.ends_with('\n') {
                    out.write_all(b"\n").unwrap();
                }
            }
            out.flush().unwrap();
            eprintln!("{mode}: {rows} rows, {bytes} bytes");
        }
        "cypher-replay" => {
            let c = Neo4j::new("peer", Neo4jConfig::new(uri.clone(), password.clone())).unwrap();
            let file = tokio::fs::File::open(path).await.unwrap();
            let r = c
                .replay_cypher(tokio::io::BufReader::with_capacity(1 << 20, file), path)
                .await
                .unwrap();
            eprintln!("cypher-replay: {r:?}");
        }
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    }
}
