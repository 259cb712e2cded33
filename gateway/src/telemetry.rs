//! Log output: human-readable or JSON lines, filtered as configured, written by a thread
//! of their own that gathers them (`rewind_embedded::log_lines`).

use std::io::IsTerminal;
use std::sync::Arc;

use rewind_config::{LogFormat, TelemetryConfig};
use rewind_embedded::log_lines::{Lines, LogGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// s3s logs every refused request at error level with internal detail; the gateway's own
/// per-request line replaces that, so s3s is quiet unless the filter names it.
const QUIET_LIBRARIES: &str = "s3s=off,s3s_aws=off";

/// The filter in force for `level` (the configured directives).
pub fn filter_directives(level: &str) -> String {
    if level.contains("s3s") { level.to_owned() } else { format!("{QUIET_LIBRARIES},{level}") }
}

/// Installs the global subscriber; call once, early in `main`, and keep the returned guard
/// until exit (dropping it writes what is gathered).
pub fn init(cfg: &TelemetryConfig) -> Result<LogGuard, String> {
    let filter =
        EnvFilter::try_new(filter_directives(&cfg.log_level)).map_err(|e| format!("telemetry.log_level: {e}"))?;
    // Writing happens on a thread of its own so a slow terminal or pipe does not stall requests.
    let (lines, guard) = Lines::spawn(std::io::stderr())?;
    let lines = LinesWriter(lines);
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stderr().is_terminal()).with_writer(lines);
    let installed = match cfg.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    installed.map_err(|e| e.to_string())?;
    Ok(guard)
}

/// What the subscriber writes through.
struct LinesWriter(Arc<Lines>);

impl<'a> MakeWriter<'a> for LinesWriter {
    type Writer = &'a Lines;

    fn make_writer(&'a self) -> Self::Writer {
        &self.0
    }
}
