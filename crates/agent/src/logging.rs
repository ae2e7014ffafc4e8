//! Operational logging (stderr) via `tracing`. Audit lines are separate (see
//! `audit`), on stdout.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use vault_injector_core::contract::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default `info`
/// with a level or `target=level` directives (`info`,
/// `vault_injector=debug,info`); one it cannot read leaves `info`. No span
/// or field filters: those need `EnvFilter`'s regex engine, which would
/// make the binary every pod runs larger. Calling it twice is harmless
/// (the second call is ignored).
pub fn init(format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let layer = fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_current_span(true))
            .try_init(),
        LogFormat::Plain => registry.with(layer).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_levels_and_directives_parse_without_env_filter() {
        let t: Targets = "debug".parse().unwrap();
        assert_eq!(t.default_level(), Some(LevelFilter::DEBUG));
        let t: Targets = "vault_injector=debug,warn".parse().unwrap();
        assert!(t.would_enable("vault_injector_agent::agent", &tracing::Level::DEBUG));
        assert!(!t.would_enable("hyper::proto", &tracing::Level::INFO));
    }
}
