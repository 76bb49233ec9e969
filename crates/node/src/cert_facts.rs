//! What a certificate says about itself that the roster records: its serial and validity.

use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate's serial (lowercase hex, no leading zeros: the roster's form) and the period
/// it is valid for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    pub serial_hex: String,
    pub not_before_unix_ms: i64,
    pub not_after_unix_ms: i64,
}

/// Reads the facts of the first certificate in `pem`.
pub fn cert_facts_pem(pem: &str) -> anyhow::Result<CertFacts> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
    cert_facts(&block.contents)
}

/// The SHA-256 of a PEM certificate's DER, in hex: what `openssl x509 -fingerprint -sha256`
/// shows (without its colons).
pub fn sha256_fingerprint_pem(pem: &str) -> anyhow::Result<String> {
    use sha2::Digest;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
    Ok(hex::encode(sha2::Sha256::digest(&block.contents)))
}

/// Reads the facts of a DER certificate.
pub fn cert_facts(der: &[u8]) -> anyhow::Result<CertFacts> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| anyhow::anyhow!("certificate does not parse: {e}"))?;
    let validity = cert.validity();
    Ok(CertFacts {
        serial_hex: serial_hex(cert.raw_serial()),
        not_before_unix_ms: validity.not_before.timestamp().saturating_mul(1000),
        not_after_unix_ms: validity.not_after.timestamp().saturating_mul(1000),
    })
}

/// Now, in unix seconds (0 before 1970, saturated far in the future).
pub(crate) fn unix_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A time (unix seconds) as `2024-01-31 23:59:59 UTC`, the form errors and status give dates
/// in.
pub fn utc_text(unix_secs: i64) -> String {
    match x509_parser::time::ASN1Time::from_timestamp(unix_secs) {
        Ok(t) => {
            let d = t.to_datetime();
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            )
        }
        Err(_) => format!("unix time {unix_secs}"),
    }
}

fn serial_hex(raw: &[u8]) -> String {
    let hex = hex::encode(raw);
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{request_node, Ca, CaRole, Validity, CA_DAYS};
    use intelmesh_core::OrgId;

    const DAY_MS: i64 = 86_400_000;

    fn now_ms() -> i64 {
        intelmesh_core::now_unix_ms()
    }

    #[test]
    fn certificates_are_valid_for_the_days_asked_and_cas_for_ten_years() {
        let ca = Ca::generate(&CaRole::Federation).unwrap();
        let ca_facts = cert_facts_pem(ca.cert_pem()).unwrap();
        let ca_days = (ca_facts.not_after_unix_ms - now_ms()) / DAY_MS;
        assert!(
            (i64::from(CA_DAYS) - 1..=i64::from(CA_DAYS)).contains(&ca_days),
            "{ca_days}"
        );
        let org = OrgId::parse("AU-AFP").unwrap();
        let node = ca.issue_node_for(&org, Validity::days(30)).unwrap();
        let facts = cert_facts_pem(&node.cert_pem).unwrap();
        assert_eq!((facts.not_after_unix_ms - now_ms()) / DAY_MS, 29);
        assert!(facts.not_before_unix_ms < now_ms());
        assert!(facts.not_before_unix_ms > now_ms() - 2 * 3_600_000);
        let Err(err) = ca.issue_node_for(&org, Validity::days(0)) else {
            panic!("a certificate valid for no day was issued");
        };
        assert!(err.to_string().contains("at least one day"), "{err}");
        let Err(err) = ca.issue_node_for(&org, Validity::days(3_000_000)) else {
            panic!("a certificate valid past a CA's ten years was issued");
        };
        assert!(err.to_string().contains("at most 3650 days"), "{err}");
    }

    #[test]
    fn one_request_signed_twice_gets_two_serials() {
        let ca = Ca::generate(&CaRole::Federation).unwrap();
        let org = OrgId::parse("AU-AFP").unwrap();
        let request = request_node(&org).unwrap();
        let sign = || {
            let pem = ca
                .sign_node_request(&org, &request.csr_pem, Validity::days(10))
                .unwrap();
            cert_facts_pem(&pem).unwrap().serial_hex
        };
        let (a, b) = (sign(), sign());
        assert_ne!(a, b, "a renewal must be revocable apart from the first");
        for s in [&a, &b] {
            assert_eq!(s.len(), 32, "16 bytes: {s}");
            assert!(s
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        }
    }

    #[test]
    fn times_are_written_in_utc() {
        assert_eq!(utc_text(1_704_067_199), "2023-12-31 23:59:59 UTC");
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn serials_are_lowercase_hex_without_leading_zeros() {
        assert_eq!(serial_hex(&[0x00, 0x0A, 0xbc]), "abc");
        assert_eq!(serial_hex(&[0x00]), "0");
        assert!(cert_facts_pem("nope").is_err());
    }
}
