//! Log output: human-readable or JSON lines, filtered as configured.

use rewind_config::{LogFormat, TelemetryConfig};
use tracing_subscriber::EnvFilter;

/// s3s logs every refused request at error level with internal detail; the gateway's own
/// per-request line replaces that, so s3s is quiet unless the filter names it.
const QUIET_LIBRARIES: &str = "s3s=off,s3s_aws=off";

/// The filter in force for `level` (the configured directives).
pub fn filter_directives(level: &str) -> String {
    if level.contains("s3s") {
        level.to_owned()
    } else {
        format!("{QUIET_LIBRARIES},{level}")
    }
}

/// Installs the global subscriber; call once, early in `main`.
pub fn init(cfg: &TelemetryConfig) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter_directives(&cfg.log_level))
        .map_err(|e| format!("telemetry.log_level: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match cfg.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    installed.map_err(|e| e.to_string())
}
