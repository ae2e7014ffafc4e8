//! Operator-written YAML documents (the webhook config, the cluster policy):
//! read, parse with defaults, validate, with the file named in every error.

use std::path::{Path, PathBuf};

/// An operator-written YAML document (this config, the cluster policy) that
/// could not be read, parsed or validated; `what` names the kind of file.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} is not valid: {source}")]
    Parse {
        what: &'static str,
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{what} {path}: {message}")]
    Invalid {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
}

/// Reads a file for [`parse_yaml`] (or for a caller that hashes it first).
pub fn read_yaml_file(what: &'static str, path: &Path) -> Result<String, YamlError> {
    std::fs::read_to_string(path).map_err(|source| YamlError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Parses an operator YAML document in which every field has a default (an
/// empty document means all defaults), then validates it. `origin` only
/// names the source in errors.
pub fn parse_yaml<T: serde::de::DeserializeOwned + Default>(
    what: &'static str,
    text: &str,
    origin: &Path,
    validate: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, YamlError> {
    let doc: T = if text.trim().is_empty() {
        T::default()
    } else {
        serde_yaml::from_str(text).map_err(|source| YamlError::Parse {
            what,
            path: origin.to_owned(),
            source,
        })?
    };
    validate(&doc).map_err(|message| YamlError::Invalid {
        what,
        path: origin.to_owned(),
        message,
    })?;
    Ok(doc)
}
