//! `intelmesh taxii`: turning a node's TAXII 2.1 gateway on and managing its HTTP basic users,
//! by editing the `[taxii]` section of the node's config file (the rest of the file is kept;
//! a running node reads the change at its next start).

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use intelmesh_node::config::NodeConfig;
use intelmesh_node::taxii::{hash_password, random_password, Permission, TaxiiConfig, TaxiiUser};

use crate::usage;

#[derive(Subcommand, Debug)]
pub enum Taxii {
    /// Turn the gateway on, or move it: `[taxii] listen` in the node's config. It serves with
    /// the API listener's certificate; clients trust the API's CA.
    Enable {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// HOST:PORT to listen on (HTTPS).
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Add or replace a user who authenticates with HTTP basic credentials; a generated
    /// password is printed once (only its argon2 hash is kept).
    User {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "read")]
        permission: PermissionArg,
        /// Read the password from the first line of standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user.
    RemoveUser {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PermissionArg {
    /// Read the collection.
    Read,
    /// Read, and add objects (signed by the node).
    Submit,
}

impl From<PermissionArg> for Permission {
    fn from(p: PermissionArg) -> Permission {
        match p {
            PermissionArg::Read => Permission::Read,
            PermissionArg::Submit => Permission::Submit,
        }
    }
}

pub fn run(which: Taxii) -> anyhow::Result<ExitCode> {
    match which {
        Taxii::Enable { config, listen } => {
            edit(&config, |t| {
                let t = t.get_or_insert_with(|| TaxiiConfig::new(listen));
                t.listen = listen;
                Ok(())
            })?;
            println!(
                "{}: the TAXII gateway listens on https://{listen}/taxii2/ at the next start",
                config.display()
            );
        }
        Taxii::User {
            config,
            name,
            permission,
            password_stdin,
        } => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                let p = line.trim_end_matches(['\r', '\n']).to_string();
                if p.len() < 12 {
                    return Err(usage(
                        "--password-stdin: give a password of at least 12 characters",
                    ));
                }
                Some(p)
            } else {
                None
            };
            let shown = add_user(&config, &name, permission.into(), password)?;
            match shown {
                Some(p) => println!("user {name} ({permission:?}): password {p}\n(shown once; only its hash is in {})", config.display()),
                None => println!("user {name} ({permission:?}) set in {}", config.display()),
            }
        }
        Taxii::RemoveUser { config, name } => {
            edit(&config, |t| {
                let t = t
                    .as_mut()
                    .ok_or_else(|| usage("the config has no [taxii] section"))?;
                let before = t.user.len();
                t.user.retain(|u| u.name != name);
                if t.user.len() == before {
                    return Err(usage(format!("no TAXII user {name}")));
                }
                Ok(())
            })?;
            println!("user {name} removed from {}", config.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Adds or replaces `name`; returns the password when it was generated here.
pub fn add_user(
    config: &Path,
    name: &str,
    permission: Permission,
    password: Option<String>,
) -> anyhow::Result<Option<String>> {
    let generated = password.is_none();
    let password = password.unwrap_or_else(random_password);
    let user = TaxiiUser {
        name: name.to_string(),
        password_hash: hash_password(&password)?,
        permission,
    };
    edit(config, |t| {
        let t = t.as_mut().ok_or_else(|| {
            usage("the config has no [taxii] section: run `intelmesh taxii enable` first")
        })?;
        t.user.retain(|u| u.name != user.name);
        t.user.push(user);
        Ok(())
    })?;
    Ok(generated.then_some(password))
}

/// Reads the config's `[taxii]`, lets `change` edit it, checks it and writes the file back
/// with every other setting as it was.
pub fn edit(
    config: &Path,
    change: impl FnOnce(&mut Option<TaxiiConfig>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| usage(format!("--config {}: {e}", config.display())))?;
    // A node's config, not any TOML file: the edit is judged as the node will read it.
    let before: Vec<String> = NodeConfig::from_text(&text, config)
        .map_err(|e| usage(format!("--config is not a node config: {e}")))?
        .problems()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| usage(format!("--config {}: not TOML: {e}", config.display())))?;
    let mut taxii: Option<TaxiiConfig> = match table.remove("taxii") {
        Some(v) => Some(
            v.try_into()
                .map_err(|e| usage(format!("--config {}: [taxii]: {e}", config.display())))?,
        ),
        None => None,
    };
    change(&mut taxii)?;
    if let Some(t) = &taxii {
        table.insert(
            "taxii".into(),
            toml::Value::try_from(t).context("encoding [taxii]")?,
        );
    }
    let text = toml::to_string_pretty(&table).context("encoding the config")?;
    // What the node would refuse that the edit brought (the gateway's port taken by another
    // listener, …): refused now, not at the next start. What was there before is the
    // operator's own business.
    let edited = NodeConfig::from_text(&text, config)
        .map_err(|e| usage(format!("--config {}: {e}", config.display())))?;
    if let Some(f) = edited
        .problems()
        .into_iter()
        .find(|f| !before.contains(&f.to_string()))
    {
        return Err(usage(f.to_string()));
    }
    // Replaced whole, keeping the file's mode (it holds the users' password hashes).
    let mode = std::fs::metadata(config)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap_or(0o600);
    Ok(intelmesh_node::durable::replace(
        config,
        text.as_bytes(),
        mode,
    )?)
}
