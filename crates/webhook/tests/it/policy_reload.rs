//! The policy follows its ConfigMap: Kubernetes updates a mounted ConfigMap
//! by writing a new timestamped directory and atomically renaming the
//! `..data` symlink onto it; `policy.yaml` is a symlink through `..data`.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vault_injector_core::config::PolicySettings;
use vault_injector_core::policy::{PolicyHandle, PolicyRequest};

const V1: &str = "rules:\n  - {name: v1, namespaces: [team-a], roles: [web]}\n";
const V2: &str = "rules:\n  - {name: v2, namespaces: [team-a], roles: [admin]}\n";

/// A ConfigMap volume as the kubelet lays it out.
struct ConfigMapDir {
    dir: tempfile::TempDir,
    generation: u32,
}

impl ConfigMapDir {
    fn new(content: &str) -> Self {
        let mut me = Self {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
        };
        me.swap(content);
        symlink("..data/policy.yaml", me.file()).unwrap();
        me
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("policy.yaml")
    }

    /// Writes `..<generation>/policy.yaml`, then renames a fresh `..data_tmp`
    /// symlink over `..data` and removes the old directory, as the kubelet's
    /// atomic writer does.
    fn swap(&mut self, content: &str) {
        let root = self.dir.path();
        let old = root.join(format!("..gen_{}", self.generation));
        self.generation += 1;
        let name = format!("..gen_{}", self.generation);
        std::fs::create_dir(root.join(&name)).unwrap();
        std::fs::write(root.join(&name).join("policy.yaml"), content).unwrap();
        let tmp = root.join("..data_tmp");
        symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
        if old.exists() {
            std::fs::remove_dir_all(old).unwrap();
        }
    }
}

fn asks(role: &str) -> PolicyRequest {
    PolicyRequest {
        namespace: "team-a".into(),
        service_account: "web".into(),
        role: Some(role.into()),
        ..Default::default()
    }
}

fn handle(dir: &Path) -> PolicyHandle {
    PolicyHandle::from_settings(&PolicySettings {
        file: Some(dir.join("policy.yaml")),
        reload_interval: "100ms".into(),
    })
    .unwrap()
}

#[test]
fn reload_follows_the_data_symlink_swap() {
    let mut cm = ConfigMapDir::new(V1);
    let h = handle(cm.dir.path());
    assert!(h.check(&asks("web")).is_ok());
    assert!(h.check(&asks("admin")).is_err());
    assert!(!h.reload().unwrap(), "unchanged content is not a reload");

    cm.swap(V2);
    assert!(h.reload().unwrap());
    let e = h.check(&asks("web")).unwrap_err();
    assert_eq!(e.rule.as_deref(), Some("v2"));
    assert!(h.check(&asks("admin")).is_ok());
}

#[test]
fn a_broken_update_keeps_the_last_good_policy() {
    let mut cm = ConfigMapDir::new(V1);
    let h = handle(cm.dir.path());
    cm.swap("rules:\n  - name: half-edited\n    namespaces: [\n");
    let e = h.reload().unwrap_err().to_string();
    assert!(e.contains("policy.yaml"), "{e}");
    assert!(h.check(&asks("web")).is_ok(), "v1 still in force");
    assert!(h.check(&asks("admin")).is_err(), "and still enforced");
    cm.swap(V2);
    assert!(h.reload().unwrap());
    assert!(h.check(&asks("admin")).is_ok());
}

#[tokio::test]
async fn the_background_reloader_picks_up_changes() {
    let mut cm = ConfigMapDir::new(V1);
    let h = Arc::new(handle(cm.dir.path()));
    let stop = tokio_util::sync::CancellationToken::new();
    let task =
        vault_injector::policy_reload::spawn(h.clone(), Duration::from_millis(100), stop.clone());
    cm.swap(V2);
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if h.check(&asks("admin")).is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "policy v2 not loaded within 2.5s");
    // The shared shutdown token ends it; nothing needs aborting.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the reloader stops once the token is cancelled")
        .unwrap();
}
