//! The commands' runs: JSON output, locks, interrupted and killed backups, prune, failed
//! components, relative paths, the metrics file.

use super::*;

#[test]
fn json_output_everywhere() {
    let site = Site::new();
    let v = site.expect(0, &["--json", "backup"]).json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["status"], "complete");
    let id = v["id"].as_str().expect("id").to_string();
    assert!(v["components"]["uploads"]["artifacts"].is_array());

    let list = site.expect(0, &["list", "--json"]).json();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "complete");
    assert_eq!(
        site.expect(0, &["show", "--json", &id]).json()["id"],
        id.as_str()
    );
    assert_eq!(
        site.expect(0, &["verify", "--json", &id]).json()["ok"],
        true
    );
    let v = site.expect(0, &["--json", "doctor"]).json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["components"][0]["name"], "uploads");
    let v = site
        .expect(0, &["--json", "restore", &id, "--dry-run"])
        .json();
    assert_eq!(v["dry_run"], true);
    let v = site.expect(0, &["--json", "restore", &id, "--yes"]).json();
    assert_eq!(v["ok"], true);
    assert!(v["outcome"]["safety_backup"].is_string());
    let v = site
        .expect(0, &["--json", "prune", "--keep-last", "5", "--dry-run"])
        .json();
    assert!(v["kept"].is_array());
    let v = site.expect(0, &["--json", "unlock"]).json();
    assert_eq!(v["removed"], Value::Null);

    // Errors are JSON too, on stdout.
    for (code, args) in [
        (2, vec!["--json", "prune"]),
        (2, vec!["--json", "backup", "--bogus"]),
        (1, vec!["--json", "show", "20000101_000000"]),
        (2, vec!["--json", "restore", &id]),
    ] {
        let v = site.expect(code, &args).json();
        assert_eq!(v["ok"], false, "{args:?}");
        assert_eq!(v["exit_code"], code, "{args:?}");
        assert!(v["error"].as_str().map(|e| !e.is_empty()).unwrap_or(false));
    }
    let v = Site::empty().expect(0, &["--json", "init"]).json();
    assert_eq!(v["ok"], true);
}

#[test]
fn a_lock_held_by_a_live_process_blocks_and_unlock_clears_it() {
    let site = Site::new();
    site.backup();
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let pid = sleeper.id();
    let lock = serde_json::json!({
        "host": hostname(),
        "pid": pid,
        "operation": "backup",
        "since": "2026-01-01T00:00:00Z",
        "token": "held-by-test",
    });
    fs::create_dir_all(site.repo().join("locks")).expect("mkdir");
    fs::write(site.repo().join("locks/repository.lock"), lock.to_string()).expect("write lock");

    let r = site.expect(1, &["backup"]);
    assert!(r.stderr.contains(&format!("pid {pid}")), "{}", r.both());
    assert!(r.stderr.contains("amber-dr unlock"), "{}", r.both());
    let r = site.expect(1, &["restore", "latest", "--yes"]);
    assert!(r.stderr.contains(&format!("pid {pid}")), "{}", r.both());
    site.expect(1, &["prune", "--keep-last", "1"]);
    // Reading is not blocked.
    site.expect(0, &["list"]);
    site.expect(0, &["verify", "latest"]);

    let r = site.expect(0, &["unlock"]);
    assert!(r.stdout.contains(&pid.to_string()), "{}", r.both());
    assert!(!site.repo().join("locks/repository.lock").exists());
    let r = site.expect(0, &["unlock"]);
    assert!(r.stdout.contains("not locked"), "{}", r.both());
    site.backup();

    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn interrupted_and_killed_backups_are_never_complete() {
    let site = Site::new();
    // 300 MB of incompressible data, so that a backup runs long enough to be stopped.
    let big = site.uploads().join("big");
    fs::create_dir_all(&big).expect("mkdir");
    for i in 0..6u64 {
        let mut f = fs::File::create(big.join(format!("part{i}.bin"))).expect("create");
        for j in 0..50u64 {
            f.write_all(&pseudo_random(i * 1000 + j + 1, 1 << 20))
                .expect("write");
        }
    }

    // SIGTERM: exit 130, the lock released, no complete backup.
    let mut child = site.cmd(&["backup"]).spawn().expect("spawn backup");
    let first = wait_for_backup_dir(&site, &mut child, &[]);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted: no backup was completed"),
        "{stderr}"
    );
    assert!(
        !site.repo().join("locks/repository.lock").exists(),
        "lock left behind"
    );
    assert!(!first.join("manifest.json").exists());
    assert!(list_json(&site).iter().all(|e| e["status"] != "complete"));

    // SIGKILL: nothing can clean up; the backup is listed as incomplete, the lock stays.
    let mut child = site.cmd(&["backup"]).spawn().expect("spawn backup");
    let killed = wait_for_backup_dir(&site, &mut child, std::slice::from_ref(&first));
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert!(site.repo().join("locks/repository.lock").exists());
    let killed_id = killed
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entries = list_json(&site);
    let entry = entries
        .iter()
        .find(|e| e["id"] == killed_id.as_str())
        .unwrap_or_else(|| panic!("{killed_id} not listed: {entries:?}"));
    assert_eq!(entry["status"], "incomplete", "{entries:?}");
    site.expect(1, &["show", &killed_id]);
    site.expect(1, &["verify", "latest"]); // no complete backup yet

    // The next backup takes over the dead process's lock and succeeds.
    fs::remove_dir_all(&big).expect("rm big");
    let id = site.backup();
    site.expect(0, &["verify", &id]);
    assert!(!site.repo().join("locks/repository.lock").exists());
    let statuses: Vec<String> = list_json(&site)
        .iter()
        .map(|e| e["status"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(statuses.iter().any(|s| s == "incomplete"), "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| *s == "complete").count(),
        1,
        "{statuses:?}"
    );
}

#[test]
fn prune_keeps_the_newest() {
    let site = Site::new();
    let ids: Vec<String> = (0..3).map(|_| site.backup()).collect();

    let r = site.expect(2, &["prune"]);
    assert!(r.stderr.contains("--keep-last"), "{}", r.both());

    let v = site
        .expect(0, &["--json", "prune", "--keep-last", "1", "--dry-run"])
        .json();
    assert_eq!(v["deleted"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(list_json(&site).len(), 3);

    let r = site.expect(0, &["prune", "--keep-last", "1"]);
    assert!(r.stdout.contains("deleted"), "{}", r.both());
    let left = list_json(&site);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["id"], ids[2].as_str());
    for old in &ids[..2] {
        assert!(!site.repo().join(old).exists(), "{old} still there");
    }
    site.expect(0, &["verify", "latest"]);
    // Without a config file, with --repo.
    let repo = site.repo().display().to_string();
    Site::empty().expect(0, &["--repo", &repo, "prune", "--keep-daily", "1"]);
}

#[test]
fn a_failed_component_fails_the_backup_but_prints_its_id() {
    let site = Site::new();
    let config =
        format!("{CONFIG}\n[components.gone]\nkind = \"files\"\npath = \"./does-not-exist\"\n");
    fs::write(site.path("amber-dr.toml"), config).expect("write");
    let r = site.expect(1, &["backup"]);
    let id = r.stdout.lines().last().unwrap_or_default().to_string();
    assert!(is_id(&id), "{}", r.both());
    assert!(r.stdout.contains("FAILED"), "{}", r.both());
    assert!(r.stderr.contains("error: "), "{}", r.both());
    assert_eq!(list_json(&site)[0]["status"], "failed");
    site.expect(3, &["verify", &id]);
    // The good part can still be restored on its own; `--skip` leaves the other out.
    site.expect(0, &["restore", &id, "--skip", "gone", "--yes"]);
    site.expect(1, &["restore", &id, "--yes"]);
    // Quiet: the id alone.
    let r = site.expect(0, &["-q", "backup", "--only", "uploads"]);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.both());
    let v = site.expect(1, &["--json", "backup"]).json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["status"], "failed");
}

#[test]
fn paths_are_relative_to_the_config_file_and_repo_to_the_cwd() {
    let site = Site::new();
    let elsewhere = Site::empty();
    let config = site.path("amber-dr.toml").display().to_string();
    let id = {
        let r = elsewhere.expect(0, &["--config", &config, "backup"]);
        r.stdout.lines().last().unwrap_or_default().to_string()
    };
    assert!(site.repo().join(&id).join("manifest.json").is_file());
    // --repo overrides [repository] url, relative to the current directory.
    let r = elsewhere.expect(0, &["--config", &config, "--repo", "other-repo", "backup"]);
    let id2 = r.stdout.lines().last().unwrap_or_default().to_string();
    assert!(elsewhere
        .path("other-repo")
        .join(&id2)
        .join("manifest.json")
        .is_file());
    elsewhere.expect(0, &["--repo", "other-repo", "verify", "latest"]);
}

#[test]
fn metrics_file_records_runs_and_keeps_the_last_success() {
    let site = Site::new();
    let prom = site.path("metrics/amber-dr.prom");
    fs::create_dir_all(prom.parent().expect("parent")).expect("mkdir");
    let p = prom.to_str().expect("utf-8 path");
    site.expect(0, &["--metrics-file", p, "backup"]);
    site.expect(0, &["--metrics-file", p, "verify", "latest"]);
    let first = fs::read_to_string(&prom).expect("metrics written");
    let lbl = r#"{component="uploads",kind="files"}"#;
    for line in [
        "amber_dr_backup_last_run_success 1".to_string(),
        format!("amber_dr_component_last_run_success{lbl} 1"),
        r#"amber_dr_verify_last_run_success{level="full"} 1"#.to_string(),
    ] {
        assert!(first.lines().any(|l| l == line), "`{line}` in:\n{first}");
    }
    let success_line = |text: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "amber_dr_component_last_success_timestamp_seconds{lbl} "
                ))
            })
            .map(str::to_string)
    };
    let first_success = success_line(&first).expect("last success time");
    assert!(first.lines().any(|l| l.starts_with(&format!(
        "amber_dr_component_last_success_stored_bytes{lbl} "
    ))));

    // The uploads directory disappears: the run fails, the last success time stays.
    fs::rename(site.uploads(), site.path("moved")).expect("mv");
    site.expect(1, &["--metrics-file", p, "backup"]);
    let second = fs::read_to_string(&prom).expect("metrics");
    assert!(
        second
            .lines()
            .any(|l| l == "amber_dr_backup_last_run_success 0"),
        "{second}"
    );
    assert!(
        second
            .lines()
            .any(|l| l == format!("amber_dr_component_last_run_success{lbl} 0")),
        "{second}"
    );
    assert_eq!(
        success_line(&second),
        Some(first_success),
        "last success kept"
    );
    // A run that cannot even start (a broken config) still drops the gauge.
    fs::rename(site.path("moved"), site.uploads()).expect("mv back");
    site.expect(0, &["--metrics-file", p, "backup"]);
    fs::write(site.path("amber-dr.toml"), "not = [valid").expect("write");
    site.expect(2, &["--metrics-file", p, "backup"]);
    let third = fs::read_to_string(&prom).expect("metrics");
    assert!(
        third
            .lines()
            .any(|l| l == "amber_dr_backup_last_run_success 0"),
        "{third}"
    );
    // Only the metrics file is in its directory: the temporary file was renamed over it.
    assert_eq!(
        fs::read_dir(prom.parent().expect("dir"))
            .expect("ls")
            .count(),
        1
    );
}
