//! The corpus warninglists parsed and matched.

mod common;

use intelmesh_core::indicator::normalize;
use intelmesh_core::IndicatorType;
use intelmesh_interop::{parse_warninglist, Warninglists};

#[test]
fn corpus_warninglists_match_what_they_list() {
    let Some(dir) = common::folder("corpus/warninglists") else {
        return;
    };
    let mut lists = Warninglists::new();
    let mut entries = 0;
    for path in common::json_files(&dir) {
        let name = common::name(&path);
        let list = match parse_warninglist(&common::read(&path)) {
            Ok(list) => list,
            Err(e) => panic!("{name}: {e}"),
        };
        let report = lists.add(&list);
        eprintln!(
            "{name}: {:?} {:?}, {} entries used, unusable {:?}",
            list.name, list.kind, report.used, report.unusable
        );
        assert!(report.unusable.is_empty(), "{name}");
        entries += report.used;
    }
    eprintln!("{} lists, {entries} entries", lists.len());
    use IndicatorType as T;
    let cases: [(T, &str, &[&str]); 10] = [
        (T::Ipv4, "10.1.2.3", &["List of RFC 1918 CIDR blocks"]),
        (T::Ipv4, "192.168.200.1", &["List of RFC 1918 CIDR blocks"]),
        (
            T::Ipv4,
            "104.16.0.1",
            &["List of known Cloudflare IP ranges"],
        ),
        (T::Ipv6, "fe80::1", &["List of IPv6 link local blocks"]),
        (
            T::Ipv6,
            "2001:148f:fffe::1",
            &["List of known IPv6 public DNS resolvers"],
        ),
        (
            T::Md5,
            "D41D8CD98F00B204E9800998ECF8427E",
            &["List of known hashes for empty files"],
        ),
        (
            T::Domain,
            "example.com",
            &["List of RFC 6761 Special-Use Domain Names"],
        ),
        // Not in these six lists: the corpus has no Google list, so these match nothing.
        (T::Ipv4, "8.8.8.8", &[]),
        (T::Domain, "google.com", &[]),
        // The ssdeep "3::" in the empty-hash list applies to hashes, not to IPv6.
        (T::Ipv6, "3::", &[]),
    ];
    for (ty, value, want) in cases {
        let indicator = match normalize(ty, value) {
            Ok(i) => i,
            Err(e) => panic!("{value}: {e}"),
        };
        assert_eq!(lists.matches(&indicator), want.to_vec(), "{value}");
    }
}
