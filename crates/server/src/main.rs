//! interlockd: serve until SIGINT or SIGTERM, then drain and exit.
//!
//! Under systemd (`Type=notify`, see deploy/interlockd.service) it says
//! READY once it serves (recovery done, ports bound) and STOPPING when a
//! drain begins; elsewhere the notifications are no-ops.
use clap::Parser;
use interlock_server::{Args, Config, ServerBuilder};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    let telemetry =
        match interlock_server::telemetry::init(config.log_format, config.otlp_endpoint.as_deref())
        {
            Ok(t) => t,
            Err(e) => {
                eprintln!("interlockd: {e}");
                return std::process::ExitCode::from(2);
            }
        };
    let running = match ServerBuilder::new(config).start().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("interlockd: cannot start: {e}");
            telemetry.shutdown();
            return std::process::ExitCode::from(e.exit_code());
        }
    };
    // Installed before anyone is told we are up: a TERM sent the moment
    // READY (or the line below) arrives must drain, not kill the process
    // with the default disposition.
    let signals = shutdown_signals();
    // Printed on stdout so scripts (and tests) can find the port when
    // listening on port 0. Not `println!`: it panics when stdout's reader
    // is gone (a pipe closed early, a log collector restarted), and the
    // server must keep serving then.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if let Err(e) =
            writeln!(out, "interlockd listening on {}", running.addr).and_then(|()| out.flush())
        {
            tracing::warn!(error = %e, addr = %running.addr, "cannot print the address on stdout");
        }
    }
    systemd(sd_notify::NotifyState::Ready);
    let stop = running.shutdown_token();
    tokio::spawn(async move {
        signals.await;
        tracing::info!("shutdown requested; draining");
        systemd(sd_notify::NotifyState::Stopping);
        stop.cancel();
    });
    let code = match running.shutdown_on_token().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server failed: {e}");
            std::process::ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
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

/// Installs the SIGINT and SIGTERM handlers now; the future completes on
/// the first of them.
fn shutdown_signals() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
}
