//! `rewind`: the operator CLI (see the library for the commands).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = rewind_cli::Cli::parse();
    match rewind_cli::run(cli).await {
        Ok(code) => code,
        Err(rewind_cli::CliError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            // `rewind cat … | head`: the reader has what it wanted.
            ExitCode::from(141)
        }
        Err(e) => {
            eprintln!("rewind: {e}");
            ExitCode::FAILURE
        }
    }
}
