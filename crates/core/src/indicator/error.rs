//! The reasons a raw value has no canonical form.

use thiserror::Error;

/// Why a raw value could not be normalized.
///
/// Each variant names one defect and carries the offending value or part, so an importer can
/// show it to a person; [`NormalizeError::kind`] gives a stable code for per-reason counts.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum NormalizeError {
    #[error("empty value")]
    Empty,
    #[error("value is {len} bytes, over the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("{value:?} is not a dotted-quad IPv4 address")]
    InvalidIpv4 { value: String },
    #[error("{value:?} is not an IPv6 address")]
    InvalidIpv6 { value: String },
    #[error("{value:?} has no /prefix, so it is an address, not a CIDR block")]
    MissingPrefix { value: String },
    #[error("{value:?} is not a CIDR block: {reason}")]
    InvalidCidr { value: String, reason: &'static str },
    #[error("prefix /{prefix} is longer than the address (/{max})")]
    PrefixTooLong { prefix: u32, max: u8 },
    #[error("{value:?} has a scheme: it is a URL, not a host")]
    HasScheme { value: String },
    #[error("{value:?} has a path, query or fragment: it is a URL, not a host")]
    HasPath { value: String },
    #[error("{value:?} has a port: a host value takes none")]
    HasPort { value: String },
    #[error("{value:?} has a /prefix: it is a CIDR block, not an address")]
    HasPrefix { value: String },
    #[error("{value:?} contains {ch:?}, which a host name may not")]
    InvalidDomainChar { value: String, ch: char },
    #[error("{value:?} has an empty label")]
    EmptyLabel { value: String },
    #[error("label {label:?} starts or ends with a hyphen")]
    HyphenAtLabelEdge { label: String },
    #[error("label {label:?} is {len} characters, over the 63 a DNS label allows")]
    LabelTooLong { label: String, len: usize },
    #[error("domain is {len} characters, over the 253 a DNS name allows")]
    DomainTooLong { len: usize },
    #[error("{value:?} is a single label; a domain needs at least two")]
    SingleLabel { value: String },
    #[error("top-level label {tld:?} is neither letters nor an xn-- label")]
    InvalidTld { tld: String },
    #[error("{value:?} is not a valid internationalized domain name")]
    InvalidIdn { value: String },
    #[error("{value:?} is not a URL: {reason}")]
    InvalidUrl { value: String, reason: String },
    #[error("URL scheme {scheme:?} is not supported")]
    UnsupportedScheme { scheme: String },
    #[error("URL {value:?} has no host")]
    MissingHost { value: String },
    #[error("{value:?} is not an email address: {reason}")]
    InvalidEmail { value: String, reason: &'static str },
    #[error("{value:?} is not hexadecimal")]
    NotHex { value: String },
    #[error("hash has {got} hex digits, {expected} expected")]
    BadHashLength { expected: usize, got: usize },
    #[error("unknown indicator type {name:?}")]
    UnknownType { name: String },
    #[error("{value:?} does not look like any indicator type")]
    Unrecognized { value: String },
}

impl NormalizeError {
    /// A short code that never changes for a variant, for counting rejections by reason.
    pub fn kind(&self) -> &'static str {
        match self {
            NormalizeError::Empty => "empty",
            NormalizeError::TooLong { .. } => "too_long",
            NormalizeError::InvalidIpv4 { .. } => "invalid_ipv4",
            NormalizeError::InvalidIpv6 { .. } => "invalid_ipv6",
            NormalizeError::MissingPrefix { .. } => "missing_prefix",
            NormalizeError::InvalidCidr { .. } => "invalid_cidr",
            NormalizeError::PrefixTooLong { .. } => "prefix_too_long",
            NormalizeError::HasScheme { .. } => "has_scheme",
            NormalizeError::HasPath { .. } => "has_path",
            NormalizeError::HasPort { .. } => "has_port",
            NormalizeError::HasPrefix { .. } => "has_prefix",
            NormalizeError::InvalidDomainChar { .. } => "domain_bad_char",
            NormalizeError::EmptyLabel { .. } => "empty_label",
            NormalizeError::HyphenAtLabelEdge { .. } => "label_hyphen_edge",
            NormalizeError::LabelTooLong { .. } => "label_too_long",
            NormalizeError::DomainTooLong { .. } => "domain_too_long",
            NormalizeError::SingleLabel { .. } => "single_label",
            NormalizeError::InvalidTld { .. } => "invalid_tld",
            NormalizeError::InvalidIdn { .. } => "invalid_idn",
            NormalizeError::InvalidUrl { .. } => "invalid_url",
            NormalizeError::UnsupportedScheme { .. } => "unsupported_scheme",
            NormalizeError::MissingHost { .. } => "missing_host",
            NormalizeError::InvalidEmail { .. } => "invalid_email",
            NormalizeError::NotHex { .. } => "not_hex",
            NormalizeError::BadHashLength { .. } => "bad_hash_length",
            NormalizeError::UnknownType { .. } => "unknown_type",
            NormalizeError::Unrecognized { .. } => "unrecognized",
        }
    }
}
