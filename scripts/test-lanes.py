#!/usr/bin/env python3
"""Run the workspace's test binaries in parallel lanes (used by scripts/test.sh).

Reads cargo's `--no-run --message-format=json` output on stdin, puts each test binary in a lane
by the server it shares with other binaries (binaries of one lane run one after another, as
`cargo test` would run them; lanes run at the same time), runs them the way cargo does (working
directory = the package's directory, CARGO_MANIFEST_DIR/CARGO_PKG_NAME set), prints one line per
binary and the whole output of a failed one, and exits 1 if any binary failed.

Lanes (a binary not named here goes to `rest`):
  stores  every binary of amber-dr-neo4j, amber-dr-postgres and amber-dr-e2e, and the CLI's
          `cli` and `stack_e2e` tests: they share the stack's two Neo4j databases, which a test
          empties, and the Postgres cluster, whose roles (cluster-wide) a test creates and
          drops while another compares them;
  milvus  amber-dr-milvus, amber-dr-etcd (Milvus keeps its metadata in that etcd) and the
          amber-dr-e2e `milvus_etcd` test (both drivers on the stack's Milvus);
  minio   amber-dr-minio (long, CPU-bound S3 tests);
  rest    everything else, then the doc tests;
  last    the whole-stack end-to-end test (amber-dr-e2e `stack`), alone after every other lane:
          it needs the Postgres cluster and Neo4j as `stores` does, and it loads Milvus
          collections, which failed (Milvus released them) while the `milvus` lane loaded its own.
"""
import json
import os
import subprocess
import sys
import threading
import time

LANES = ["milvus", "stores", "minio", "rest", "last"]


def lane_of(pkg, name):
    if pkg == "amber-dr-e2e" and name == "stack":
        return "last"
    if pkg == "amber-dr-e2e" and name == "milvus_etcd":
        return "milvus"
    if pkg in ("amber-dr-neo4j", "amber-dr-postgres", "amber-dr-e2e") or (
        pkg == "amber-dr-cli" and name in ("cli", "stack_e2e")
    ):
        return "stores"
    if pkg in ("amber-dr-milvus", "amber-dr-etcd"):
        return "milvus"
    if pkg == "amber-dr-minio":
        return "minio"
    return "rest"


def main():
    extra = sys.argv[1:]  # arguments for every test binary (after `--`)
    lanes = {lane: [] for lane in LANES}
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        target = msg["target"]
        manifest = msg["manifest_path"]
        # The package name, from the first `name = ` of its Cargo.toml (the package id's form
        # varies across cargo versions).
        pkg_name = os.path.basename(os.path.dirname(manifest))
        with open(manifest, encoding="utf-8") as f:
            for row in f:
                if row.startswith("name = "):
                    pkg_name = row.split("=", 1)[1].strip().strip('"')
                    break
        kind = "lib" if "lib" in target["kind"] else target["kind"][0]
        label = f"{pkg_name} {kind} {target['name']}"
        lanes[lane_of(pkg_name, target["name"])].append(
            (label, msg["executable"], os.path.dirname(manifest), pkg_name)
        )
    lanes["rest"].append(("doc tests", None, None, None))
    for lane in lanes.values():
        lane.sort(key=lambda b: b[0])

    failed = []
    lock = threading.Lock()
    started = time.monotonic()

    def run_lane(lane, binaries):
        for label, exe, cwd, pkg_name in binaries:
            t0 = time.monotonic()
            if exe is None:
                cmd = ["cargo", "test", "--workspace", "--all-features", "--locked", "--doc"]
                cmd += ["--"] + extra if extra else []
                env, cwd = None, None
            else:
                cmd = [exe] + extra
                env = dict(os.environ, CARGO_MANIFEST_DIR=cwd, CARGO_PKG_NAME=pkg_name)
            proc = subprocess.run(
                cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            out = proc.stdout.decode("utf-8", "replace")
            summary = [l for l in out.splitlines() if l.startswith("test result:")]
            with lock:
                status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                print(
                    f"[{lane:6}] {label}: {status} in {time.monotonic() - t0:.0f}s"
                    f" (at {time.monotonic() - started:.0f}s)"
                    + (f" -- {summary[-1][len('test result: '):]}" if summary else ""),
                    flush=True,
                )
                if proc.returncode != 0:
                    failed.append(f"{lane}: {label}")
                    print(out, flush=True)

    threads = [
        threading.Thread(target=run_lane, args=(lane, binaries))
        for lane, binaries in lanes.items()
        if binaries and lane != "last"
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run_lane("last", lanes["last"])
    if failed:
        print("failed test binaries:\n  " + "\n  ".join(failed), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
