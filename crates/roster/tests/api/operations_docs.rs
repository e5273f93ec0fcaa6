//! The operator docs against the real binary: the systemd unit passes `systemd-analyze verify`
//! (and keeps its hardening), the documented config files are accepted by `roster config`, and
//! every setting the binary has is documented in docs/operations.md and the README.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config_file::{settings, stdout};
use crate::helpers::*;

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
    for doc in ["docs/operations.md", "docs/deploy.md", "README.md"] {
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
