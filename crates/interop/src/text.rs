//! Text from outside cut to a bound before it is kept or shown, and made safe to print on a
//! terminal: tags, descriptions, status messages, examples in a summary.

use std::borrow::Cow;

/// `text` cut to at most `max` bytes at a character boundary, followed by `…` where cut (so a
/// cut text is up to three bytes longer than `max`).
pub fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// [`clip`] such that the text, its `…` included, is at most `max` bytes: for bounds a kept
/// text must never pass (a tag an entry may carry, a status detail).
pub fn clip_within(text: String, max: usize) -> String {
    clip(text, max.saturating_sub('…'.len_utf8()))
}

/// `text` with every character a terminal would act on written as an escape (`\n`,
/// `\u{1b}`): control characters (an escape sequence can rewrite earlier lines, set the
/// clipboard, or fake a summary line; a newline fakes a line) and the bidirectional
/// overrides that show text in another order than it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    let acts =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(acts) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if acts(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::{clip, clip_within, printable, Cow};

    #[test]
    fn what_a_terminal_acts_on_is_escaped() {
        assert_eq!(printable("evil.example ü"), "evil.example ü");
        assert_eq!(
            printable("id\u{1b}]52;c;eA==\u{7}\u{1b}[1A"),
            "id\\u{1b}]52;c;eA==\\u{7}\\u{1b}[1A"
        );
        assert_eq!(printable("a\nimported 0"), "a\\nimported 0");
        assert_eq!(printable("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(printable("abc\u{202e}fdp.exe"), "abc\\u{202e}fdp.exe");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_text_is_cut_at_a_character_boundary_and_marked() {
        assert_eq!(clip("short".into(), 5), "short");
        assert_eq!(clip("abcdef".into(), 3), "abc…");
        // "é" is two bytes: a cut inside it moves back before it.
        assert_eq!(clip("aé".into(), 2), "a…");
        assert_eq!(clip("é".into(), 0), "…");
        assert_eq!(clip_within("abcdefgh".into(), 6), "abc…");
        assert_eq!(clip_within("abcdefgh".into(), 6).len(), 6);
    }
}
