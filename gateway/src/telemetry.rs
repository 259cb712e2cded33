//! Log output: human-readable or JSON lines, filtered as configured.

use std::io::IsTerminal;

use rewind_config::{LogFormat, TelemetryConfig};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// s3s logs every refused request at error level with internal detail; the gateway's own
/// per-request line replaces that, so s3s is quiet unless the filter names it.
const QUIET_LIBRARIES: &str = "s3s=off,s3s_aws=off";

/// The filter in force for `level` (the configured directives).
pub fn filter_directives(level: &str) -> String {
    if level.contains("s3s") { level.to_owned() } else { format!("{QUIET_LIBRARIES},{level}") }
}

/// Log lines waiting for the writer thread; past this, request tasks wait (lines are
/// never dropped: they are the access log).
const LOG_BUFFER_LINES: usize = 64 * 1024;
/// Bytes of lines the writer thread gathers before writing them.
const LOG_WRITE_BUFFER: usize = 64 * 1024;

/// Installs the global subscriber; call once, early in `main`, and keep the returned guard
/// until exit (dropping it flushes what is buffered).
pub fn init(cfg: &TelemetryConfig) -> Result<WorkerGuard, String> {
    let filter =
        EnvFilter::try_new(filter_directives(&cfg.log_level)).map_err(|e| format!("telemetry.log_level: {e}"))?;
    // Writing happens on a dedicated thread so a slow terminal or pipe does not stall requests.
    // The thread writes what it has taken from the queue in one go and flushes whenever the
    // queue is empty: under load, one write per batch of lines instead of one per line.
    let stderr = std::io::BufWriter::with_capacity(LOG_WRITE_BUFFER, std::io::stderr());
    let (writer, guard) =
        NonBlockingBuilder::default().buffered_lines_limit(LOG_BUFFER_LINES).lossy(false).finish(stderr);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let installed = match cfg.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    installed.map_err(|e| e.to_string())?;
    Ok(guard)
}
