//! Where the server is and how to talk to it: the address, credentials and
//! the CLI's own config file, merged with flags and `INTERLOCK_*` variables.

use crate::fail::Fail;
use interlock_client::args::{CredentialArgs, DEFAULT_ADDR};
pub(crate) use interlock_client::transport;
use interlock_client::{Client, Options, Transport};
use interlock_proto::v1;
use std::path::PathBuf;
use std::time::Duration;

/// Where the server is and how to talk to it.
pub(crate) struct Target {
    pub addr: String,
    pub opts: Options,
}

impl Target {
    /// For commands that never reach a server.
    pub fn local() -> Self {
        Target {
            addr: String::new(),
            opts: Options::default(),
        }
    }
}

pub(crate) async fn connect(t: &Target) -> Result<Client, Fail> {
    Ok(Client::connect(&t.addr, t.opts.clone()).await?)
}

pub(crate) async fn control(
    t: &Target,
) -> Result<v1::control_client::ControlClient<Transport>, Fail> {
    Ok(v1::control_client::ControlClient::new(
        transport(&t.addr, &t.opts).await?,
    ))
}

/// The CLI's own settings file.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CliConfig {
    addr: Option<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    token_file: Option<PathBuf>,
}

/// Each setting from its flag or `INTERLOCK_*` variable, else the config
/// file, else the default (plaintext to the local server).
pub(crate) fn resolve(
    addr: &Option<String>,
    config: &Option<PathBuf>,
    creds: &CredentialArgs,
    timeout: Duration,
) -> Result<Target, Fail> {
    let file = read_cli_config(config)?;
    let credentials = creds
        .clone()
        .or(CredentialArgs {
            ca: file.ca,
            cert: file.cert,
            key: file.key,
            token_file: file.token_file,
            ..CredentialArgs::default()
        })
        .credentials()?;
    let addr = addr
        .clone()
        .or(file.addr)
        .unwrap_or_else(|| DEFAULT_ADDR.into());
    Ok(Target {
        addr,
        opts: Options {
            credentials,
            connect_timeout: timeout,
            call_timeout: timeout,
            ..Options::default()
        },
    })
}

/// The config file; a file named explicitly must exist.
fn read_cli_config(config: &Option<PathBuf>) -> Result<CliConfig, Fail> {
    let (path, explicit) = match config {
        Some(p) => (Some(p.clone()), true),
        None => {
            let base = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
            (base.map(|b| b.join("interlock/cli.json")), false)
        }
    };
    match path {
        Some(p) => match std::fs::read_to_string(&p) {
            Ok(text) => serde_json::from_str::<CliConfig>(&text)
                .map_err(|e| Fail::Msg(2, format!("{}: {e}", p.display()))),
            Err(e) if explicit => Err(Fail::Msg(2, format!("cannot read {}: {e}", p.display()))),
            Err(_) => Ok(CliConfig::default()),
        },
        None => Ok(CliConfig::default()),
    }
}
