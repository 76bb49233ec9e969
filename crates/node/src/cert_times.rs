//! Certificates of a node's listeners used outside their validity period: the check that
//! refuses a start ([`check_certificate_times`]) and that `run --check` reports (`preflight`).

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cert_facts::unix_now_secs;
use crate::config::{ListenerConfig, NodeConfig};
use crate::preflight::Listener;

/// Which certificate file of a listener: its own certificate or the CA its clients must
/// chain to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertFile {
    /// `cert`: what the listener presents (and the node, as a dialer, for `federation`).
    Own,
    /// `client_ca`.
    ClientCa,
}

impl CertFile {
    pub(crate) fn field(self) -> &'static str {
        match self {
            CertFile::Own => "cert",
            CertFile::ClientCa => "client_ca",
        }
    }
}

/// A certificate of the node's config used outside its validity period. The node refuses to
/// start with one ([`check_certificate_times`]; peers and services would refuse an expired or
/// not yet valid certificate with the TLS alert `certificate_expired`), and `run --check`
/// reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateTimeError {
    /// Its validity ended before now.
    Expired {
        /// `federation.cert`, `api.client_ca`, ...
        setting: String,
        path: PathBuf,
        file: CertFile,
        /// When its validity ended, UTC (`2024-01-01 00:00:00 UTC`).
        not_after: String,
        /// What to do about it.
        remedy: &'static str,
    },
    /// Its validity starts after now.
    NotYetValid {
        setting: String,
        path: PathBuf,
        file: CertFile,
        /// When its validity starts, UTC.
        not_before: String,
        /// Now, UTC, as this machine's clock says.
        now: String,
    },
}

impl CertificateTimeError {
    /// The config setting naming the file.
    pub fn setting(&self) -> &str {
        match self {
            CertificateTimeError::Expired { setting, .. }
            | CertificateTimeError::NotYetValid { setting, .. } => setting,
        }
    }

    /// The certificate file.
    pub fn path(&self) -> &Path {
        match self {
            CertificateTimeError::Expired { path, .. }
            | CertificateTimeError::NotYetValid { path, .. } => path,
        }
    }

    /// What is wrong and what to do, naming the file and the date (without the setting).
    pub fn problem(&self) -> String {
        match self {
            CertificateTimeError::Expired {
                path,
                file: CertFile::Own,
                not_after,
                remedy,
                ..
            } => format!(
                "the certificate {} expired on {not_after}: {remedy}",
                path.display()
            ),
            CertificateTimeError::Expired {
                path,
                file: CertFile::ClientCa,
                not_after,
                remedy,
                ..
            } => format!(
                "the CA certificate {} expired on {not_after} (no certificate in it is valid now): {remedy}",
                path.display()
            ),
            CertificateTimeError::NotYetValid {
                path,
                file,
                not_before,
                now,
                ..
            } => format!(
                "the {}certificate {} is not valid until {not_before} (this machine's clock says {now}): is the clock right? otherwise use a certificate valid now",
                if *file == CertFile::ClientCa { "CA " } else { "" },
                path.display()
            ),
        }
    }
}

impl std::fmt::Display for CertificateTimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.setting(), self.problem())
    }
}

impl std::error::Error for CertificateTimeError {}

/// Refuses a config whose listener certificates or client CAs are expired or not yet valid:
/// a node serving an expired certificate is refused by every peer or service (and one whose
/// CA expired holds certificates no verifier that checks the CA's period accepts). Files that
/// are missing or do not parse are left to the TLS setup, which names them.
pub fn check_certificate_times(cfg: &NodeConfig) -> Result<(), CertificateTimeError> {
    let now = unix_now_secs();
    for (l, which) in [
        (&cfg.federation, Listener::Federation),
        (&cfg.api, Listener::Api),
    ] {
        for file in [CertFile::Own, CertFile::ClientCa] {
            if let Some(e) = certificate_time(l, which, file, now) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Whether the certificate of `file` is outside its validity period at `now` (unix seconds).
/// A certificate file is judged by its first certificate (the listener's own; the rest is its
/// chain); a CA file holding several CAs (one being replaced, its successor) only if none of
/// them is valid, by the one valid last.
pub(crate) fn certificate_time(
    l: &ListenerConfig,
    which: Listener,
    file: CertFile,
    now: i64,
) -> Option<CertificateTimeError> {
    let path = match file {
        CertFile::Own => &l.cert,
        CertFile::ClientCa => &l.client_ca,
    };
    let pem = std::fs::read(path).ok()?;
    let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .map_while(Result::ok)
        .collect();
    let judged = match file {
        CertFile::Own => &ders[..ders.len().min(1)],
        CertFile::ClientCa => &ders[..],
    };
    // (not before, not after), unix seconds.
    let mut periods: Vec<(i64, i64)> = judged
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok())
        .map(|(_, x)| {
            let v = x.validity();
            (v.not_before.timestamp(), v.not_after.timestamp())
        })
        .collect();
    if periods.is_empty() || periods.iter().any(|&(from, to)| from <= now && now <= to) {
        return None;
    }
    periods.sort_by_key(|&(_, to)| to);
    let (from, to) = *periods.last()?;
    let setting = format!("{}.{}", which.name(), file.field());
    let path = path.clone();
    if from > now {
        return Some(CertificateTimeError::NotYetValid {
            setting,
            path,
            file,
            not_before: crate::cert_facts::utc_text(from),
            now: crate::cert_facts::utc_text(now),
        });
    }
    Some(CertificateTimeError::Expired {
        setting,
        path,
        file,
        not_after: crate::cert_facts::utc_text(to),
        remedy: which.renew(file),
    })
}
