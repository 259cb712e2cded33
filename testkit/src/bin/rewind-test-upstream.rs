//! Serves a directory as S3 on 127.0.0.1 with the embedded upstream (s3s-fs, as
//! `rewind-gateway` runs it by default), for scripts that run a client suite direct and
//! through the gateway against the same kind of upstream (tests/conformance).
//!
//! Usage: `rewind-test-upstream DIR`. Prints one JSON line with the endpoint and the
//! generated credentials, then serves until its standard input closes.

use std::io::Read;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let Some(root) = std::env::args_os().nth(1) else {
        eprintln!("usage: rewind-test-upstream DIR (serves until stdin closes)");
        std::process::exit(2);
    };
    let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
    let up = rewind_gateway::upstream::EmbeddedUpstream::start(root.as_ref(), shutdown.clone(), &tracker).await?;
    let t = &up.target;
    // Endpoint and keys are URL and alphanumeric text: no JSON escaping is needed.
    println!(
        r#"{{"endpoint": "{}", "access_key_id": "{}", "secret_access_key": "{}"}}"#,
        t.endpoint,
        t.access_key_id,
        t.secret.expose()
    );
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}
