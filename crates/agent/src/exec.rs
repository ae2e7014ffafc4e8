//! `vault-injector exec -- PROGRAM ARGS...`: resolve env-var secrets with the
//! pod's identity, then `execve` PROGRAM with them in its environment.
//!
//! Nothing lands in the pod spec or on disk: the spec keeps the literal
//! `vault:PATH#KEY[#VERSION]` references (Bank-Vaults style) or the
//! `vault-injector.io/env-VAR` annotations; values exist only in this
//! process's memory and then in PROGRAM's environment. Because it is
//! `execve`, PROGRAM keeps our PID, receives signals directly, and its exit
//! code is the container's.
//!
//! With `vault-injector.io/env-restart: on-change` (`envRestart` in the
//! config) `exec` stays as PROGRAM's parent instead (`exec/supervise.rs`),
//! and restarts it with a new environment when an env secret changes.
//!
//! `vault-injector copy-self DIR`: the init container that puts this binary
//! into the shared memory volume so app containers can run `exec`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vault_injector_core::audit::{self, AgentAudit, AgentEvent};
use vault_injector_core::compat::bankvaults::{self, EnvRef, Piece};
use vault_injector_core::contract::{
    AgentConfig, EnvSpec, AGENT_BIN, AGENT_CONFIG_ENV, SA_TOKEN_PATH,
};
use vault_injector_core::go::gotmpl;
use vault_injector_vault::{Exact, Vault};

mod supervise;

/// Exit code when a secret cannot be resolved (PROGRAM never started).
pub const EXIT_RESOLVE: u8 = 70;
/// Exit code when PROGRAM cannot be executed (like a shell's 127).
pub const EXIT_EXEC: u8 = 127;

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Override the JWT (service-account token) file.
    #[arg(long, env = "VAULT_INJECTOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Override the Vault address from the config.
    #[arg(long, env = "VAULT_ADDR")]
    pub vault_addr: Option<String>,
    /// The program and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

#[derive(Debug, clap::Args)]
pub struct CopySelfArgs {
    /// Directory to copy the binary into (a shared memory volume).
    pub dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("env var {var}: {message}")]
    BadReference { var: String, message: String },
    #[error("env var {var}: key {key:?} not found in Vault secret {path}")]
    MissingKey {
        var: String,
        path: String,
        key: String,
    },
    #[error("env var {var}: key {key:?} in {path} is not a string, number or boolean")]
    NotScalar {
        var: String,
        path: String,
        key: String,
    },
    #[error(
        "env var {var}: key {key:?} in {path} holds a NUL byte, which an environment variable cannot hold"
    )]
    Nul {
        var: String,
        path: String,
        /// The key, or `template` for a template's output.
        key: String,
    },
    #[error(
        "env var {var}: key {key:?} in {path} is {len} bytes, over the kernel's limit of \
         {MAX_ARG_STRLEN} bytes for one environment entry"
    )]
    TooLong {
        var: String,
        path: String,
        /// The key, or `template` / `value` for a template's or several
        /// references' output.
        key: String,
        len: usize,
    },
    #[error("env var {var}: the template over {path}: {message}")]
    Template {
        var: String,
        path: String,
        message: String,
    },
    #[error("env var {var}: {source}")]
    Vault {
        var: String,
        source: vault_injector_vault::Error,
    },
    #[error("login: {0}")]
    Login(vault_injector_vault::Error),
    #[error("{0}")]
    Config(#[from] vault_injector_core::contract::Error),
    #[error("vault client: {0}")]
    Client(vault_injector_vault::Error),
}

/// Linux's limit on one argument or `NAME=value` string (32 pages), over
/// which `execve` fails with E2BIG.
const MAX_ARG_STRLEN: usize = 32 * 4096;

/// One env var to resolve: literal text and references, concatenated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub var: String,
    pub pieces: Vec<Piece>,
}

/// The references this process must resolve: `vault:` values in its own
/// environment, plus the annotation-defined vars from the config.
pub fn collect(
    environ: impl IntoIterator<Item = (String, String)>,
    specs: &[EnvSpec],
) -> Result<Vec<Wanted>, Error> {
    let mut out: BTreeMap<String, Wanted> = BTreeMap::new();
    for (var, value) in environ {
        if var == AGENT_CONFIG_ENV || !bankvaults::is_ref(&value) {
            continue;
        }
        let pieces = match bankvaults::parse_value(&value) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(message) => {
                return Err(Error::BadReference {
                    var: var.clone(),
                    message,
                })
            }
        };
        out.insert(var.clone(), Wanted { var, pieces });
    }
    for s in specs {
        out.insert(
            s.var.clone(),
            Wanted {
                var: s.var.clone(),
                pieces: vec![Piece::Ref(EnvRef {
                    path: s.path.clone(),
                    key: s.key.clone(),
                    version: s.version,
                    template: false,
                })],
            },
        );
    }
    Ok(out.into_values().collect())
}

/// A Bank-Vaults template over the secret's data (`.KEY` is a key of the
/// KV data), printed as Go prints values. Its errors never quote the data.
fn render_template(
    var: &str,
    r: &EnvRef,
    secret: &vault_injector_vault::Secret,
) -> Result<String, Error> {
    let err = |message: String| Error::Template {
        var: var.to_string(),
        path: r.path.clone(),
        message,
    };
    let t = gotmpl::translate_bankvaults(&r.key).map_err(|e| err(e.to_string()))?;
    let mut env = minijinja::Environment::new();
    gotmpl::register(&mut env);
    let data = crate::render::template_value(&Exact::Object(secret.data.clone()));
    env.render_str(&t.source, minijinja::context! { data => data })
        .map_err(|e| err(crate::render::template_message(&e, &[secret])))
}

fn scalar(v: &Exact) -> Option<String> {
    match v {
        Exact::String(s) => Some(s.clone()),
        Exact::Number(n) => Some(n.clone()),
        Exact::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Logs in and reads every wanted var (each path/version once).
async fn resolve(
    cfg: &AgentConfig,
    wanted: &[Wanted],
    token_file: &Path,
) -> Result<Vec<(String, String)>, Error> {
    let mut vault = Vault::new(&cfg.vault).map_err(Error::Client)?;
    let who = |secret: Option<&str>, path: Option<&str>| AgentAudit {
        namespace: cfg.pod.namespace.clone(),
        pod: cfg.pod.name.clone(),
        service_account: cfg.pod.service_account.clone(),
        secret: secret.map(str::to_string),
        path: path.map(str::to_string),
        ok: true,
        ..Default::default()
    };
    vault
        .login(&cfg.auth, token_file)
        .await
        .map_err(Error::Login)?;
    eprintln!("{}", audit::agent_line(AgentEvent::Login, &who(None, None)));
    // One read per path and version, as Bank-Vaults caches them: the
    // username and password of one dynamic secret stay a pair.
    let mut cache: Secrets = BTreeMap::new();
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        for r in refs(w) {
            let cache_key = (r.path.clone(), r.version);
            if let std::collections::btree_map::Entry::Vacant(slot) = cache.entry(cache_key) {
                let secret = vault
                    .read_version(&r.path, r.version)
                    .await
                    .map_err(|source| Error::Vault {
                        var: w.var.clone(),
                        source,
                    })?;
                let mut rec = who(Some(&w.var), Some(&r.path));
                rec.version = secret.version();
                eprintln!("{}", audit::agent_line(AgentEvent::Read, &rec));
                slot.insert(secret);
            }
        }
        out.push((w.var.clone(), value_of(w, &cache)?));
    }
    Ok(out)
}

/// Secrets read, by path and pinned version.
type Secrets = BTreeMap<(String, Option<u64>), vault_injector_vault::Secret>;

/// The references of one wanted var.
fn refs(w: &Wanted) -> impl Iterator<Item = &EnvRef> {
    w.pieces.iter().filter_map(|p| match p {
        Piece::Ref(r) => Some(r),
        Piece::Text(_) => None,
    })
}

/// The value of one wanted var from the secrets read for it (every
/// reference must be in `secrets`), checked for what an environment entry
/// can hold.
fn value_of(w: &Wanted, secrets: &Secrets) -> Result<String, Error> {
    let mut value = String::new();
    for piece in &w.pieces {
        let r = match piece {
            Piece::Text(t) => {
                value.push_str(t);
                continue;
            }
            Piece::Ref(r) => r,
        };
        let secret = &secrets[&(r.path.clone(), r.version)];
        let v = if r.template {
            render_template(&w.var, r, secret)?
        } else {
            let v = secret.data.get(&r.key).ok_or_else(|| Error::MissingKey {
                var: w.var.clone(),
                path: r.path.clone(),
                key: r.key.clone(),
            })?;
            scalar(v).ok_or_else(|| Error::NotScalar {
                var: w.var.clone(),
                path: r.path.clone(),
                key: r.key.clone(),
            })?
        };
        // Checked here so the error names the variable: `execve` would
        // only say "nul byte found".
        if v.contains('\0') {
            return Err(Error::Nul {
                var: w.var.clone(),
                path: r.path.clone(),
                key: if r.template {
                    "template".into()
                } else {
                    r.key.clone()
                },
            });
        }
        value.push_str(&v);
    }
    let (path, key) = match &w.pieces[..] {
        [Piece::Ref(r)] if !r.template => (r.path.as_str(), r.key.as_str()),
        pieces => (
            refs(w).map(|r| r.path.as_str()).next().unwrap_or_default(),
            if pieces.len() == 1 {
                "template"
            } else {
                "value"
            },
        ),
    };
    // `execve` would only say "Argument list too long".
    let len = w.var.len() + 1 + value.len() + 1;
    if len > MAX_ARG_STRLEN {
        return Err(Error::TooLong {
            var: w.var.clone(),
            path: path.to_string(),
            key: key.to_string(),
            len,
        });
    }
    Ok(value)
}

/// Runs `exec`. Returns only on failure: on success the process image is
/// replaced by the program.
pub fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let ExecArgs {
        token_file,
        vault_addr,
        command,
    } = args;
    let (program, program_args) = command.split_first().expect("clap requires a command");

    let specs_cfg = match std::env::var(AGENT_CONFIG_ENV) {
        Ok(raw) => Some(AgentConfig::from_json(&raw)?),
        Err(_) => None,
    };
    let specs = specs_cfg.as_ref().map(|c| c.env.as_slice()).unwrap_or(&[]);
    let environ: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let wanted = match collect(environ, specs) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("vault-injector exec: {e}");
            return Ok(ExitCode::from(EXIT_RESOLVE));
        }
    };

    let mut largest: Option<(usize, String)> = None;
    let mut cmd = std::process::Command::new(program);
    cmd.args(program_args).env_remove(AGENT_CONFIG_ENV);
    if !wanted.is_empty() {
        let Some(mut cfg) = specs_cfg else {
            eprintln!(
                "vault-injector exec: env var {} holds a vault: reference but ${AGENT_CONFIG_ENV} \
                 is not set (is this container injected?)",
                wanted[0].var
            );
            return Ok(ExitCode::from(EXIT_RESOLVE));
        };
        if let Some(addr) = vault_addr {
            cfg.vault.address = addr;
        }
        let token_file = token_file.unwrap_or_else(|| PathBuf::from(SA_TOKEN_PATH));
        if let Some(restart) = cfg.env_restart.clone() {
            return supervise::run(
                supervise::Job {
                    cfg,
                    wanted,
                    token_file,
                    program: program.clone(),
                    args: program_args.to_vec(),
                },
                restart,
            );
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        match rt.block_on(resolve(&cfg, &wanted, &token_file)) {
            Ok(values) => {
                largest = values
                    .iter()
                    .map(|(k, v)| (k.len() + v.len() + 2, k.clone()))
                    .max();
                for (k, v) in values {
                    cmd.env(k, v);
                }
            }
            Err(e) => {
                eprintln!("vault-injector exec: {e}; {program:?} was not started");
                return Ok(ExitCode::from(EXIT_RESOLVE));
            }
        }
    }
    // Only returns on failure.
    let err = cmd.exec();
    match largest {
        Some((len, var)) if err.raw_os_error() == Some(nix::errno::Errno::E2BIG as i32) => {
            eprintln!(
                "vault-injector exec: cannot execute {program:?}: the arguments and environment \
                 are over the kernel's limit (E2BIG); the largest injected variable is {var} \
                 ({len} bytes)"
            )
        }
        _ => eprintln!("vault-injector exec: cannot execute {program:?}: {err}"),
    }
    Ok(ExitCode::from(EXIT_EXEC))
}

/// Copies this binary into `dir` (an init container's job), under its own
/// file name: `vault-injector-agent`, or `vault-injector` when a pod
/// injected by an older version runs the webhook binary's alias, so the
/// `exec` command in that pod's spec finds it.
pub fn run_copy_self(args: CopySelfArgs) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe()?;
    std::fs::create_dir_all(&args.dir)?;
    let name = exe
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| AGENT_BIN.into());
    let dest = args.dir.join(&name);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(&name);
    tmp_name.push(".tmp");
    let tmp = args.dir.join(tmp_name);
    std::fs::copy(&exe, &tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))?;
    std::fs::rename(&tmp, &dest)?;
    eprintln!(
        "vault-injector: copied {} to {}",
        exe.display(),
        dest.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn collects_bank_vaults_refs_and_annotation_specs() {
        let specs = vec![EnvSpec {
            var: "API_KEY".into(),
            path: "secret/data/api".into(),
            key: "key".into(),
            version: None,
            containers: vec![],
        }];
        let got = collect(
            env(&[
                ("PATH", "/bin"),
                ("DB_PASSWORD", "vault:secret/data/db#password#2"),
                ("PLAIN", "vault-like but not vault:"),
            ]),
            &specs,
        )
        .unwrap();
        let r = |path: &str, key: &str, version| {
            Piece::Ref(EnvRef {
                path: path.into(),
                key: key.into(),
                version,
                template: false,
            })
        };
        assert_eq!(
            got,
            vec![
                Wanted {
                    var: "API_KEY".into(),
                    pieces: vec![r("secret/data/api", "key", None)],
                },
                Wanted {
                    var: "DB_PASSWORD".into(),
                    pieces: vec![r("secret/data/db", "password", Some(2))],
                },
            ]
        );
        let inline = collect(
            env(&[("URI", "pg://${vault:db/creds/app#username}@h")]),
            &[],
        )
        .unwrap();
        assert_eq!(
            inline[0].pieces,
            vec![
                Piece::Text("pg://".into()),
                r("db/creds/app", "username", None),
                Piece::Text("@h".into())
            ]
        );
    }

    #[test]
    fn bad_reference_names_the_variable() {
        let err = collect(env(&[("DB", "vault:secret/db")]), &[]).unwrap_err();
        assert!(err.to_string().starts_with("env var DB:"), "{err}");
        assert!(err.to_string().contains("missing key"), "{err}");
    }

    #[test]
    fn scalars_only() {
        let e = |t: &str| Exact::from_json(t).unwrap();
        assert_eq!(scalar(&e(r#""x""#)), Some("x".into()));
        assert_eq!(scalar(&e("5")), Some("5".into()));
        assert_eq!(
            scalar(&e("18446744073709551616")),
            Some("18446744073709551616".into())
        );
        assert_eq!(scalar(&e("true")), Some("true".into()));
        assert_eq!(scalar(&e(r#"{"a": 1}"#)), None);
    }
}
