//! What the long-running subcommands share: how they announce themselves and when they stop.

use std::io::Write;
use std::net::SocketAddr;

/// Prints the line that scripts and tests wait for: `<what> listening on <addr>`.
pub fn announce(what: &str, addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not stop a server; the address is in the log as well.
    let _ = writeln!(out, "{what} listening on {addr}");
    let _ = out.flush();
}

/// Completes on Ctrl-C or SIGTERM, the signals an operator or systemd sends.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
