//! Refanging: undoing the edits reports make so that indicators are not clickable.
//!
//! Three passes, each chosen so that the result is a fixed point (refanging twice changes
//! nothing) and a clean value passes through untouched:
//! 1. bracketed separators (`[.]`, `(dot)`, `[:]`, `[://]`, `[at]`, `[/]`, …) are replaced;
//! 2. a half-defanged dot (`cmctt.]com`) loses its stray bracket;
//! 3. a defanged scheme (`hxxp`, `hxxps`, `htxxp`, `fxp`, any case) is fixed, but only at the
//!    start of the value and only when `://` follows: real host names such as
//!    `hxxp.ddspadus.com` or `msservices.hxxps443.org` contain these words.

use std::borrow::Cow;

/// Bracketed forms and what they stand for. Letters match case-insensitively.
const BRACKETED: &[(&str, &str)] = &[
    ("[.]", "."),
    ("(.)", "."),
    ("{.}", "."),
    ("[dot]", "."),
    ("(dot)", "."),
    ("{dot}", "."),
    // As a slip for `[.]` (seen in vendor lists): a bracketed comma is in no real value.
    ("[,]", "."),
    ("[:]", ":"),
    ("(:)", ":"),
    ("[://]", "://"),
    ("(://)", "://"),
    ("[@]", "@"),
    ("(@)", "@"),
    ("{@}", "@"),
    ("[at]", "@"),
    ("(at)", "@"),
    ("{at}", "@"),
    ("[/]", "/"),
];

/// Defanged schemes and their real names.
const SCHEMES: &[(&str, &str)] = &[
    ("hxxp", "http"),
    ("hxxps", "https"),
    ("htxxp", "http"),
    ("htxxps", "https"),
    ("hxtp", "http"),
    ("hxtps", "https"),
    ("fxp", "ftp"),
    ("fxps", "ftps"),
];

/// Undoes defanging; see the module documentation for what is and is not touched.
///
/// Borrows when there is nothing to do, which is the common case.
pub fn refang(raw: &str) -> Cow<'_, str> {
    let has_brackets = has_bracket(raw.as_bytes());
    if !has_brackets && defanged_scheme(raw).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = if has_brackets {
        undo_half_defang(&undo_brackets(raw))
    } else {
        raw.to_owned()
    };
    if let Some((len, scheme)) = defanged_scheme(&out) {
        out.replace_range(..len, scheme);
    }
    if out == raw {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(out)
    }
}

/// Replaces bracketed forms, innermost first.
///
/// Every closing bracket is checked against the output written so far, so a form that only
/// appears once an inner one is replaced (`[[.]]`) is replaced too, and the result holds no
/// bracketed form at all: that is what makes a second pass a no-op.
fn undo_brackets(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        out.push(c);
        if !matches!(c, ']' | ')' | '}') {
            continue;
        }
        let tail = out.as_bytes();
        let found = BRACKETED.iter().find(|(form, _)| {
            tail.len() >= form.len()
                && tail[tail.len() - form.len()..].eq_ignore_ascii_case(form.as_bytes())
        });
        if let Some((form, plain)) = found {
            // The matched bytes are ASCII, so the cut falls on a character boundary.
            out.truncate(out.len() - form.len());
            out.push_str(plain);
        }
    }
    out
}

/// Drops the bracket of `x.]y` when letters or digits surround it.
///
/// Requiring a letter or digit on both sides keeps IPv6 literals (`[::1]`) and bracketed
/// text alone. The mirror image, `x[.y`, is left as it is: it also reads `NvSmartMax[.dll]`,
/// bracketed prose rather than a defanged dot. Removing the bracket cannot create a new match,
/// so one pass is enough.
fn undo_half_defang(s: &str) -> String {
    let bytes = s.as_bytes();
    let word = |i: Option<usize>| {
        i.and_then(|i| bytes.get(i))
            .is_some_and(u8::is_ascii_alphanumeric)
    };
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        let stray = c == ']'
            && i > 0
            && bytes[i - 1] == b'.'
            && word(i.checked_sub(2))
            && word(Some(i + 1));
        if !stray {
            out.push(c);
        }
    }
    out
}

/// Whether `bytes` holds an opening bracket or a closing square one, which every bracketed
/// form and half-defanged dot has. Read to the end rather than stopping at the first: most
/// values hold none, and without the early exit the compiler compares many bytes at once
/// (the byte-at-a-time scan was 1.7% of a bulk lookup's CPU).
fn has_bracket(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |found, &b| {
        found | matches!(b, b'[' | b']' | b'(' | b'{')
    })
}

/// The length of the longest defanged scheme name in [`SCHEMES`].
const LONGEST_SCHEME: usize = longest_name(SCHEMES);

const fn longest_name(schemes: &[(&str, &str)]) -> usize {
    let (mut i, mut longest) = (0, 0);
    while i < schemes.len() {
        if schemes[i].0.len() > longest {
            longest = schemes[i].0.len();
        }
        i += 1;
    }
    longest
}

/// The byte length of a defanged scheme at the start of `s` and its real name, when `://`
/// follows it.
fn defanged_scheme(s: &str) -> Option<(usize, &'static str)> {
    // A colon further in leaves a head longer than any defanged name: only the first bytes
    // are searched, not the whole of a value with no colon (a domain, an address, a hash).
    let colon = s.bytes().take(LONGEST_SCHEME + 1).position(|b| b == b':')?;
    let (head, rest) = (&s[..colon], &s[colon + 1..]);
    if !rest.starts_with("//") {
        return None;
    }
    SCHEMES
        .iter()
        .find(|(defanged, _)| head.eq_ignore_ascii_case(defanged))
        .map(|(_, real)| (head.len(), *real))
}
