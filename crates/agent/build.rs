//! Stamps the git revision into both binaries' `--version`.
//! `VAULT_INJECTOR_REVISION` wins (the Makefile and the Dockerfile set it,
//! since a Docker build context usually has no `.git`); then `git`; then
//! "unknown" (a source tarball, no git installed).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=VAULT_INJECTOR_REVISION");
    let revision = match std::env::var("VAULT_INJECTOR_REVISION") {
        Ok(r) if !r.trim().is_empty() => r.trim().to_string(),
        _ => {
            // Rebuild when HEAD moves (a commit, a checkout), so a dev build
            // does not report the revision of its first build.
            // (A missing file would make Cargo rerun this on every build.)
            let mut watch = vec!["HEAD".to_string()];
            watch.extend(git(&["symbolic-ref", "-q", "HEAD"]));
            for path in watch {
                if let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", &path])
                    .filter(|p| std::path::Path::new(p).exists())
                {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=VAULT_INJECTOR_REVISION={revision}");
}
