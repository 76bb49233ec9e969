//! Client profiles: how to reach a node's API, kept in a file so a hand-deployed node needs no
//! five TLS flags per command. `--profile NAME` names a `[profile.NAME]` of the client config
//! (`$INTELMESH_CLIENT_CONFIG`, else `~/.config/intelmesh/client.toml`), `--profile FILE` a
//! file holding one profile; with neither `--profile` nor other connection options, the
//! config's `default` profile is used.
//!
//! ```toml
//! default = "afp"
//! [profile.afp]
//! api = "node.afp.example:7443"
//! node_org = "AU-AFP"
//! ca = "service-ca.pem"          # relative paths are relative to this file
//! cert = "soc.pem"
//! key = "soc.key"
//! # or: endpoints = "/tmp/demo/endpoints.json" and node = "AU-AFP"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::usage;

/// One way to reach a node, as a profile writes it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub api: Option<String>,
    pub node_org: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub endpoints: Option<PathBuf>,
    pub node: Option<String>,
    pub timeout: Option<u64>,
}

/// The client config file: named profiles and the default one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientConfig {
    default: Option<String>,
    #[serde(default)]
    profile: BTreeMap<String, Profile>,
}

/// Where the client config is: `$INTELMESH_CLIENT_CONFIG`, else the XDG place.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("INTELMESH_CLIENT_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("intelmesh/client.toml"))
}

impl Profile {
    /// Paths relative to `base`, the directory of the file that named them.
    fn resolved(mut self, base: &Path) -> Profile {
        for p in [
            &mut self.ca,
            &mut self.cert,
            &mut self.key,
            &mut self.endpoints,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        self
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// The profile `--profile` names (a file, or a name in the client config), or the client
/// config's default when `--profile` is absent; `None` when there is no default to use.
pub fn find(named: Option<&str>) -> anyhow::Result<Option<Profile>> {
    if let Some(name) = named {
        let as_file = Path::new(name);
        if as_file.is_file() {
            let profile: Profile = toml::from_str(&read(as_file)?)
                .map_err(|e| usage(format!("--profile {name}: {e}")))?;
            let base = as_file.parent().unwrap_or(Path::new("."));
            return Ok(Some(profile.resolved(base)));
        }
    }
    let Some(path) = config_path() else {
        return match named {
            Some(n) => Err(usage(format!("--profile {n}: no such file, and no client config (set HOME or INTELMESH_CLIENT_CONFIG)"))),
            None => Ok(None),
        };
    };
    if !path.is_file() {
        if std::env::var_os("INTELMESH_CLIENT_CONFIG").is_some() {
            return Err(usage(format!(
                "INTELMESH_CLIENT_CONFIG={}: no such file",
                path.display()
            )));
        }
        return match named {
            Some(n) => Err(usage(format!(
                "--profile {n}: no such file, and no client config at {}",
                path.display()
            ))),
            None => Ok(None),
        };
    }
    let config: ClientConfig =
        toml::from_str(&read(&path)?).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    select(config, named, &path).map(|p| p.map(|p| p.resolved(base)))
}

/// The profile of `config` that `named` (or its default) picks.
fn select(
    mut config: ClientConfig,
    named: Option<&str>,
    path: &Path,
) -> anyhow::Result<Option<Profile>> {
    let name = match (named, &config.default) {
        (Some(n), _) => n.to_string(),
        (None, Some(d)) => d.clone(),
        // One profile and no default: that one.
        (None, None) if config.profile.len() == 1 => {
            config.profile.keys().next().cloned().unwrap_or_default()
        }
        (None, None) => return Ok(None),
    };
    let known: Vec<String> = config.profile.keys().cloned().collect();
    config.profile.remove(&name).map(Some).ok_or_else(|| {
        usage(format!(
            "profile {name} is not in {} (profiles: {})",
            path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> ClientConfig {
        toml::from_str(text).unwrap()
    }

    const TWO: &str = r#"
        default = "afp"
        [profile.afp]
        api = "127.0.0.1:7443"
        node_org = "AU-AFP"
        ca = "ca.pem"
        cert = "/abs/soc.pem"
        key = "soc.key"
        [profile.demo]
        endpoints = "endpoints.json"
        node = "BR-PF"
    "#;

    #[test]
    fn the_default_or_the_named_profile_is_picked() {
        let path = Path::new("/etc/client.toml");
        let afp = select(config(TWO), None, path).unwrap().unwrap();
        assert_eq!(afp.node_org.as_deref(), Some("AU-AFP"));
        let demo = select(config(TWO), Some("demo"), path).unwrap().unwrap();
        assert_eq!(demo.node.as_deref(), Some("BR-PF"));
        let e = select(config(TWO), Some("nope"), path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("profiles: afp, demo"), "{e}");
        assert_eq!(
            select(
                config("[profile.a]\nnode = \"X\"\n[profile.b]\n"),
                None,
                path
            )
            .unwrap(),
            None
        );
        let only = select(config("[profile.a]\nnode = \"X\"\n"), None, path)
            .unwrap()
            .unwrap();
        assert_eq!(only.node.as_deref(), Some("X"));
    }

    #[test]
    fn paths_are_relative_to_the_file() {
        let p = select(config(TWO), None, Path::new("x")).unwrap().unwrap();
        let p = p.resolved(Path::new("/home/soc/.config/intelmesh"));
        assert_eq!(
            p.ca,
            Some(PathBuf::from("/home/soc/.config/intelmesh/ca.pem"))
        );
        assert_eq!(p.cert, Some(PathBuf::from("/abs/soc.pem")));
    }

    #[test]
    fn unknown_settings_are_refused() {
        assert!(toml::from_str::<ClientConfig>("[profile.a]\napi_addr = \"x\"\n").is_err());
    }
}
