//! What the long-running subcommands share: how they announce themselves, tell systemd how
//! they are, and when they stop.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

static JSON: OnceLock<bool> = OnceLock::new();

/// With `--log-json`, the listening line is a JSON object too, so that a log shipper reading
/// stdout and stderr together sees only JSON.
pub fn set_json(json: bool) {
    let _ = JSON.set(json);
}

/// Prints the line that scripts and tests wait for: `<what> listening on <addr>` (or, with
/// `--log-json`, `{"message":"listening","service":<what>,"addr":<addr>}`), and tells systemd
/// the service is ready.
pub fn announce(what: &str, addr: SocketAddr) {
    let line = if JSON.get().copied().unwrap_or(false) {
        serde_json::json!({"message": "listening", "service": what, "addr": addr.to_string()})
            .to_string()
    } else {
        format!("{what} listening on {addr}")
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout must not stop a server; the address is in the log as well.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    drop(out);
    sd_notify("READY=1");
    watchdog();
}

/// Sends `state` to systemd's notification socket (`sd_notify(3)`) if the service manager
/// gave one (`Type=notify`); does nothing otherwise. The protocol is one datagram, so it is
/// spoken here rather than through a library.
#[cfg(unix)]
pub fn sd_notify(state: &str) {
    use std::os::unix::net::UnixDatagram;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let sent = match bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        }
        #[cfg(not(target_os = "linux"))]
        Some(_) => return,
        None => socket.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "cannot notify systemd");
    }
}

#[cfg(not(unix))]
pub fn sd_notify(_state: &str) {}

/// With `WatchdogSec=` set, systemd expects `WATCHDOG=1` at least every `WATCHDOG_USEC`:
/// sent at half that from a task on the runtime, so a wedged runtime gets the process
/// restarted.
fn watchdog() {
    let Some(usec) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    // WATCHDOG_PID, when set, names the process meant; a child must not answer for it.
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return;
    }
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        loop {
            sd_notify("WATCHDOG=1");
            tokio::time::sleep(every).await;
        }
    });
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
        sd_notify("STOPPING=1");
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
