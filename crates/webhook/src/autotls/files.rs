//! Publishing the key pair into the cert dir the server's TLS reloader
//! watches, atomically for the PAIR: the same `..data` symlink swap the
//! kubelet uses for mounted Secrets, so a reader never sees a new
//! certificate with an old key.
//!
//! Layout: `DIR/..<nanos>/{tls.crt,tls.key}`, `DIR/..data -> ..<nanos>`,
//! `DIR/tls.crt -> ..data/tls.crt`, `DIR/tls.key -> ..data/tls.key`.

use std::io::Write;
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::Path;

use super::pki::{TLS_CERT_KEY, TLS_KEY_KEY};
use super::{Error, Result};

const DATA: &str = "..data";

/// Writes the pair unless the dir already holds exactly it. Returns whether
/// anything changed.
pub fn publish(dir: &Path, cert_pem: &str, key_pem: &str) -> Result<bool> {
    let io = |what: &'static str| {
        let dir = dir.to_owned();
        move |source| Error::CertDir { what, dir, source }
    };
    let same = |name: &str, want: &str| {
        std::fs::read_to_string(dir.join(name)).is_ok_and(|have| have == want)
    };
    if same(TLS_CERT_KEY, cert_pem) && same(TLS_KEY_KEY, key_pem) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).map_err(io("creating"))?;
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let version = dir.join(&stamp);
    std::fs::create_dir(&version).map_err(io("creating a version dir in"))?;
    write_synced(&version.join(TLS_CERT_KEY), cert_pem.as_bytes(), 0o644)
        .map_err(io("writing tls.crt in"))?;
    write_synced(&version.join(TLS_KEY_KEY), key_pem.as_bytes(), 0o600)
        .map_err(io("writing tls.key in"))?;

    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    symlink(&stamp, &tmp_link).map_err(io("linking in"))?;
    let previous = std::fs::read_link(dir.join(DATA)).ok();
    std::fs::rename(&tmp_link, dir.join(DATA)).map_err(io("swapping ..data in"))?;

    for name in [TLS_CERT_KEY, TLS_KEY_KEY] {
        let target = Path::new(DATA).join(name);
        let link = dir.join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            let tmp = dir.join(format!(".{name}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            symlink(&target, &tmp).map_err(io("linking in"))?;
            std::fs::rename(&tmp, &link).map_err(io("linking in"))?;
        }
    }
    if let Some(old) = previous.filter(|p| p.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(true)
}

fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn publishes_through_a_data_symlink_and_swaps_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("certs");
        assert!(publish(&d, "CERT1", "KEY1").unwrap());
        assert_eq!(std::fs::read_to_string(d.join("tls.crt")).unwrap(), "CERT1");
        assert_eq!(std::fs::read_to_string(d.join("tls.key")).unwrap(), "KEY1");
        let first = std::fs::read_link(d.join("..data")).unwrap();
        let key_mode = std::fs::metadata(d.join("tls.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);

        assert!(
            !publish(&d, "CERT1", "KEY1").unwrap(),
            "same pair: no write"
        );

        assert!(publish(&d, "CERT2", "KEY2").unwrap());
        assert_eq!(std::fs::read_to_string(d.join("tls.crt")).unwrap(), "CERT2");
        assert_eq!(std::fs::read_to_string(d.join("tls.key")).unwrap(), "KEY2");
        let second = std::fs::read_link(d.join("..data")).unwrap();
        assert_ne!(first, second);
        assert!(!d.join(&first).exists(), "old version removed");
        let entries: Vec<_> = std::fs::read_dir(&d).unwrap().flatten().collect();
        assert_eq!(
            entries.len(),
            4,
            "..data, one version, two links: {entries:?}"
        );
    }

    #[test]
    fn replaces_plain_files_left_by_an_older_layout() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), "OLD").unwrap();
        std::fs::write(dir.path().join("tls.key"), "OLD").unwrap();
        assert!(publish(dir.path(), "C", "K").unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
            "C"
        );
        assert!(std::fs::symlink_metadata(dir.path().join("tls.key"))
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
