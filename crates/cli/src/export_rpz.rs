//! The DNS Response Policy Zone of `export --format rpz`: domains, addresses, CIDR blocks and
//! URLs' hosts as NXDOMAIN rules (`CNAME .`) in a zone file that BIND, Unbound and PowerDNS
//! load as an RPZ. A pure function of the values, so it is tested without a node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use intelmesh_core::{Indicator, IndicatorType};

/// The zone's name when `--rpz-zone` is not given.
pub const DEFAULT_ZONE: &str = "rpz.intelmesh.";

/// Longest domain name in text form without the final dot (255 octets on the wire).
const MAX_NAME: usize = 253;

/// Why a value gives no rule, beside its type having none.
const UNREPRESENTABLE: &str = "unrepresentable (too long, or not a host name)";

/// A rendered zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    pub text: String,
    /// Trigger records written (a domain gives two: itself and its subdomains).
    pub rules: usize,
    /// Values left out, by type name (or why): RPZ triggers name hosts and addresses only.
    pub skipped: BTreeMap<&'static str, usize>,
}

/// For clap: a zone name, made absolute (`rpz.example` → `rpz.example.`).
pub fn parse_zone_name(s: &str) -> Result<String, String> {
    let name = s.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || !is_host_name(&name) || name.len() > MAX_NAME {
        return Err(format!(
            "{s:?} is not a DNS zone name (labels of letters, digits, `-` and `_`, 1 to 63 bytes each)"
        ));
    }
    Ok(format!("{name}."))
}

/// Labels of 1 to 63 bytes of `[a-z0-9_-]`: what can stand unquoted in a zone file.
fn is_host_name(name: &str) -> bool {
    name.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    })
}

/// The zone `zone` (absolute, as [`parse_zone_name`] gives it) with serial `serial` holding a
/// rule per value in `values`; types RPZ cannot express are counted in [`Zone::skipped`].
pub fn rpz_zone(zone: &str, serial: u32, values: &[Indicator]) -> Zone {
    // Sorted and without repeats: a URL's host may also be listed as a domain.
    let mut names = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    let mut skipped = BTreeMap::new();
    // Room for `*.` and `.zone` around a name.
    let room = MAX_NAME.saturating_sub(zone.len() + 2);
    for value in values {
        let (target, wildcard) = match value.ty() {
            // A URL names one host; its subdomains are not implicated.
            IndicatorType::Url => match value.host() {
                Some(host) => (host, false),
                None => {
                    *skipped.entry(UNREPRESENTABLE).or_insert(0) += 1;
                    continue;
                }
            },
            _ => (value.clone(), true),
        };
        let v = target.value();
        let added = match target.ty() {
            IndicatorType::Domain if is_host_name(v) && v.len() <= room => {
                names.insert(v.to_string());
                if wildcard {
                    names.insert(format!("*.{v}"));
                }
                true
            }
            IndicatorType::Ipv4 => v
                .parse()
                .map(|a| addresses.insert(ip4_trigger(a, 32)))
                .is_ok(),
            IndicatorType::Ipv6 => v
                .parse()
                .map(|a| addresses.insert(ip6_trigger(a, 128)))
                .is_ok(),
            IndicatorType::Cidr => cidr_trigger(v).map(|t| addresses.insert(t)).is_some(),
            IndicatorType::Domain => false,
            other => {
                *skipped.entry(other.as_str()).or_insert(0) += 1;
                continue;
            }
        };
        if !added {
            *skipped.entry(UNREPRESENTABLE).or_insert(0) += 1;
        }
    }
    let rules = names.len() + addresses.len();
    let mut text = format!(
        "; DNS Response Policy Zone written by intelmesh: {rules} rules, each answering NXDOMAIN\n\
         $ORIGIN {zone}\n\
         $TTL 300\n\
         @ IN SOA localhost. hostmaster.localhost. {serial} 3600 600 604800 300\n\
         @ IN NS localhost.\n"
    );
    for name in names.iter().chain(&addresses) {
        text.push_str(name);
        text.push_str(" CNAME .\n");
    }
    Zone {
        text,
        rules,
        skipped,
    }
}

/// `PREFIX.d.c.b.a.rpz-ip`.
fn ip4_trigger(a: Ipv4Addr, prefix: u8) -> String {
    let [a, b, c, d] = a.octets();
    format!("{prefix}.{d}.{c}.{b}.{a}.rpz-ip")
}

/// `PREFIX.` then the 16-bit words lowest first in hex, the longest run of two or more zero
/// words (the first of equal ones, where RFC 5952 writes `::`) as `zz`, then `.rpz-ip`.
fn ip6_trigger(a: Ipv6Addr, prefix: u8) -> String {
    let words = a.segments();
    let (mut best, mut run) = ((0, 0), (0, 0));
    for (i, w) in words.iter().enumerate() {
        if *w == 0 {
            run = if run.1 == 0 {
                (i, 1)
            } else {
                (run.0, run.1 + 1)
            };
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run = (0, 0);
        }
    }
    let zeros = if best.1 >= 2 {
        best.0..best.0 + best.1
    } else {
        0..0
    };
    let mut parts = vec![prefix.to_string()];
    for i in (0..words.len()).rev() {
        if zeros.contains(&i) {
            if i == zeros.end - 1 {
                parts.push("zz".to_string());
            }
        } else {
            parts.push(format!("{:x}", words[i]));
        }
    }
    parts.push("rpz-ip".to_string());
    parts.join(".")
}

/// The trigger of a canonical `ADDRESS/PREFIX`; `None` for a /0 (it would match every
/// address) or a value that is no block.
fn cidr_trigger(v: &str) -> Option<String> {
    let (address, prefix) = v.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    if prefix == 0 {
        return None;
    }
    if let Ok(a) = address.parse::<Ipv4Addr>() {
        return (prefix <= 32).then(|| ip4_trigger(a, prefix));
    }
    let a = address.parse::<Ipv6Addr>().ok()?;
    // A block of IPv4-mapped addresses is an IPv4 block: resolvers keep IPv4 rules in that
    // range, and say so in IPv4 form.
    if let (Some(v4), true) = (a.to_ipv4_mapped(), prefix >= 96) {
        return (prefix > 96).then(|| ip4_trigger(v4, prefix - 96));
    }
    (prefix <= 128).then(|| ip6_trigger(a, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use intelmesh_core::indicator::normalize;

    fn v(ty: IndicatorType, s: &str) -> Indicator {
        normalize(ty, s).unwrap()
    }

    #[test]
    fn addresses_become_reversed_rpz_ip_triggers() {
        let a: Ipv4Addr = "198.51.100.7".parse().unwrap();
        assert_eq!(ip4_trigger(a, 32), "32.7.100.51.198.rpz-ip");
        let six = |s: &str| ip6_trigger(s.parse().unwrap(), 128);
        assert_eq!(six("2001:db8::1"), "128.1.zz.db8.2001.rpz-ip");
        // The longest zero run is compressed, the first of equal ones, never a single word.
        assert_eq!(six("2001:db8:0:0:1::1"), "128.1.0.0.1.zz.db8.2001.rpz-ip");
        assert_eq!(six("2001:0:0:1:0:0:0:1"), "128.1.zz.1.0.0.2001.rpz-ip");
        assert_eq!(six("2001:0:0:1:2:0:0:3"), "128.3.0.0.2.1.zz.2001.rpz-ip");
        assert_eq!(
            six("2001:db8:1:2:3:4:0:5"),
            "128.5.0.4.3.2.1.db8.2001.rpz-ip"
        );
        assert_eq!(six("::"), "128.zz.rpz-ip");
        // Mapped blocks are IPv4 blocks, in IPv4 form.
        assert_eq!(
            cidr_trigger("::ffff:198.51.100.0/120").as_deref(),
            Some("24.0.100.51.198.rpz-ip")
        );
        assert_eq!(cidr_trigger("::ffff:0.0.0.0/96"), None);
        assert_eq!(six("::1"), "128.1.zz.rpz-ip");
        assert_eq!(
            cidr_trigger("203.0.113.0/24").unwrap(),
            "24.0.113.0.203.rpz-ip"
        );
        assert_eq!(
            cidr_trigger("2001:db8::/32").unwrap(),
            "32.zz.db8.2001.rpz-ip"
        );
        assert_eq!(cidr_trigger("0.0.0.0/0"), None);
    }

    #[test]
    fn a_zone_has_its_soa_and_ns_then_sorted_rules() {
        use IndicatorType as T;
        let values = [
            v(T::Domain, "evil.example"),
            v(T::Ipv4, "198.51.100.7"),
            v(T::Url, "http://bad.example/drop"),
            v(T::Url, "http://evil.example/x"),
            v(T::Cidr, "203.0.113.0/24"),
            v(T::Ipv6, "2001:db8::1"),
            v(T::Sha256, &"a".repeat(64)),
            v(T::Email, "x@evil.example"),
        ];
        let zone = rpz_zone(DEFAULT_ZONE, 1_700_000_000, &values);
        let lines: Vec<&str> = zone.text.lines().collect();
        assert!(lines[0].starts_with(';'));
        assert_eq!(
            lines[1..5],
            [
                "$ORIGIN rpz.intelmesh.",
                "$TTL 300",
                "@ IN SOA localhost. hostmaster.localhost. 1700000000 3600 600 604800 300",
                "@ IN NS localhost.",
            ]
        );
        assert_eq!(
            lines[5..],
            [
                "*.evil.example CNAME .",
                "bad.example CNAME .",
                "evil.example CNAME .",
                "128.1.zz.db8.2001.rpz-ip CNAME .",
                "24.0.113.0.203.rpz-ip CNAME .",
                "32.7.100.51.198.rpz-ip CNAME .",
            ]
        );
        assert_eq!(zone.rules, 6);
        assert_eq!(
            zone.skipped.into_iter().collect::<Vec<_>>(),
            [("email", 1), ("sha256", 1)]
        );
    }

    #[test]
    fn zone_names_are_checked_and_made_absolute() {
        assert_eq!(parse_zone_name("RPZ.Example").unwrap(), "rpz.example.");
        assert_eq!(parse_zone_name("rpz.example.").unwrap(), "rpz.example.");
        assert!(parse_zone_name("bad zone").is_err());
        assert!(parse_zone_name("a..b").is_err());
        assert!(parse_zone_name("").is_err());
    }

    #[test]
    fn a_name_too_long_for_the_zone_is_left_out_and_counted() {
        let label = "a".repeat(60);
        let long = format!("{label}.{label}.{label}.{label}.example");
        let values = [v(IndicatorType::Domain, &long)];
        let zone = rpz_zone(DEFAULT_ZONE, 1, &values);
        assert_eq!(zone.rules, 0);
        assert_eq!(zone.skipped.get(UNREPRESENTABLE), Some(&1));
    }
}
