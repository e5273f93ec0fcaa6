//! The operator docs against the real binary: the systemd unit passes `systemd-analyze verify`
//! (and keeps its hardening), the documented config files are accepted by `roster config`,
//! every setting the binary has is documented in docs/operations.md and the README, and so is
//! every metric (with its labels) and every log line at INFO and above.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config_file::{settings, stdout};
use crate::helpers::*;
use crate::prometheus::Scrape;
use crate::source;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

/// `systemd-analyze` from PATH or /usr/bin; its absence is a failure, not a skip.
fn systemd_analyze() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("systemd-analyze"))
        .find(|p| p.is_file())
        .expect("systemd-analyze not found: install the Debian package `systemd` (scripts/test does)")
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = repo_file("docs/roster.service");
    for directive in [
        "DynamicUser=yes",
        "StateDirectory=roster",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Restart=on-failure",
        "LimitNOFILE=",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(directive)), "docs/roster.service sets {directive}");
    }
    // `verify` checks that ExecStart's program exists: point it at the binary under test.
    let installed = "ExecStart=/usr/local/bin/roster ";
    assert_eq!(unit.matches(installed).count(), 1, "one ExecStart running /usr/local/bin/roster");
    let unit = unit.replace(installed, &format!("ExecStart={} ", env!("CARGO_BIN_EXE_roster")));
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("roster.service");
    std::fs::write(&file, unit).expect("write the unit");

    let out = Command::new(systemd_analyze()).args(["verify", "--man=no"]).arg(&file).output().expect("run verify");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Unknown keys and bad values are only warnings to systemd: any output fails the test.
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");

    // The hardening keeps the exposure score low (0 = locked down, 10 = none; this unit: 1.6).
    let out = Command::new(systemd_analyze())
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&file)
        .output()
        .expect("run security");
    assert!(out.status.success(), "systemd-analyze security:\n{}", String::from_utf8_lossy(&out.stdout));
}

/// The ```toml blocks of a Markdown file.
fn toml_blocks(markdown: &str) -> Vec<String> {
    markdown.split("```toml\n").skip(1).map(|rest| rest.split("```").next().unwrap_or_default().to_owned()).collect()
}

#[tokio::test]
async fn the_documented_config_files_are_valid() {
    for doc in ["docs/operations.md", "README.md"] {
        let blocks = toml_blocks(&repo_file(doc));
        assert!(!blocks.is_empty(), "{doc} shows a config file");
        for block in blocks {
            let dir = tempfile::tempdir().expect("tmp");
            let file = dir.path().join("roster.toml");
            std::fs::write(&file, &block).expect("write");
            let out = run_roster(&["config", "--config", file.to_str().expect("utf-8")], &[]).await;
            let shown = settings(&out);
            for key in block.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once(" = ")).map(|p| p.0) {
                assert_eq!(shown[key].1, "file", "{doc}: {key} is read from the file");
            }
        }
    }
}

#[tokio::test]
async fn every_setting_is_documented() {
    let out = run_roster(&["config"], &[]).await;
    let keys = settings(&out);
    assert!(keys.len() >= 15, "{}", stdout(&out));
    let (operations, readme) = (repo_file("docs/operations.md"), repo_file("README.md"));
    for key in keys.keys() {
        assert!(operations.contains(&format!("| `{key}` |")), "docs/operations.md's settings table lists `{key}`");
        assert!(readme.contains(&format!("`--{key}`")), "the README's flag table lists `--{key}`");
    }
}

/// The metric names of docs/operations.md's metrics table, each with its row.
fn documented_metrics(operations: &str) -> BTreeMap<String, String> {
    operations
        .lines()
        .filter_map(|l| l.strip_prefix("| `roster_").map(|rest| (rest, l)))
        .map(|(rest, row)| (format!("roster_{}", rest.split('`').next().unwrap_or("")), row.to_owned()))
        .collect()
}

#[test]
fn every_metric_in_the_code_is_documented_and_nothing_else() {
    let mut in_code = BTreeSet::new();
    for (path, text) in source::rust_files() {
        for kind in ["counter", "gauge", "histogram"] {
            for args in source::macro_calls(&text, kind) {
                let (_, name) = source::literals(args)
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| panic!("{}: a {kind} without a literal name: {args}", path.display()));
                assert!(name.starts_with("roster_"), "{}: metric {name} has no roster_ prefix", path.display());
                in_code.insert(name);
            }
        }
    }
    assert!(in_code.len() >= 20, "{in_code:?}");
    let documented: BTreeSet<String> = documented_metrics(&repo_file("docs/operations.md")).into_keys().collect();
    assert_eq!(in_code, documented, "the metrics of the code and of docs/operations.md");
}

#[tokio::test]
async fn every_metric_served_is_documented_with_its_labels() {
    let server = TestServer::start().await;
    let client = user_client(&server, "alice").await; // a few requests, so HTTP series exist
    assert_eq!(client.get(server.url("/")).send().await.expect("GET /").status(), 200);
    let scrape = Scrape::get(&server.url("/metrics")).await;
    let documented = documented_metrics(&repo_file("docs/operations.md"));
    assert!(scrape.types.len() >= 20, "{:?}", scrape.types.keys());
    for (family, kind) in &scrape.types {
        let row = documented.get(family).unwrap_or_else(|| panic!("{family} is not in docs/operations.md"));
        assert!(row.contains(&format!("| {kind} |")), "{family} is documented as a {kind}: {row}");
    }
    for sample in &scrape.samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| sample.name.strip_suffix(suffix).filter(|f| scrape.types.contains_key(*f)))
            .unwrap_or(&sample.name);
        let row = &documented[family];
        for (label, value) in sample.labels.iter().filter(|(l, _)| *l != "le") {
            assert!(row.contains(&format!("`{label}`")), "{family}'s label {label} is documented: {row}");
            // Methods, routes and statuses are open-ended; every other label's values are listed.
            if !["method", "route", "status"].contains(&label.as_str()) {
                assert!(row.contains(&format!("`{value}`")), "{family}{{{label}=\"{value}\"}} is documented: {row}");
            }
        }
    }
}

#[test]
fn every_log_line_is_documented() {
    let operations = repo_file("docs/operations.md");
    let (mut checked, mut missing) = (0, Vec::new());
    for (path, text) in source::rust_files() {
        for level in ["tracing::info", "tracing::warn", "tracing::error"] {
            for args in source::macro_calls(&text, level) {
                // The message: the last literal that is not a field's value or the target.
                let message = source::literals(args)
                    .into_iter()
                    .filter(|(before, _)| !matches!(before, Some('=' | ':')))
                    .map(|(_, literal)| literal)
                    .next_back()
                    .unwrap_or_else(|| panic!("{}: a log line without a message: {args}", path.display()));
                // Up to its first interpolation; the docs write `…` there.
                let fixed = message.split('{').next().unwrap_or("").trim_end_matches([' ', ':', '[']);
                if !operations.contains(fixed) {
                    missing.push(format!("{}: {level} {message:?}", path.display()));
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 60, "found {checked} log lines");
    assert!(missing.is_empty(), "log lines not in docs/operations.md's log table:\n{}", missing.join("\n"));
}
