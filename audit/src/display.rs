//! Showing text that came from a pod (container ids, pod names, images, paths, reasons,
//! rule names) on a terminal without letting it drive the terminal.
//!
//! A record's fields are written by pod authors. Shown raw, an escape sequence in a pod
//! name could retitle the window, hide lines or fake output, and a bidi override could make
//! `evil` read as `live`. [`escape_for_terminal`] makes every such character visible as an
//! escape and leaves ordinary text, ordinary Unicode included, as it is.
//!
//! Escaped: C0 controls (U+0000-U+001F), DEL (U+007F), C1 controls (U+0080-U+009F), the
//! bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) and the line and
//! paragraph separators (U+2028, U+2029). Backslashes are left alone, so `\x1b` in the
//! output may also be those four characters in the record; `--output json` is the exact
//! form.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal raw.
pub fn is_unsafe_for_terminal(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// `s` with every character [`is_unsafe_for_terminal`] replaced by a visible escape:
/// `\n`, `\r`, `\t`, `\x1b` (other C0 and DEL), `\u{9b}` (C1), `\u{202e}` (bidi and
/// separators). Borrows when there is nothing to escape.
pub fn escape_for_terminal(s: &str) -> Cow<'_, str> {
    let Some(first) = s.find(is_unsafe_for_terminal) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 8);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0}'..='\u{1f}' | '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_unsafe_for_terminal(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A JSON text (as `serde_json` writes it, or a record line as read from the log) made safe
/// for a terminal without changing what it means: every character
/// [`is_unsafe_for_terminal`] becomes a JSON `\uXXXX` escape, except JSON's own whitespace
/// between tokens: newlines stay, tabs and carriage returns become spaces.
///
/// `serde_json` already escapes C0 controls, but writes DEL, C1 controls and bidi controls
/// raw. In valid JSON a raw tab, CR or LF can only stand between tokens (inside a string
/// they must be escaped), and every other such character only inside a string, where
/// `\uXXXX` is the same character to any JSON parser: the parsed value is unchanged.
pub fn escape_json_for_terminal(json: &str) -> Cow<'_, str> {
    let unsafe_here = |c: char| c != '\n' && is_unsafe_for_terminal(c);
    let Some(first) = json.find(unsafe_here) else {
        return Cow::Borrowed(json);
    };
    let mut out = String::with_capacity(json.len() + 8);
    out.push_str(&json[..first]);
    for c in json[first..].chars() {
        match c {
            '\t' | '\r' => out.push(' '),
            // All of them are in the Basic Multilingual Plane: one \u escape each.
            c if unsafe_here(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in [
            "",
            "payments/api-1",
            "registry.example/api:1",
            "ünïcode, 日本語, emoji 🦀, math ∀x",
            "back\\slash",
        ] {
            assert!(matches!(escape_for_terminal(s), Cow::Borrowed(b) if b == s));
            assert!(matches!(escape_json_for_terminal(s), Cow::Borrowed(b) if b == s));
        }
    }

    #[test]
    fn controls_and_bidi_are_escaped() {
        let cases = [
            ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
            ("a\nb\rc\td", "a\\nb\\rc\\td"),
            ("nul\0", "nul\\x00"),
            ("del\x7f", "del\\x7f"),
            ("csi\u{9b}31m", "csi\\u{9b}31m"),
            ("c1 first\u{80}", "c1 first\\u{80}"),
            ("\u{202e}evil", "\\u{202e}evil"),
            (
                "\u{202a}\u{202b}\u{202c}\u{202d}",
                "\\u{202a}\\u{202b}\\u{202c}\\u{202d}",
            ),
            (
                "\u{2066}\u{2067}\u{2068}\u{2069}",
                "\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
            ),
            ("\u{200e}\u{200f}\u{61c}", "\\u{200e}\\u{200f}\\u{61c}"),
            ("line\u{2028}para\u{2029}", "line\\u{2028}para\\u{2029}"),
            ("ü\x1bü", "ü\\x1bü"),
        ];
        for (raw, want) in cases {
            let got = escape_for_terminal(raw);
            assert_eq!(got, want, "{raw:?}");
            assert!(!got.chars().any(is_unsafe_for_terminal), "{got:?}");
        }
        // Neighbours of the escaped ranges stay.
        for c in [
            ' ', '~', '\u{a0}', 'é', '\u{2027}', '\u{2030}', '\u{2065}', '\u{206a}',
        ] {
            assert!(!is_unsafe_for_terminal(c), "{c:?}");
        }
    }

    #[test]
    fn json_keeps_its_meaning() {
        let value = serde_json::json!({
            "pod_name": "\u{202e}evil\u{7f}\u{9b}31m\x1b[0m",
            "reason": "plain ü",
        });
        let text = serde_json::to_string(&value).unwrap();
        // serde_json escapes C0 but not DEL, C1 or bidi controls.
        assert!(text.contains('\u{202e}') && text.contains('\u{9b}'));
        let safe = escape_json_for_terminal(&text);
        assert!(!safe.chars().any(is_unsafe_for_terminal), "{safe}");
        assert!(safe.contains("\\u202e") && safe.contains("\\u007f") && safe.contains("\\u009b"));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);

        // Pretty output keeps its lines; whitespace between tokens stays whitespace.
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let safe = escape_json_for_terminal(&pretty);
        assert_eq!(safe.lines().count(), pretty.lines().count());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&safe).unwrap(),
            value
        );
        let raw = "{\"a\":\t\"x\u{202e}\",\r\"b\":1}";
        let safe = escape_json_for_terminal(raw);
        assert_eq!(safe, "{\"a\": \"x\\u202e\", \"b\":1}");
        assert!(!safe.chars().any(is_unsafe_for_terminal));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&safe).unwrap(),
            serde_json::from_str::<serde_json::Value>(raw).unwrap()
        );
    }
}
