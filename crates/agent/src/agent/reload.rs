//! Telling the app that a secret changed: a signal to named processes in the
//! pod's shared process namespace, or a command.
//!
//! The shipped image has no shell, so a command is split into words the way
//! `sh` would split it and executed directly. Only a command that really uses
//! shell syntax (pipes, `$`, redirections, globs, builtins...) goes through
//! `/bin/sh -c`, and then only if the agent's image has one; otherwise it
//! fails with an error that says why.

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
    #[error("running reload command {program:?}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error(
        "reload command {program:?} not found (the agent image holds only vault-injector and \
         vault-injector-agent: use an absolute path to a program on a volume the agent mounts, \
         or reload with a signal)"
    )]
    NotFound { program: String },
    #[error(
        "reload command needs a shell ({0}) and the agent's image has no /bin/sh: write a plain \
         command (words, quotes and backslashes only), or reload with a signal"
    )]
    NoShell(String),
    #[error("reload command is empty or has an unterminated quote")]
    Unparsable,
    #[error("reload command is longer than {MAX_COMMAND_LEN} bytes")]
    TooLong,
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

/// How a command line runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Plain words: executed directly (PATH lookup for a bare name).
    Direct(Vec<String>),
    /// Shell syntax, named for the error when there is no shell.
    Shell(String),
}

/// Words that only a shell understands as the first word: keywords and
/// builtins with no program of the same name.
const SHELL_ONLY: &[&str] = &[
    "!", "{", "}", "if", "then", "else", "elif", "fi", "case", "esac", "for", "while", "until",
    "do", "done", ".", ":", "break", "continue", "eval", "exec", "exit", "export", "readonly",
    "return", "set", "shift", "times", "trap", "unset", "cd", "alias", "umask", "wait", "source",
    "function", "[[",
];

/// Longest command line split; a reload command is pod-author text.
const MAX_COMMAND_LEN: usize = 64 * 1024;

/// Splits `command` into words as POSIX `sh` does for a simple command
/// (blanks, single quotes, double quotes, backslashes), or reports the
/// first shell construct it uses.
pub fn plan(command: &str) -> Result<Invocation> {
    if command.len() > MAX_COMMAND_LEN {
        return Err(Error::TooLong);
    }
    let shell = |what: &str| Ok(Invocation::Shell(what.to_string()));
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    // A word exists once anything (even an empty quote) was read.
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\n' => return shell("a newline"),
            '\\' => match chars.next() {
                // A backslash-newline joins lines in sh.
                Some('\n') => {}
                Some(n) => {
                    word.push(n);
                    in_word = true;
                }
                None => return Err(Error::Unparsable),
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => word.push(n),
                        None => return Err(Error::Unparsable),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('$') => return shell("`$` expansion"),
                        Some('`') => return shell("command substitution"),
                        Some('\\') => match chars.next() {
                            Some(n @ ('$' | '`' | '"' | '\\')) => word.push(n),
                            Some('\n') => {}
                            Some(n) => {
                                word.push('\\');
                                word.push(n);
                            }
                            None => return Err(Error::Unparsable),
                        },
                        Some(n) => word.push(n),
                        None => return Err(Error::Unparsable),
                    }
                }
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' => return shell(&format!("`{c}`")),
            '$' => return shell("`$` expansion"),
            '`' => return shell("command substitution"),
            '*' | '?' | '[' => return shell(&format!("the glob `{c}`")),
            '~' if !in_word => return shell("`~` expansion"),
            '#' if !in_word => return shell("a `#` comment"),
            '=' if words.is_empty() && !word.is_empty() && is_name(&word) => {
                return shell("a variable assignment")
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    match words.first() {
        None => Err(Error::Unparsable),
        Some(first) if SHELL_ONLY.contains(&first.as_str()) => {
            shell(&format!("the shell builtin `{first}`"))
        }
        Some(_) => Ok(Invocation::Direct(words)),
    }
}

fn is_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && cs.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The shell a shell-syntax command needs; absent from the shipped image.
const SHELL: &str = "/bin/sh";

/// Runs `command` (see [`plan`]) and waits for it.
pub async fn run_command(command: &str) -> Result<()> {
    run_command_with(command, Path::new(SHELL)).await
}

async fn run_command_with(command: &str, shell: &Path) -> Result<()> {
    let mut cmd = match plan(command)? {
        Invocation::Direct(words) => {
            let mut cmd = tokio::process::Command::new(&words[0]);
            cmd.args(&words[1..]);
            cmd
        }
        Invocation::Shell(what) => {
            if !shell.exists() {
                return Err(Error::NoShell(what));
            }
            let mut cmd = tokio::process::Command::new(shell);
            cmd.arg("-c").arg(command);
            cmd
        }
    };
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let status = cmd
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                program: program.clone(),
            },
            _ => Error::Spawn {
                program: program.clone(),
                source,
            },
        })?;
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
        assert!(matches!(run_command("false").await, Err(Error::Command(_))));
    }

    fn direct(words: &[&str]) -> Invocation {
        Invocation::Direct(words.iter().map(|w| w.to_string()).collect())
    }

    #[test]
    fn plain_commands_split_like_sh() {
        for (line, words) in [
            ("touch /vault/x", &["touch", "/vault/x"][..]),
            ("  a   b\tc  ", &["a", "b", "c"]),
            ("a 'b c' \"d e\" f\\ g", &["a", "b c", "d e", "f g"]),
            ("a '' \"\"", &["a", "", ""]),
            (
                "a 'x\"y' \"x'y\" \"q\\\"\\\\\\$\"",
                &["a", "x\"y", "x'y", "q\"\\$"],
            ),
            ("a \"\\n\"", &["a", "\\n"]),
            ("a b#c d=e", &["a", "b#c", "d=e"]),
            ("kill -HUP 1", &["kill", "-HUP", "1"]),
            ("a\\\nb", &["ab"]),
        ] {
            assert_eq!(plan(line).unwrap(), direct(words), "{line:?}");
        }
    }

    #[test]
    fn shell_syntax_is_recognised() {
        for line in [
            "kill -HUP $(pidof nginx)",
            "a | b",
            "a && b",
            "a; b",
            "a > f",
            "a < f",
            "echo $HOME",
            "echo \"$HOME\"",
            "echo `id`",
            "ls *.pem",
            "ls ?",
            "ls [ab]",
            "cd ~",
            "a # comment",
            "X=1 app",
            "exit 3",
            "if true; then :; fi",
            "a\nb",
            "(a)",
        ] {
            assert!(
                matches!(plan(line), Ok(Invocation::Shell(_))),
                "{line:?}: {:?}",
                plan(line)
            );
        }
        for line in ["", "   ", "a 'b", "a \"b", "a \\"] {
            assert!(matches!(plan(line), Err(Error::Unparsable)), "{line:?}");
        }
        assert!(matches!(
            plan(&"a ".repeat(MAX_COMMAND_LEN)),
            Err(Error::TooLong)
        ));
    }

    #[tokio::test]
    async fn plain_commands_run_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let no_shell = dir.path().join("no-sh");
        let marker = dir.path().join("a b");
        let line = format!("touch '{}'", marker.display());
        run_command_with(&line, &no_shell).await.unwrap();
        assert!(marker.exists());

        let err = run_command_with("touch $HOME/x", &no_shell)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NoShell(_)), "{err}");
        assert!(err.to_string().contains("`$` expansion"), "{err}");
        assert!(err.to_string().contains("no /bin/sh"), "{err}");

        let err = run_command_with("no-such-program-vi x", &no_shell)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("no-such-program-vi"), "{err}");

        // With a shell present, shell syntax still works as before.
        let out = dir.path().join("out");
        run_command(&format!("echo x | cat > '{}'", out.display()))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap(), "x\n");
    }
}
