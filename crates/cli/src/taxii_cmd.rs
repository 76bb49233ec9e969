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
                Some(p) => println!("user {name} ({permission:?}): password {p}\n(shown once; only its hash is in {}; a running node takes it when restarted)", config.display()),
                None => println!("user {name} ({permission:?}) set in {}; a running node takes it when restarted", config.display()),
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
            // A running node keeps the users it read at start: the password works until then.
            println!(
                "user {name} removed from {}; a running node still admits it until restarted",
                config.display()
            );
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

/// The section of a config file this command edits; the others are left as they are written.
#[derive(serde::Deserialize, serde::Serialize)]
struct Sections {
    taxii: Option<TaxiiConfig>,
}

/// `text` with its `[taxii]` section (and its `[[taxii.user]]` tables) replaced by `taxii`, or
/// removed; everything else, comments included, as it was. A section that was there stays in
/// its place; a new one goes at the end.
fn with_taxii(text: &str, taxii: Option<&TaxiiConfig>) -> anyhow::Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().context("not TOML")?;
    let position = doc
        .get("taxii")
        .and_then(toml_edit::Item::as_table)
        .and_then(toml_edit::Table::position);
    doc.remove("taxii");
    let Some(taxii) = taxii else {
        return Ok(doc.to_string());
    };
    let rendered = toml::to_string(&Sections {
        taxii: Some(taxii.clone()),
    })
    .context("encoding [taxii]")?;
    let Some(position) = position else {
        let mut out = doc.to_string();
        if !out.is_empty() {
            out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
        }
        out.push_str(&rendered);
        return Ok(out);
    };
    let mut section: toml_edit::DocumentMut = rendered.parse().context("reading back [taxii]")?;
    let mut item = section.remove("taxii").context("[taxii] rendered")?;
    place_tables(&mut item, position);
    doc.insert("taxii", item);
    Ok(doc.to_string())
}

/// Puts every table of `item` at `position` of the document: they are written in order, where
/// the section they replace was.
fn place_tables(item: &mut toml_edit::Item, position: usize) {
    let tables: Vec<&mut toml_edit::Table> = match item {
        toml_edit::Item::Table(t) => vec![t],
        toml_edit::Item::ArrayOfTables(a) => a.iter_mut().collect(),
        toml_edit::Item::None | toml_edit::Item::Value(_) => Vec::new(),
    };
    for t in tables {
        t.set_position(position);
        for (_, child) in t.iter_mut() {
            place_tables(child, position);
        }
    }
}

/// Reads the config's `[taxii]`, lets `change` edit it, checks it and writes the file back
/// with every other setting, and every comment outside `[taxii]`, as it was.
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
    let mut taxii = toml::from_str::<Sections>(&text)
        .map_err(|e| usage(format!("--config {}: [taxii]: {e}", config.display())))?
        .taxii;
    change(&mut taxii)?;
    let text = with_taxii(&text, taxii.as_ref())
        .map_err(|e| usage(format!("--config {}: {e}", config.display())))?;
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
    // Replaced whole, keeping the file's mode, owner and group, but never readable by others
    // once it holds users' password hashes (guessed offline from a copy): the node's user owns
    // the file or is in its group.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let old = std::fs::metadata(config)
        .map_err(|e| usage(format!("--config {}: {e}", config.display())))?;
    let mode = old.permissions().mode() & 0o777;
    let holds_hashes = edited.taxii.as_ref().is_some_and(|t| !t.user.is_empty());
    let narrowed = if holds_hashes { mode & 0o770 } else { mode };
    intelmesh_node::durable::replace_exact(config, text.as_bytes(), narrowed)?;
    let new = std::fs::metadata(config)?;
    if (new.uid(), new.gid()) != (old.uid(), old.gid())
        && std::os::unix::fs::chown(config, Some(old.uid()), Some(old.gid())).is_err()
    {
        // Written by another user who cannot give it back (not root). Its group back (a member
        // may give a file to its group), the node's user reads it through the group, as before;
        // without that, readable by others, or the node's user might read it no more.
        let group_back = std::os::unix::fs::chown(config, None, Some(old.gid())).is_ok();
        let readable = if holds_hashes && group_back {
            0o040
        } else {
            0o044
        };
        std::fs::set_permissions(config, std::fs::Permissions::from_mode(narrowed | readable))?;
        eprintln!(
            "{}: now owned by this user, not its owner before; left readable by its group (and by others unless it holds password hashes and its group could be given back):              run this command as its owner",
            config.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "# SG-IGCI's node: hand-written, commented\n\
        org = \"SG-IGCI\" # the member id\n\n\
        [api]\n# where SOC tools call\nlisten = \"127.0.0.1:7001\"\n\n\
        [taxii]\nlisten = \"127.0.0.1:7003\"\n\n\
        [[taxii.user]]\nname = \"old\"\npassword_hash = \"x\"\npermission = \"read\"\n\n\
        [metrics]\n# Prometheus\nlisten = \"127.0.0.1:9100\"\n";

    fn gateway(listen: &str, users: &[&str]) -> TaxiiConfig {
        let mut t = TaxiiConfig::new(listen.parse().expect("an address"));
        t.user = users
            .iter()
            .map(|name| TaxiiUser {
                name: name.to_string(),
                password_hash: "h".into(),
                permission: Permission::Submit,
            })
            .collect();
        t
    }

    fn sections(text: &str) -> Vec<&str> {
        text.lines().filter(|l| l.starts_with('[')).collect()
    }

    #[test]
    fn a_section_is_replaced_in_place_and_every_comment_outside_it_kept() {
        let text = with_taxii(CONFIG, Some(&gateway("127.0.0.1:7004", &["a", "b"]))).unwrap();
        for kept in [
            "# SG-IGCI's node: hand-written, commented",
            "org = \"SG-IGCI\" # the member id",
            "# where SOC tools call",
            "# Prometheus",
        ] {
            assert!(text.lines().any(|l| l == kept), "{kept:?} in\n{text}");
        }
        assert_eq!(
            sections(&text),
            [
                "[api]",
                "[taxii]",
                "[[taxii.user]]",
                "[[taxii.user]]",
                "[metrics]"
            ],
            "{text}"
        );
        let read: Sections = toml::from_str(&text).unwrap();
        let t = read.taxii.unwrap();
        assert_eq!(t.listen.to_string(), "127.0.0.1:7004");
        let names: Vec<&str> = t.user.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn a_new_section_goes_last_and_a_removed_one_leaves_the_rest() {
        let without = with_taxii(CONFIG, None).unwrap();
        assert_eq!(sections(&without), ["[api]", "[metrics]"], "{without}");
        assert!(without.contains("# Prometheus"), "{without}");
        let added = with_taxii(&without, Some(&gateway("127.0.0.1:7005", &[]))).unwrap();
        assert!(added.starts_with(&without), "{added}");
        assert_eq!(
            sections(&added),
            ["[api]", "[metrics]", "[taxii]"],
            "{added}"
        );
        let read: Sections = toml::from_str(&added).unwrap();
        assert_eq!(read.taxii.unwrap().listen.to_string(), "127.0.0.1:7005");
    }
}
