//! Text from outside cut to a bound before it is kept or shown: tags, descriptions, status
//! messages, examples in a summary.

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

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn a_text_is_cut_at_a_character_boundary_and_marked() {
        assert_eq!(clip("short".into(), 5), "short");
        assert_eq!(clip("abcdef".into(), 3), "abc…");
        // "é" is two bytes: a cut inside it moves back before it.
        assert_eq!(clip("aé".into(), 2), "a…");
        assert_eq!(clip("é".into(), 0), "…");
    }
}
