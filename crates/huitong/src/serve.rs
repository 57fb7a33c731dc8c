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
///
/// The handlers are installed when this is called, not when the future is first polled, so that
/// a signal sent right after the "listening on" line is not lost while the server starts.
#[cfg(unix)]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(term) => {},
            () = wait(int) => {},
        }
        tracing::info!("shutting down");
    }
}

#[cfg(not(unix))]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    }
}
