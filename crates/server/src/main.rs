//! interlockd: serve until SIGINT or SIGTERM, then drain and exit.
//!
//! Under systemd (`Type=notify`, see deploy/interlockd.service) it says
//! READY once it serves (recovery done, ports bound) and STOPPING when a
//! drain begins; elsewhere the notifications are no-ops.
use clap::Parser;
use interlock_server::{Args, Config, ServerBuilder, init_logs};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.man {
        use std::io::Write;
        let page = interlock_server::config::man_page();
        return match std::io::stdout().write_all(&page) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(_) => std::process::ExitCode::FAILURE,
        };
    }
    let config = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("interlockd: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logs(config.log_format);
    let running = match ServerBuilder::new(config).start().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("interlockd: cannot start: {e}");
            return std::process::ExitCode::from(e.exit_code());
        }
    };
    // Printed on stdout so scripts (and tests) can find the port when
    // listening on port 0.
    println!("interlockd listening on {}", running.addr);
    systemd(sd_notify::NotifyState::Ready);
    let stop = running.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; draining");
        systemd(sd_notify::NotifyState::Stopping);
        stop.cancel();
    });
    match running.shutdown_on_token().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Tells systemd about the service's state when started by it
/// (`NOTIFY_SOCKET` set); a failure only costs systemd's view, so it is
/// logged, not fatal.
fn systemd(state: sd_notify::NotifyState) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(false, &[state])
    {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
