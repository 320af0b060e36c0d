//! `interlock admin`: operations on the server itself.

use crate::Out;
use crate::output::{outln, print_json};
use crate::target::{Target, control};
use interlock_proto::v1;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum AdminCmd {
    /// Write a consistent copy of the database to FILE while the server
    /// serves (SQLite). FILE is a path on the server's machine and must
    /// not exist; restore with `interlockd --restore FILE`.
    Backup { file: PathBuf },
    /// Create a private CA, a server certificate and a client certificate
    /// in DIR, for a TLS and mTLS start (no server needed). Refuses if any
    /// of the files exists. Keys are written readable by you only.
    GenCerts(GenCerts),
}

#[derive(clap::Args)]
pub struct GenCerts {
    /// Directory for ca.pem, ca.key, server.pem, server.key, client.pem,
    /// client.key (created if missing).
    dir: PathBuf,
    /// A DNS name or IP address clients dial the server by (repeat it).
    #[arg(long = "name", default_values = ["localhost", "127.0.0.1"])]
    names: Vec<String>,
    /// The client certificate's common name: it signs in as cert:NAME.
    #[arg(long, default_value = "operator")]
    client: String,
    /// Days the server and client certificates are valid (the CA: ten years).
    #[arg(long, default_value = "398")]
    days: u32,
}

/// The files `gen-certs` writes, and whether each is a private key.
const FILES: [(&str, bool); 6] = [
    ("ca.pem", false),
    ("ca.key", true),
    ("server.pem", false),
    ("server.key", true),
    ("client.pem", false),
    ("client.key", true),
];

/// Runs without a server: nothing here talks to one.
pub fn gen_certs(a: GenCerts, json: bool) -> Out {
    use interlock_auth::pki;
    let fail = |msg: String| crate::fail::Fail::Msg(2, msg);
    let issued = pki::issue(&pki::Request {
        server_names: a.names.clone(),
        client_name: a.client.clone(),
        days: a.days,
    })
    .map_err(|e| fail(e.to_string()))?;
    std::fs::create_dir_all(&a.dir).map_err(|e| fail(format!("{}: {e}", a.dir.display())))?;
    for (name, _) in FILES {
        let path = a.dir.join(name);
        if path.exists() {
            return Err(fail(format!(
                "{} already exists; nothing was written (move it away, or pick another \
                 directory: a CA that signed certificates must not be replaced by accident)",
                path.display()
            )));
        }
    }
    let texts = [
        &issued.ca_cert,
        &issued.ca_key,
        &issued.server_cert,
        &issued.server_key,
        &issued.client_cert,
        &issued.client_key,
    ];
    for ((name, private), text) in FILES.iter().zip(texts) {
        let path = a.dir.join(name);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if *private { 0o600 } else { 0o644 });
        }
        opts.open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    }
    let d = a.dir.display();
    if json {
        crate::output::print_value(&serde_json::json!({
            "dir": d.to_string(),
            "files": FILES.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "server_names": a.names,
            "client_identity": format!("cert:{}", a.client),
        }))?;
    } else {
        outln!("wrote {d}/{{ca,server,client}}.{{pem,key}}")?;
        outln!(
            "serve:   interlockd --tls-cert {d}/server.pem --tls-key {d}/server.key --tls-client-ca {d}/ca.pem"
        )?;
        outln!(
            "connect: interlock --ca {d}/ca.pem --cert {d}/client.pem --key {d}/client.key whoami"
        )?;
        outln!(
            "the client signs in as cert:{}; bind it to a role in rbac.json",
            a.client
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(cmd: AdminCmd, t: &Target, json: bool) -> Out {
    match cmd {
        AdminCmd::GenCerts(a) => return gen_certs(a, json),
        AdminCmd::Backup { file } => {
            // Relative paths mean the same file to both sides only when
            // both run here; make it explicit.
            let path = if file.is_absolute() {
                file
            } else {
                std::env::current_dir()
                    .map_err(|e| {
                        crate::fail::Fail::Msg(2, format!("cannot resolve {}: {e}", file.display()))
                    })?
                    .join(file)
            };
            let r = control(t)
                .await?
                .backup(v1::BackupReq {
                    path: path.display().to_string(),
                })
                .await?
                .into_inner();
            if json {
                print_json(&r)?;
            } else {
                outln!("backed up to {} ({} bytes)", r.path, r.bytes)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
