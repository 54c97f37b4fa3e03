//! Keeping the exact bytes of every line the edit did not touch.
//!
//! `toml_edit` keeps comments and formatting, with one gap: table headers share the keys of
//! their parent tables, so a header spelled unusually (`[ plugins . "x" . runtimes . runc ]`)
//! comes back re-spelled in places when the document is written out again, even lines the
//! edit never touched. So the edit renders the document twice, before and after the change,
//! and this module carries the change over to the original text: lines the change kept are
//! taken from the original, byte for byte; only the lines the change added or replaced come
//! from the rendering. The edit itself stays structural, this only decides which bytes of
//! each kept line to write.

use similar::{Algorithm, DiffTag, capture_diff_slices};

/// Applies the change `rendered_before` → `rendered_after` to `original`, where
/// `rendered_before` is `original` parsed and written out unchanged. Returns `None` when
/// the two do not line up line for line (then the caller uses `rendered_after` as is).
pub fn carry_over(original: &str, rendered_before: &str, rendered_after: &str) -> Option<String> {
    if original == rendered_before {
        return Some(rendered_after.to_owned());
    }
    let original_lines: Vec<&str> = original.split_inclusive('\n').collect();
    let before_lines: Vec<&str> = rendered_before.split_inclusive('\n').collect();
    if original_lines.len() != before_lines.len() {
        return None;
    }
    let after_lines: Vec<&str> = rendered_after.split_inclusive('\n').collect();
    let mut out = String::with_capacity(original.len() + rendered_after.len() / 4);
    for op in capture_diff_slices(Algorithm::Myers, &before_lines, &after_lines) {
        let (tag, old, new) = op.as_tag_tuple();
        match tag {
            DiffTag::Equal => {
                for (original_line, rendered_line) in
                    original_lines[old.clone()].iter().zip(&before_lines[old])
                {
                    out.push_str(original_line);
                    // A last line without its newline gets the one the rendering has,
                    // since lines may now follow it.
                    if !original_line.ends_with('\n') && rendered_line.ends_with('\n') {
                        out.push('\n');
                    }
                }
            }
            DiffTag::Delete => {}
            DiffTag::Insert | DiffTag::Replace => {
                after_lines[new].iter().for_each(|l| out.push_str(l))
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_rendering_is_a_pass_through() {
        assert_eq!(
            carry_over("a\nb\n", "a\nb\n", "a\nx\nb\n").unwrap(),
            "a\nx\nb\n"
        );
    }

    #[test]
    fn kept_lines_come_from_the_original() {
        let original = "[ a . b ]\nk = 1\n";
        let before = "[ a.b ]\nk = 1\n";
        let after = "[ a.b ]\nk = 1\n\n[a.c]\nv = 2\n";
        assert_eq!(
            carry_over(original, before, after).unwrap(),
            "[ a . b ]\nk = 1\n\n[a.c]\nv = 2\n"
        );
    }

    #[test]
    fn removed_lines_go_whatever_their_spelling() {
        let original = "[ a . b ]\nk = 1\n[x]\n";
        let before = "[ a.b ]\nk = 1\n[x]\n";
        let after = "[x]\n";
        assert_eq!(carry_over(original, before, after).unwrap(), "[x]\n");
    }

    #[test]
    fn a_missing_final_newline_is_added_when_lines_follow() {
        assert_eq!(
            carry_over("a = 1 ", "a = 1\n", "a = 1\n\n[t]\n").unwrap(),
            "a = 1 \n\n[t]\n"
        );
    }

    #[test]
    fn misaligned_renderings_are_refused() {
        assert_eq!(carry_over("a\nb\n", "a b\n", "a b\nc\n"), None);
    }
}
