#!/usr/bin/env python3
"""Run Cypher against a Neo4j server with the official Python driver (a tool outside amber-dr).

Usage: cypher.py URI PASSWORD [--db NAME] < script.cypher
Statements are separated by lines holding only ';'. Each statement's rows are printed as one
line each, values rendered exactly (temporal values as ISO text, floats with repr), so the
output of a read query can be diffed.
"""
import sys

from neo4j import GraphDatabase


def render(v):
    if isinstance(v, list):
        return "[" + ", ".join(render(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {render(v[k])}" for k in sorted(v)) + "}"
    if isinstance(v, float):
        return repr(v)
    if hasattr(v, "iso_format"):
        zone = getattr(getattr(v, "tzinfo", None), "zone", None)
        return v.iso_format() + (f"[{zone}]" if zone else "")
    return repr(v)


def main():
    uri, password = sys.argv[1], sys.argv[2]
    db = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--db" else "neo4j"
    stmts = [s.strip() for s in sys.stdin.read().split("\n;\n") if s.strip()]
    with GraphDatabase.driver(uri, auth=("neo4j", password)) as driver:
        with driver.session(database=db) as session:
            for stmt in stmts:
                for record in session.run(stmt):
                    print(" | ".join(render(record[k]) for k in record.keys()))


if __name__ == "__main__":
    main()
