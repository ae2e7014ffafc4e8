//! `copy-self DIR`: the init container that puts the agent binary where the
//! wrapped app containers' `exec` command finds it.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support;

#[test]
fn copies_the_agent_under_the_name_the_exec_command_uses() {
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().join("bin");
    let out = Command::new(support::bin())
        .arg("copy-self")
        .arg(&bin_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // patch.rs writes `/vault/bin/vault-injector-agent exec -- ...`.
    let copy = bin_dir.join(vault_injector_core::contract::AGENT_BIN);
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o555);
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(support::bin()).unwrap()
    );
    let names: Vec<_> = std::fs::read_dir(&bin_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    let version = Command::new(&copy).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("vault-injector-agent "),
        "{version:?}"
    );
}
