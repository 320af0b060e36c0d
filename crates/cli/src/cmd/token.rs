//! `interlock token`: mint bearer tokens and hash existing ones, locally.

use crate::Out;
use crate::fail::Fail;
use crate::output::{outln, print_value};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum TokenCmd {
    /// Mint a random token (locally; nothing is sent) and print the entry
    /// to add to the server's tokens.json.
    New {
        /// Name the token's calls are audited and authorized under (token:NAME).
        #[arg(long)]
        name: String,
        /// Validity, e.g. 90d or 12h; the entry then carries "expires".
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// Print the tokens.json hash of an existing token read from stdin.
    Hash,
}

pub fn run(cmd: &TokenCmd, json: bool) -> Out {
    use interlock_auth::tokens;
    let (token, entry) = match cmd {
        TokenCmd::New { name, expires_in } => {
            let token = tokens::mint();
            let mut entry = serde_json::json!({"name": name, "sha256": tokens::hash(&token)});
            if let Some(d) = expires_in {
                let at = std::time::SystemTime::now() + *d;
                entry["expires"] = humantime::format_rfc3339_seconds(at).to_string().into();
            }
            (token, entry)
        }
        TokenCmd::Hash => {
            let mut t = String::new();
            std::io::stdin()
                .read_line(&mut t)
                .map_err(|e| Fail::Msg(2, format!("cannot read the token from stdin: {e}")))?;
            let sha256 = tokens::hash(t.trim());
            if json {
                print_value(&serde_json::json!({ "sha256": sha256 }))?;
            } else {
                outln!("{sha256}")?;
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        let mut out = entry.clone();
        out["token"] = token.into();
        print_value(&out)?;
    } else {
        outln!("token: {token}")?;
        outln!()?;
        outln!("Add this entry to \"tokens\" in the server's tokens.json, and bind")?;
        outln!(
            "token:{} to a role in rbac.json:",
            entry["name"].as_str().unwrap_or_default()
        )?;
        outln!("  {entry}")?;
        outln!()?;
        outln!("The server keeps only the hash: store the token now.")?;
    }
    Ok(ExitCode::SUCCESS)
}
