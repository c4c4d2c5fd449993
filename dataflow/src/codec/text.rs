//! Text helpers every part of the codec shares: values quoted into error reasons, bounded so that
//! a hostile payload cannot blow up a dead letter's `error` field. A leaf of the codec.

use std::fmt;

/// Writes `text` Debug-quoted, cut to at most `max_chars` characters (with `…`).
pub(crate) fn fmt_bounded(text: &str, max_chars: usize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => write!(f, "{:?}…", text.get(..cut).unwrap_or_default()),
        None => write!(f, "{text:?}"),
    }
}

/// `text` Debug-quoted and bounded as by [`fmt_bounded`], as an owned string.
pub(crate) fn bounded(text: &str, max_chars: usize) -> String {
    struct Bounded<'a>(&'a str, usize);
    impl fmt::Display for Bounded<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt_bounded(self.0, self.1, f)
        }
    }
    Bounded(text, max_chars).to_string()
}
