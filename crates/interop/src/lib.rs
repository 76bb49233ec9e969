//! intelmesh's interop with STIX 2.x, MISP, CSV and plain lists (import, and export to STIX
//! bundles and MISP feeds) and the TAXII 2.1 protocol rules: data in, data out, no I/O.
//!
//! Everything here maps between JSON values or pattern text and the core's canonical
//! [`Indicator`](intelmesh_core::Indicator) and [`Tlp`](intelmesh_core::Tlp), or read text
//! lists and CSV rows into indicators; reading files,
//! serving TAXII and signing entries are the caller's. Nothing is dropped silently: each
//! STIX object and MISP attribute gives an outcome, imported or refused with its reason, and
//! every list line an indicator or its reason.

mod csv_list;
pub mod json_budget;
pub mod lists;
pub mod marking;
pub mod misp;
pub mod misp_export;
pub mod misp_feed;
pub mod pattern;
pub mod stix;
pub mod stix_export;
pub mod taxii;
pub mod text;
pub mod time;
pub mod warninglist;

pub use marking::{marking_id_of, Markings};
pub use misp::{
    import_misp, import_misp_str, import_misp_within, MispBudget, MispEvent, MispIndicator,
    MispOptions,
};
pub use misp_export::{misp_feed, MispFeed};
pub use misp_feed::{read_feed_manifest, ManifestEntry, ManifestError};
pub use pattern::{parse_pattern, pattern_of, PatternError};
pub use stix::{
    import_object, import_stix, import_stix_str, stix_objects, ImportOptions, StixImport,
    StixIndicator,
};
pub use stix_export::{
    bundle, identity_object, indicator_object, sighting_object, ExportIndicator, ExportSighting,
};
pub use time::{
    format_timestamp, format_timestamp_micros, parse_timestamp, parse_timestamp_micros,
    TimestampError,
};
pub use warninglist::{parse_warninglist, Warninglist, Warninglists};
