//! Telling the app that a secret changed: a signal to named processes in the
//! pod's shared process namespace, or a command.

use std::path::Path;
use std::str::FromStr;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown signal {0:?} (expected a name such as SIGHUP or HUP, or a number)")]
    Signal(String),
    #[error("no process named {0:?} found (is shareProcessNamespace enabled?)")]
    NoProcess(String),
    #[error(
        "every process named {process:?} ignores {signal} (an ignored signal is inherited \
         across exec, e.g. from nohup): nothing reloaded"
    )]
    Ignored { signal: String, process: String },
    #[error("sending {signal} to pid {pid}: {source}")]
    Kill {
        signal: String,
        pid: i32,
        source: nix::Error,
    },
    #[error("running reload command: {0}")]
    Spawn(std::io::Error),
    #[error("reload command exited with {0}")]
    Command(std::process::ExitStatus),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Parses `SIGHUP`, `HUP`, `hup` or `1`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| Error::Signal(s.into()));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| Error::Signal(s.into()))
}

/// The kernel keeps only 15 bytes of a command name in `comm`.
const COMM_LEN: usize = 15;

/// Does the process in `/proc/PID` run a program called `name`? Matches the
/// kernel's `comm` and the base name of `argv[0]`.
fn matches(proc_dir: &Path, name: &str) -> bool {
    let comm = std::fs::read_to_string(proc_dir.join("comm")).unwrap_or_default();
    let short: String = name.chars().take(COMM_LEN).collect();
    if comm.trim_end() == short {
        return true;
    }
    let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0);
    argv0.rsplit('/').next() == Some(name)
}

/// Pids to signal: those running `process`, or with no name every process
/// except ours and pid 1 (the pod's pause process, which a stray signal
/// would kill, taking the pod down).
pub fn targets(process: Option<&str>) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            if pid == me || pid == 1 {
                return None;
            }
            match process {
                Some(name) if !name.is_empty() => matches(&e.path(), name).then_some(pid),
                _ => Some(pid),
            }
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Does `pid` ignore `sig` (its `SigIgn` mask in `/proc/PID/status`)? A
/// signal sent to it is delivered and dropped: the agent would report a
/// reload that did nothing.
fn ignores(pid: i32, sig: Signal) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << (sig as i32 - 1)) != 0)
}

/// Sends `signal` to every target; returns how many were signalled. Named
/// targets that all ignore the signal are an error, not a silent no-op.
pub fn send_signal(signal: &str, process: Option<&str>) -> Result<usize> {
    let sig = parse_signal(signal)?;
    let pids = targets(process);
    if pids.is_empty() {
        return Err(Error::NoProcess(process.unwrap_or("").into()));
    }
    if let Some(name) = process.filter(|p| !p.is_empty()) {
        if pids.iter().all(|&pid| ignores(pid, sig)) {
            return Err(Error::Ignored {
                signal: signal.into(),
                process: name.into(),
            });
        }
    }
    for pid in &pids {
        match nix::sys::signal::kill(Pid::from_raw(*pid), sig) {
            // Gone between the scan and the kill: nothing to reload.
            Ok(()) | Err(nix::Error::ESRCH) => {}
            Err(source) => {
                return Err(Error::Kill {
                    signal: signal.into(),
                    pid: *pid,
                    source,
                })
            }
        }
    }
    Ok(pids.len())
}

/// Runs `command` through `/bin/sh -c` and waits for it.
pub async fn run_command(command: &str) -> Result<()> {
    let status = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .map_err(Error::Spawn)?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Command(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_in_every_spelling() {
        for s in ["SIGHUP", "HUP", "hup", "1"] {
            assert_eq!(parse_signal(s).unwrap(), Signal::SIGHUP, "{s}");
        }
        assert_eq!(parse_signal("usr1").unwrap(), Signal::SIGUSR1);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("999").is_err());
    }

    #[test]
    fn targets_never_include_self_or_pid_one() {
        let all = targets(None);
        assert!(!all.contains(&(std::process::id() as i32)));
        assert!(!all.contains(&1));
        assert!(targets(Some("no-such-process-name-x")).is_empty());
    }

    /// A copy of `sleep` under a unique name, with `ignored` set to SIG_IGN.
    fn named_sleep(dir: &Path, ignored: Option<Signal>) -> (String, std::process::Child) {
        use std::os::unix::process::CommandExt;
        let name = format!("vi-ig-{}-{}", std::process::id(), ignored.is_some() as u8);
        let exe = dir.join(&name);
        std::fs::copy("/bin/sleep", &exe).unwrap();
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("30");
        if let Some(sig) = ignored {
            // SAFETY: sigaction is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn)
                        .map(|_| ())
                        .map_err(std::io::Error::from)
                });
            }
        }
        // Another test thread forking while the copy was open: ETXTBSY.
        for _ in 0..100 {
            match cmd.spawn() {
                Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                other => return (name, other.unwrap()),
            }
        }
        panic!("{} stayed busy", exe.display());
    }

    /// Waits until `name` shows in /proc: spawn returns once the child's
    /// close-on-exec descriptors are closed, a moment before the kernel
    /// sets its new name and arguments.
    fn visible(name: &str) {
        for _ in 0..200 {
            if !targets(Some(name)).is_empty() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{name} never showed in /proc");
    }

    #[test]
    fn a_signal_every_target_ignores_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (deaf, mut deaf_child) = named_sleep(dir.path(), Some(Signal::SIGUSR2));
        visible(&deaf);
        let err = send_signal("SIGUSR2", Some(&deaf)).unwrap_err();
        assert!(matches!(err, Error::Ignored { .. }), "{err}");
        assert!(err.to_string().contains(&deaf), "{err}");
        assert!(deaf_child.try_wait().unwrap().is_none());
        let _ = deaf_child.kill();
        let _ = deaf_child.wait();

        let (live, mut live_child) = named_sleep(dir.path(), None);
        visible(&live);
        assert_eq!(send_signal("SIGUSR2", Some(&live)).unwrap(), 1);
        let status = live_child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(Signal::SIGUSR2 as i32));
    }

    #[tokio::test]
    async fn command_failure_is_reported() {
        run_command("true").await.unwrap();
        assert!(matches!(
            run_command("exit 3").await,
            Err(Error::Command(_))
        ));
    }
}
