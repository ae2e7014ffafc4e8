//! The volume profile document and its validation. Pure: the Vault read
//! is the webhook's profile store.

use k8s_openapi::api::core::v1::{Volume, VolumeMount};
use serde_json::{Map, Value};

use crate::policy::glob;

/// Why a volume could not be added. Every message names the profile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("volume profile {profile:?} not found in Vault (looked at {path})")]
    NotFound { profile: String, path: String },
    #[error("volume profile {profile:?} is malformed: field {field:?} {reason}")]
    Malformed {
        profile: String,
        field: String,
        reason: String,
    },
    #[error("volume profile {profile:?} does not allow this pod: {rule}")]
    NotAllowed { profile: String, rule: String },
    #[error("volume profile {profile:?} cannot be read: {reason}")]
    VaultUnavailable { profile: String, reason: String },
}

/// Prefix of the pod volume a profile becomes: `vault-injector-vol-NAME`.
pub const VOLUME_NAME_PREFIX: &str = "vault-injector-vol-";

/// A validated profile.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeProfile {
    /// The volume source, as a `Volume` whose name is filled in per pod.
    pub volume: Volume,
    pub mount_path: String,
    pub read_only: bool,
    pub sub_path: Option<String>,
    pub allowed_namespaces: Vec<String>,
    /// `sa` or `ns/sa` globs; empty means any service account in an allowed
    /// namespace.
    pub allowed_service_accounts: Vec<String>,
}

/// A profile turned into pod spec parts for one `volume-NAME` annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedVolume {
    /// The NAME of `volume-NAME`.
    pub name: String,
    pub profile: String,
    pub volume: Volume,
    /// Add to every target container.
    pub mount: VolumeMount,
}

/// Profile names become part of a Vault path read with the webhook's own
/// identity, so they are held to a strict alphabet: no `/`, no `..`, nothing
/// that could walk the read somewhere else.
pub fn validate_profile_name(profile: &str) -> Result<(), VolumeError> {
    let ok = !profile.is_empty()
        && profile.len() <= 128
        && profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && profile.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !profile.contains("..");
    if ok {
        Ok(())
    } else {
        Err(VolumeError::InvalidName {
            name: profile.to_string(),
            reason: "a volume profile name is 1-128 letters, digits, '-', '_' or '.', starting with a letter or digit, without \"..\"".into(),
        })
    }
}

/// `vault-injector-vol-NAME`, which must be a DNS-1123 label.
pub fn volume_name(name: &str) -> Result<String, VolumeError> {
    let full = format!("{VOLUME_NAME_PREFIX}{name}");
    let ok = !name.is_empty()
        && full.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(full)
    } else {
        Err(VolumeError::InvalidName {
            name: name.to_string(),
            reason: format!(
                "a volume NAME is lowercase letters, digits and '-', not ending in '-', at most {} characters",
                63 - VOLUME_NAME_PREFIX.len()
            ),
        })
    }
}

fn malformed(profile: &str, field: &str, reason: impl Into<String>) -> VolumeError {
    VolumeError::Malformed {
        profile: profile.to_string(),
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// The first key present in `input` but lost by the typed round trip, i.e.
/// a field Kubernetes does not know (k8s-openapi ignores unknown fields, and
/// a typo in a profile must not be silently dropped).
fn first_unknown(input: &Value, typed: &Value, at: &str) -> Option<String> {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(k, v)| match b.get(k) {
            None => Some(format!("{at}.{k}")),
            Some(w) => first_unknown(v, w, &format!("{at}.{k}")),
        }),
        (Value::Array(a), Value::Array(b)) => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (v, w))| first_unknown(v, w, &format!("{at}[{i}]"))),
        _ => None,
    }
}

/// The first required string field the input left out: k8s-openapi fills
/// those with "" rather than failing, and the API server would only reject
/// the pod later with a less helpful message.
fn first_missing(input: &Value, typed: &Value, at: &str) -> Option<String> {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => b.iter().find_map(|(k, w)| match a.get(k) {
            None if w.as_str() == Some("") => Some(format!("{at}.{k}")),
            None => None,
            Some(v) => first_missing(v, w, &format!("{at}.{k}")),
        }),
        (Value::Array(a), Value::Array(b)) => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (v, w))| first_missing(v, w, &format!("{at}[{i}]"))),
        _ => None,
    }
}

fn string_list(profile: &str, field: &str, v: Option<&Value>) -> Result<Vec<String>, VolumeError> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let arr = v
        .as_array()
        .ok_or_else(|| malformed(profile, field, "must be a list of strings"))?;
    arr.iter()
        .map(|x| {
            x.as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| malformed(profile, field, "must be a list of non-empty strings"))
        })
        .collect()
}

/// A mount path the webhook will add: absolute, not `/`, no `..`, and clear
/// of the injector's own mounts (a volume over `/vault/secrets` would hide or
/// replace the rendered secrets).
fn check_mount_path(mount_path: &str) -> Result<(), String> {
    if !mount_path.starts_with('/') || mount_path == "/" || !clean_path(mount_path) {
        return Err("must be an absolute path other than /, without \"..\" or ':'".into());
    }
    let m = mount_path.trim_end_matches('/');
    for ours in [crate::contract::SECRETS_DIR, crate::contract::STATE_DIR] {
        if ours.starts_with(&format!("{m}/")) || m == ours || m.starts_with(&format!("{ours}/")) {
            return Err(format!("overlaps the injector's own mount {ours}"));
        }
    }
    Ok(())
}

fn clean_path(p: &str) -> bool {
    !p.split('/').any(|s| s == "..") && !p.chars().any(|c| c.is_control() || c == ':')
}

impl VolumeProfile {
    /// Validates the KV data of a profile. It is either the document itself
    /// or one key `profile` holding it as a JSON/YAML string (for KV UIs
    /// that only store strings).
    pub fn from_value(
        profile: &str,
        data: &Value,
        allow_host_path: bool,
    ) -> Result<Self, VolumeError> {
        let owned;
        let doc = match data.as_object() {
            Some(m) if m.len() == 1 && m.get("profile").is_some_and(Value::is_string) => {
                let text = m["profile"].as_str().unwrap_or_default();
                owned = serde_yaml::from_str::<Value>(text).map_err(|e| {
                    malformed(profile, "profile", format!("is not JSON or YAML: {e}"))
                })?;
                &owned
            }
            _ => data,
        };
        let obj = doc
            .as_object()
            .ok_or_else(|| malformed(profile, "(document)", "must be a JSON object"))?;
        const KNOWN: &[&str] = &["volume", "mountPath", "readOnly", "subPath", "allowed"];
        if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(malformed(
                profile,
                k,
                format!("unknown field (expected one of {})", KNOWN.join(", ")),
            ));
        }

        let source = obj
            .get("volume")
            .ok_or_else(|| {
                malformed(
                    profile,
                    "volume",
                    "is required (a Kubernetes volume source)",
                )
            })?
            .as_object()
            .ok_or_else(|| malformed(profile, "volume", "must be an object"))?;
        if source.len() != 1 {
            return Err(malformed(
                profile,
                "volume",
                format!(
                    "must hold exactly one volume source (e.g. persistentVolumeClaim, nfs, csi), found {}",
                    source.len()
                ),
            ));
        }
        if source.contains_key("name") {
            return Err(malformed(profile, "volume.name", "is set by the webhook"));
        }
        let kind = source.keys().next().cloned().unwrap_or_default();
        if kind == "hostPath" && !allow_host_path {
            return Err(malformed(
                profile,
                "volume.hostPath",
                "hostPath volumes are disabled (volumes.allowHostPath in the webhook config)",
            ));
        }
        let mut with_name: Map<String, Value> = source.clone();
        with_name.insert("name".into(), Value::String("profile".into()));
        let with_name = Value::Object(with_name);
        let volume: Volume = serde_json::from_value(with_name.clone())
            .map_err(|e| malformed(profile, &format!("volume.{kind}"), e.to_string()))?;
        let typed = serde_json::to_value(&volume)
            .map_err(|e| malformed(profile, "volume", e.to_string()))?;
        if let Some(field) = first_unknown(&with_name, &typed, "volume") {
            let reason = if field.matches('.').count() == 1 {
                "is not a Kubernetes volume source"
            } else {
                "unknown field"
            };
            return Err(malformed(profile, &field, reason));
        }
        if let Some(field) = first_missing(&with_name, &typed, "volume") {
            return Err(malformed(profile, &field, "is required"));
        }

        let mount_path = obj
            .get("mountPath")
            .ok_or_else(|| malformed(profile, "mountPath", "is required"))?
            .as_str()
            .ok_or_else(|| malformed(profile, "mountPath", "must be a string"))?
            .to_string();
        check_mount_path(&mount_path).map_err(|r| malformed(profile, "mountPath", r))?;

        let read_only = match obj.get("readOnly") {
            None => true,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| malformed(profile, "readOnly", "must be true or false"))?,
        };
        let sub_path = match obj.get("subPath") {
            None => None,
            Some(v) => {
                let s = v
                    .as_str()
                    .ok_or_else(|| malformed(profile, "subPath", "must be a string"))?;
                if s.is_empty() || s.starts_with('/') || !clean_path(s) {
                    return Err(malformed(
                        profile,
                        "subPath",
                        "must be a relative path without \"..\"",
                    ));
                }
                Some(s.to_string())
            }
        };

        let allowed = obj
            .get("allowed")
            .ok_or_else(|| {
                malformed(
                    profile,
                    "allowed",
                    "is required: a profile must say which namespaces may use it",
                )
            })?
            .as_object()
            .ok_or_else(|| malformed(profile, "allowed", "must be an object"))?;
        if let Some(k) = allowed
            .keys()
            .find(|k| !matches!(k.as_str(), "namespaces" | "serviceAccounts"))
        {
            return Err(malformed(
                profile,
                &format!("allowed.{k}"),
                "unknown field (expected namespaces, serviceAccounts)",
            ));
        }
        let allowed_namespaces =
            string_list(profile, "allowed.namespaces", allowed.get("namespaces"))?;
        if allowed_namespaces.is_empty() {
            return Err(malformed(
                profile,
                "allowed.namespaces",
                "must list at least one namespace (\"*\" for all)",
            ));
        }
        let allowed_service_accounts = string_list(
            profile,
            "allowed.serviceAccounts",
            allowed.get("serviceAccounts"),
        )?;

        Ok(Self {
            volume,
            mount_path,
            read_only,
            sub_path,
            allowed_namespaces,
            allowed_service_accounts,
        })
    }

    /// Enforces the profile's allowlist for one pod.
    pub fn check_allowed(
        &self,
        profile: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<(), VolumeError> {
        if !glob::any_matches(&self.allowed_namespaces, namespace) {
            return Err(VolumeError::NotAllowed {
                profile: profile.to_string(),
                rule: format!(
                    "allowed.namespaces [{}] does not include namespace {namespace:?}",
                    self.allowed_namespaces.join(", ")
                ),
            });
        }
        if !self.allowed_service_accounts.is_empty()
            && !self
                .allowed_service_accounts
                .iter()
                .any(|p| glob::service_account_matches(p, namespace, service_account))
        {
            return Err(VolumeError::NotAllowed {
                profile: profile.to_string(),
                rule: format!(
                    "allowed.serviceAccounts [{}] does not include service account \"{namespace}/{service_account}\"",
                    self.allowed_service_accounts.join(", ")
                ),
            });
        }
        Ok(())
    }

    /// The pod spec parts for the `volume-NAME` annotation. Pure; the caller
    /// has already checked the allowlist.
    pub fn to_resolved(&self, name: &str, profile: &str) -> Result<ResolvedVolume, VolumeError> {
        let vol_name = volume_name(name)?;
        let mut volume = self.volume.clone();
        volume.name = vol_name.clone();
        Ok(ResolvedVolume {
            name: name.to_string(),
            profile: profile.to_string(),
            volume,
            mount: VolumeMount {
                name: vol_name,
                mount_path: self.mount_path.clone(),
                read_only: Some(self.read_only),
                sub_path: self.sub_path.clone(),
                ..Default::default()
            },
        })
    }
}

impl ResolvedVolume {
    /// Applies the pod's own choices (from companion annotations such as a
    /// mount path or a read-only flag). A pod may narrow what the profile
    /// grants, never widen it: it can make a writable profile read-only, not
    /// the reverse.
    pub fn customize(
        &mut self,
        mount_path: Option<&str>,
        read_only: Option<bool>,
    ) -> Result<(), VolumeError> {
        if let Some(p) = mount_path {
            check_mount_path(p).map_err(|reason| VolumeError::InvalidName {
                name: self.name.clone(),
                reason: format!("mount path {p:?} {reason}"),
            })?;
            self.mount.mount_path = p.to_string();
        }
        match read_only {
            Some(false) if self.mount.read_only != Some(false) => {
                return Err(VolumeError::NotAllowed {
                    profile: self.profile.clone(),
                    rule: "readOnly: the profile mounts it read-only and a pod cannot make it writable".into(),
                })
            }
            Some(ro) => self.mount.read_only = Some(ro),
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> VolumeProfile {
        VolumeProfile::from_value("p", &v, false).unwrap()
    }

    fn field_of(v: Value) -> String {
        match VolumeProfile::from_value("p", &v, false).unwrap_err() {
            VolumeError::Malformed { profile, field, .. } => {
                assert_eq!(profile, "p");
                field
            }
            other => panic!("expected Malformed, got {other}"),
        }
    }

    fn base() -> Value {
        json!({
            "volume": {"persistentVolumeClaim": {"claimName": "data"}},
            "mountPath": "/data",
            "allowed": {"namespaces": ["team-a"], "serviceAccounts": ["web"]}
        })
    }

    #[test]
    fn a_good_profile_resolves() {
        let p = ok(base());
        assert!(p.read_only, "readOnly defaults to true");
        let r = p.to_resolved("data", "team-a-data").unwrap();
        assert_eq!(r.volume.name, "vault-injector-vol-data");
        assert_eq!(
            r.volume
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "data"
        );
        assert_eq!(r.mount.name, "vault-injector-vol-data");
        assert_eq!(r.mount.mount_path, "/data");
        assert_eq!(r.mount.read_only, Some(true));
    }

    #[test]
    fn string_wrapped_profile_and_other_sources() {
        let text = serde_json::to_string(&json!({
            "volume": {"nfs": {"server": "10.0.0.1", "path": "/exports"}},
            "mountPath": "/mnt/nfs", "readOnly": false, "subPath": "a/b",
            "allowed": {"namespaces": ["*"]}
        }))
        .unwrap();
        let p = ok(json!({ "profile": text }));
        assert_eq!(p.volume.nfs.as_ref().unwrap().server, "10.0.0.1");
        assert!(!p.read_only);
        assert_eq!(p.sub_path.as_deref(), Some("a/b"));
        ok(
            json!({"volume": {"csi": {"driver": "x.csi.io", "volumeAttributes": {"a": "b"}}},
                  "mountPath": "/x", "allowed": {"namespaces": ["a"]}}),
        );
    }

    #[test]
    fn malformed_profiles_name_the_field() {
        let mut v = base();
        v["volume"] = json!({"persistentVolumeClaim": {"claimNam": "x"}});
        assert_eq!(field_of(v), "volume.persistentVolumeClaim.claimNam");
        let mut v = base();
        v["volume"] = json!({"persistentVolumeClaim": {}});
        assert_eq!(field_of(v), "volume.persistentVolumeClaim.claimName");
        let mut v = base();
        v["volume"] = json!({"nfs": {"server": 7, "path": "/"}});
        assert_eq!(field_of(v), "volume.nfs");
        let mut v = base();
        v["volume"] = json!({"nfs": {"server": "s", "path": "/", "bogus": 1}});
        assert_eq!(field_of(v), "volume.nfs.bogus");
        let mut v = base();
        v["volume"] = json!({"pvc": {"claimName": "x"}});
        assert_eq!(field_of(v), "volume.pvc");
        let mut v = base();
        v["volume"] = json!({"nfs": {"server": "s", "path": "/"}, "emptyDir": {}});
        assert_eq!(field_of(v), "volume");
        let mut v = base();
        v["volume"] = json!({"hostPath": {"path": "/"}});
        assert_eq!(field_of(v), "volume.hostPath");
        for (mp, _) in [
            ("data", 0),
            ("/", 0),
            ("/a/../etc", 0),
            ("/vault", 0),
            ("/vault/secrets/x", 0),
        ] {
            let mut v = base();
            v["mountPath"] = json!(mp);
            assert_eq!(field_of(v), "mountPath", "{mp}");
        }
        let mut v = base();
        v["subPath"] = json!("../x");
        assert_eq!(field_of(v), "subPath");
        let mut v = base();
        v["readOnly"] = json!("yes");
        assert_eq!(field_of(v), "readOnly");
        let mut v = base();
        v.as_object_mut().unwrap().remove("allowed");
        assert_eq!(field_of(v), "allowed");
        let mut v = base();
        v["allowed"] = json!({"namespaces": []});
        assert_eq!(field_of(v), "allowed.namespaces");
        let mut v = base();
        v["allowed"]["teams"] = json!(["x"]);
        assert_eq!(field_of(v), "allowed.teams");
        let mut v = base();
        v["mountpath"] = json!("/x");
        assert_eq!(field_of(v), "mountpath");
        assert_eq!(field_of(json!(["x"])), "(document)");
        assert_eq!(field_of(json!({"profile": "{"})), "profile");
    }

    #[test]
    fn pods_may_narrow_but_not_widen() {
        let mut r = ok(base()).to_resolved("data", "p").unwrap();
        r.customize(Some("/srv/data"), Some(true)).unwrap();
        assert_eq!(r.mount.mount_path, "/srv/data");
        let e = r.customize(None, Some(false)).unwrap_err().to_string();
        assert!(
            e.contains("\"p\"") && e.contains("cannot make it writable"),
            "{e}"
        );
        let e = r
            .customize(Some("/vault/secrets"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("volume \"data\"") && e.contains("/vault/secrets"),
            "{e}"
        );

        let mut v = base();
        v["readOnly"] = json!(false);
        let mut r = ok(v).to_resolved("data", "p").unwrap();
        r.customize(None, Some(true)).unwrap();
        assert_eq!(r.mount.read_only, Some(true));
    }

    #[test]
    fn allowlist() {
        let p = ok(base());
        p.check_allowed("p", "team-a", "web").unwrap();
        let e = p
            .check_allowed("p", "team-b", "web")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("allowed.namespaces") && e.contains("team-b"),
            "{e}"
        );
        let e = p
            .check_allowed("p", "team-a", "batch")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("allowed.serviceAccounts") && e.contains("team-a/batch"),
            "{e}"
        );
    }

    #[test]
    fn names() {
        validate_profile_name("team-a.data_1").unwrap();
        for bad in ["", "../x", "a/b", "a..b", ".hidden", "a b"] {
            assert!(validate_profile_name(bad).is_err(), "{bad}");
        }
        assert_eq!(volume_name("data").unwrap(), "vault-injector-vol-data");
        for bad in ["", "Data", "a_b", "x-", &"a".repeat(45)] {
            assert!(volume_name(bad).is_err(), "{bad}");
        }
    }
}
