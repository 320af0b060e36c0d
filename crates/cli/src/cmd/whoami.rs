//! `interlock whoami`: the identity and roles the server sees for this caller.

use crate::Out;
use crate::output::{outln, print_json};
use crate::target::{Target, control};
use interlock_proto::v1;
use std::process::ExitCode;

pub async fn run(t: &Target, json: bool) -> Out {
    let r = control(t)
        .await?
        .who_am_i(v1::WhoAmIReq::default())
        .await?
        .into_inner();
    if json {
        print_json(&r)?;
    } else if !r.auth_enabled {
        outln!(
            "{} (authentication is off: every call is allowed)",
            r.identity
        )?;
    } else {
        outln!("{}", r.identity)?;
        for a in &r.aliases {
            outln!("  also {a}")?;
        }
        match r.roles.as_slice() {
            [] => outln!("  roles: none (every call will be denied)")?,
            roles => outln!("  roles: {}", roles.join(", "))?,
        }
        if !r.grants.is_empty() {
            outln!("  may: {}", r.grants.join(", "))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
