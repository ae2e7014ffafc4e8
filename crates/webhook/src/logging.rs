//! Operational logging (stderr) via `tracing`. Audit lines are separate (see
//! `audit`), on stdout.

use tracing_subscriber::{fmt, EnvFilter};

use vault_injector_core::contract::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default `info`.
/// Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}
