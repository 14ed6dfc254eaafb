#!/usr/bin/env python3
"""Run the workspace's test binaries in parallel lanes (used by scripts/test.sh).

Reads cargo's `--no-run --message-format=json` output on stdin, puts each test binary in a lane
by the server it shares with other binaries (binaries of one lane run one after another, as
`cargo test` would run them; lanes run at the same time), runs them the way cargo does (working
directory = the package's directory, CARGO_MANIFEST_DIR/CARGO_PKG_NAME set), prints one line per
binary and the whole output of a failed one, and exits 1 if any binary failed.

Lanes are declared where the tests are: a line `// test-lane: LANE (why)` in the test file
(for a crate's unit tests, in any file under its src/). The lanes:
  stores  tests that use the Postgres cluster or Neo4j: a test empties the stack's two Neo4j
          databases, and creates and drops Postgres roles (cluster-wide) while another
          compares them, so they run one after another;
  milvus  tests that use Milvus or its etcd (Milvus keeps its metadata in that etcd);
  minio   long, CPU-bound S3 tests;
  rest    everything else, then the doc tests;
  last    alone after every other lane (the whole-stack end-to-end test: it loads Milvus
          collections, which failed while the milvus lane loaded its own).
A test binary whose sources name a server of the stack (an AMBER_DR_<SERVER>_* variable) and
declare no lane fails the run, as does one that uses Postgres or Neo4j outside `stores`/`last`
or Milvus/etcd outside `milvus`/`last`: tests that share a server's global state never run in
parallel by accident. A binary that names no server may leave the declaration out (`rest`).

Every driver's `conformance` binary runs twice, the second time with
AMBER_DR_TEST_ENCRYPTION=1 (the suite's repositories are then encrypted, and testkit::run_all
runs the checks whose path goes through encryption: round trip, damage, a falsified record):
every store round-trips through an encrypted repository in every run.
"""
import glob
import json
import os
import re
import subprocess
import sys
import threading
import time

LANES = ["milvus", "stores", "minio", "rest", "last"]


DECLARATION = re.compile(r"^\s*//[/!]?\s*test-lane:\s*([a-z]+)", re.M)
SERVER = re.compile(r"AMBER_DR_(PG|NEO4J|MILVUS|ETCD|S3|MOTO|DOCKER)_")
# Servers with global state shared by tests, and the lanes that keep their users apart.
SERIALISED = {"PG": ("stores", "last"), "NEO4J": ("stores", "last"),
              "MILVUS": ("milvus", "last"), "ETCD": ("milvus", "last")}


def sources_of(target, package_dir):
    """The Rust files a test binary is built from, as far as tests share code by convention:
    a unit-test binary's src/ (not its tests/), an integration test's file (every file of its
    directory for a tests/NAME/main.rs); then, followed
    from those, tests/common/ for `mod common;`, the file a `#[path = "..."]` names (with the
    files beside it), and the e2e package's tests/lib.rs for `amber_dr_e2e`. The binary's own
    files come first (`own` of them: see lane_of)."""
    src = target["src_path"]
    if "lib" in target["kind"]:
        tests_dir = os.path.join(package_dir, "tests") + os.sep
        files = [src] + [
            p
            for p in glob.glob(os.path.join(os.path.dirname(src), "**", "*.rs"), recursive=True)
            if p != src and not p.startswith(tests_dir)
        ]
    elif os.path.basename(src) == "main.rs":
        # An integration test of several files (tests/NAME/main.rs and its modules): all its own.
        files = [src] + [
            p
            for p in sorted(glob.glob(os.path.join(os.path.dirname(src), "**", "*.rs"), recursive=True))
            if p != src
        ]
    else:
        files = [src]
    own = list(files)
    i = 0
    while i < len(files):
        path = files[i]
        i += 1
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        more = []
        here = os.path.dirname(path)
        if re.search(r"^\s*mod common;", text, re.M):
            more += glob.glob(os.path.join(here, "common", "**", "*.rs"), recursive=True)
        for rel in re.findall(r'#\[path\s*=\s*"([^"]+)"\]', text):
            target_file = os.path.normpath(os.path.join(here, rel))
            more += glob.glob(os.path.join(os.path.dirname(target_file), "**", "*.rs"), recursive=True)
        if "amber_dr_e2e" in text:
            more.append(os.path.join(package_dir, "lib.rs"))
        files += [m for m in more if m not in files]
    return own, files


def lane_of(label, target, package_dir):
    """The declared lane of a test binary, checked against the servers it names."""
    declared, servers = set(), set()
    # The declaration is the binary's own (its test file; a crate's src/ for unit tests);
    # the servers it names may come from the shared helpers it uses too.
    own, sources = sources_of(target, package_dir)
    for path in sources:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        if path in own:
            declared.update(DECLARATION.findall(text))
        servers.update(SERVER.findall(text))
    if len(declared) > 1:
        raise SystemExit(f"{label}: several lanes declared ({', '.join(sorted(declared))})")
    lane = next(iter(declared), None)
    if lane is not None and lane not in LANES:
        raise SystemExit(f"{label}: unknown lane `{lane}` (lanes: {', '.join(LANES)})")
    if lane is None:
        if servers:
            raise SystemExit(
                f"{label}: uses the stack's {', '.join(sorted(servers))} but declares no lane;"
                " add `// test-lane: LANE (why)` to the test file (see scripts/test-lanes.py)"
            )
        return "rest"
    for server in servers:
        allowed = SERIALISED.get(server)
        if allowed and lane not in allowed:
            raise SystemExit(
                f"{label}: uses {server} in lane `{lane}`; tests of {server} run in"
                f" {' or '.join(allowed)}"
            )
    return lane


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
        lane = lane_of(label, target, os.path.dirname(manifest))
        lanes[lane].append(
            (label, msg["executable"], os.path.dirname(manifest), pkg_name, {})
        )
        # Every driver's conformance suite runs a second time through an encrypted repository
        # (testkit::temp_repo reads AMBER_DR_TEST_ENCRYPTION): every store round-trips
        # through encryption in every run.
        if kind == "test" and target["name"] == "conformance" and pkg_name.startswith("amber-dr-"):
            lanes[lane].append(
                (
                    label + " (encrypted repository)",
                    msg["executable"],
                    os.path.dirname(manifest),
                    pkg_name,
                    {"AMBER_DR_TEST_ENCRYPTION": "1"},
                )
            )
    lanes["rest"].append(("doc tests", None, None, None, {}))
    if os.environ.get("AMBER_DR_TEST_LANES_LIST") == "1":
        for lane, binaries in lanes.items():
            for b in binaries:
                print(f"{lane:6} {b[0]}")
        return 0
    for lane in lanes.values():
        lane.sort(key=lambda b: b[0])

    failed = []
    lock = threading.Lock()
    started = time.monotonic()

    def run_lane(lane, binaries):
        for label, exe, cwd, pkg_name, extra_env in binaries:
            t0 = time.monotonic()
            if exe is None:
                cmd = ["cargo", "test", "--workspace", "--all-features", "--locked", "--doc"]
                cmd += ["--"] + extra if extra else []
                env, cwd = None, None
            else:
                cmd = [exe] + extra
                env = dict(os.environ, CARGO_MANIFEST_DIR=cwd, CARGO_PKG_NAME=pkg_name)
                env.update(extra_env)
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
