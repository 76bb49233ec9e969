//! The hub's ledger of the certificates it issued: `DATA_DIR/admin/issued/SERIAL` holds the
//! org a bundle certified, written (synced) before the bundle is handed out. A revocation names
//! a serial; the roster ties it to a member only once a `RecordCert` for it was published, so a
//! certificate revoked before that (stolen between its bundle and its record) would otherwise
//! not stop the hub from certifying the same enrolment key again.

use std::path::{Path, PathBuf};

use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;

use super::AdminError;

/// The ledger of the node whose data directory is `data_dir`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("admin").join("issued")
}

/// A serial as a file name: lowercase hex, as the roster writes serials, and nothing else.
fn file_of(dir: &Path, serial: &str) -> Option<PathBuf> {
    let plain = !serial.is_empty()
        && serial.len() <= 64
        && serial
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    plain.then(|| dir.join(serial))
}

/// Records that certificate `serial` was issued to `org`, durably.
pub fn record(dir: &Path, serial: &str, org: &OrgId) -> Result<(), AdminError> {
    let path = file_of(dir, serial)
        .ok_or_else(|| AdminError::Internal(format!("serial {serial:?} is not lowercase hex")))?;
    crate::durable::create_private_dir(dir).map_err(|e| AdminError::Internal(e.to_string()))?;
    crate::durable::replace(&path, org.as_str().as_bytes(), 0o600)
        .map_err(|e| AdminError::Internal(e.to_string()))
}

/// The org certificate `serial` was issued to by this hub, if the ledger has it.
pub fn issued_to(dir: &Path, serial: &str) -> Result<Option<String>, AdminError> {
    let Some(path) = file_of(dir, serial) else {
        return Ok(None);
    };
    match std::fs::read(&path) {
        Ok(org) => Ok(Some(String::from_utf8_lossy(&org).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AdminError::Internal(format!(
            "reading {}: {e}",
            path.display()
        ))),
    }
}

/// Certificates one member may have issued by this hub and not yet recorded in the roster
/// (nor revoked): a renewal or two in flight. Past it, `IssueBundle` is refused: each one
/// signs a certificate and writes a synced ledger file, and a stolen admin certificate could
/// otherwise call it without end.
pub const MAX_UNRECORDED: usize = 8;

/// The serials this hub issued to `org` (by the ledger) that `settled` does not name (recorded
/// in the roster, or revoked), sorted.
pub fn unrecorded(
    dir: &Path,
    org: &OrgId,
    settled: impl Fn(&str) -> bool,
) -> Result<Vec<String>, AdminError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(AdminError::Internal(format!(
                "reading {}: {e}",
                dir.display()
            )))
        }
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| AdminError::Internal(format!("reading {}: {e}", dir.display())))?;
        let Some(serial) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if settled(&serial) {
            continue;
        }
        if issued_to(dir, &serial)?.as_deref() == Some(org.as_str()) {
            found.push(serial);
        }
    }
    found.sort();
    Ok(found)
}

/// Whether a certificate of `org` is among `revoked`: one the roster ties to it, or one it
/// ties to no member that `issued_to` says went to `org`.
pub fn revoked_for(
    revoked: &[pb::RevokedCert],
    org: &OrgId,
    issued_to: impl Fn(&str) -> Result<Option<String>, AdminError>,
) -> Result<bool, AdminError> {
    for r in revoked {
        if r.org == org.as_str() {
            return Ok(true);
        }
        if r.org.is_empty() && issued_to(&r.serial)?.as_deref() == Some(org.as_str()) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::admin) fn revoked(serial: &str, org: &str) -> pb::RevokedCert {
        pb::RevokedCert {
            serial: serial.into(),
            org: org.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_serial_revoked_before_it_was_recorded_still_counts_for_the_org_it_was_issued_to() {
        let data = tempfile::tempdir().unwrap();
        let dir = dir(data.path());
        let (au, br) = (
            OrgId::parse("AU-AFP").unwrap(),
            OrgId::parse("BR-PF").unwrap(),
        );
        record(&dir, "1f2e", &au).unwrap();
        assert_eq!(issued_to(&dir, "1f2e").unwrap().as_deref(), Some("AU-AFP"));
        assert_eq!(issued_to(&dir, "77").unwrap(), None);
        let lookup = |s: &str| issued_to(&dir, s);
        let list = [revoked("1f2e", ""), revoked("99", "DE-BKA")];
        assert!(revoked_for(&list, &au, lookup).unwrap());
        assert!(!revoked_for(&list, &br, lookup).unwrap());
        assert!(revoked_for(&[revoked("5", "BR-PF")], &br, lookup).unwrap());
        // Names that are not serials never reach the file system.
        for bad in ["", "../x", "1F2E", "a/b"] {
            assert!(record(&dir, bad, &au).is_err(), "{bad:?}");
            assert_eq!(issued_to(&dir, bad).unwrap(), None, "{bad:?}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("1f2e"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_serials_issued_to_an_org_and_not_yet_settled_are_listed() {
        let data = tempfile::tempdir().unwrap();
        let dir = dir(data.path());
        let (au, br) = (
            OrgId::parse("AU-AFP").unwrap(),
            OrgId::parse("BR-PF").unwrap(),
        );
        assert!(unrecorded(&dir, &au, |_| false).unwrap().is_empty());
        for (serial, org) in [("0a", &au), ("0b", &au), ("0c", &br), ("0d", &au)] {
            record(&dir, serial, org).unwrap();
        }
        assert_eq!(
            unrecorded(&dir, &au, |_| false).unwrap(),
            ["0a", "0b", "0d"]
        );
        assert_eq!(unrecorded(&dir, &au, |s| s == "0b").unwrap(), ["0a", "0d"]);
        assert_eq!(unrecorded(&dir, &br, |_| false).unwrap(), ["0c"]);
    }
}
