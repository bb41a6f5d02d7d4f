//! JSON text in and out, with the semantics of Python's `json` module.
//!
//! Reading follows `json.loads`: integers stay integers of any size, numbers
//! with a fraction or exponent become floats, duplicate keys keep the last
//! value. A request refuses three things Python accepts, because Kernite
//! either crashes on them or they are not JSON: lone surrogate escapes, the
//! literals `NaN`/`Infinity`, and numbers that overflow to infinity (`1e400`).
//! An OpenAPI document read by the authoring tools ([`Dialect::Python`]) may
//! hold all three, as Kernite reads them. Nesting is
//! bounded so that no input can exhaust the stack.
//!
//! Writing follows `json.dumps(..., ensure_ascii=False)` in the three layouts
//! Kernite uses: canonical (sorted keys, `(",", ":")`), which is hashed, the
//! response layout of `kernite serve` (insertion order, `(", ", ": ")`), and
//! its command line's files (sorted keys, `indent=2`).

mod read;
mod write;

pub use read::{Dialect, JsonError, MAX_DEPTH, MAX_DOCUMENT_DEPTH, lone_surrogate, parse, parse_as, surrogate_of};
pub use write::{
    Layout, SortedEntries, sorted_entries, to_indented_string, to_string, write_object, write_optional_string,
    write_sorted_strings, write_string, write_value,
};

/// Where the first byte is that a JSON string cannot hold as it is: `"`,
/// `\` or a control character. Both the parser and the writer scan every
/// string for these, so this looks at eight bytes at a time: a byte below
/// 0x20, or equal to one of the two, sets its high bit in `found`. A borrow
/// can also flag bytes after a true match, never before it, so the lowest
/// flagged byte is the answer. UTF-8 bytes above 0x7F are never flagged.
fn first_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x;
    let mut chunks = bytes.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
        let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
        let found = (control | quote | backslash) & HIGH_BITS;
        if found != 0 {
            return Some(i * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    let tail = chunks.remainder();
    let offset = bytes.len() - tail.len();
    tail.iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\').map(|p| offset + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_at_a_time_scan_finds_what_a_byte_scan_finds() {
        let naive = |bytes: &[u8]| bytes.iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\');
        // Every special byte at every position of strings up to 40 bytes,
        // among ordinary ASCII, 0x20, 0x7f and UTF-8 continuation bytes.
        let fillers: [&[u8]; 5] = [
            b"abcdefgh",
            b"        ",
            "é€é€".as_bytes(),
            b"\x7f!#[]~{}",
            &[0x80, 0x9f, 0xa0, 0xff, 0x20, 0x21, 0x5b, 0x5d],
        ];
        for filler in fillers {
            for len in 0..40 {
                let base: Vec<u8> = filler.iter().copied().cycle().take(len).collect();
                assert_eq!(first_special(&base), naive(&base));
                for at in 0..len {
                    for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                        let mut bytes = base.clone();
                        bytes[at] = special;
                        assert_eq!(first_special(&bytes), naive(&bytes), "{bytes:?}");
                        // A second special byte later changes nothing.
                        if at + 3 < len {
                            bytes[at + 3] = b'"';
                            assert_eq!(first_special(&bytes), Some(at));
                        }
                    }
                }
            }
        }
    }

    fn canonical(text: &str) -> String {
        to_string(&parse(text).unwrap(), Layout::Canonical)
    }

    #[test]
    fn numbers_keep_python_types_and_formatting() {
        assert_eq!(
            canonical("[100, 100.0, 1E2, 1e16, 1e-5, -0, -0.0, 0.0001]"),
            "[100,100.0,100.0,1e+16,1e-05,0,-0.0,0.0001]"
        );
        assert_eq!(canonical("1180591620717411303424"), "1180591620717411303424");
        assert_eq!(canonical("-9223372036854775809"), "-9223372036854775809");
    }

    #[test]
    fn keys_sort_by_code_point_and_duplicates_keep_the_last_value() {
        assert_eq!(canonical(r#"{"b":1,"a":2,"é":3,"Z":4,"a":5}"#), r#"{"Z":4,"a":5,"b":1,"é":3}"#);
        let value = parse(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        assert_eq!(to_string(&value, Layout::Response), r#"{"b": 3, "a": 2}"#);
    }

    #[test]
    fn strings_escape_like_python_with_ensure_ascii_false() {
        assert_eq!(
            canonical(r#""a\"\\\/\b\f\n\r\t\u0001\u007f\u2028é😀""#),
            "\"a\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\u{7f}\u{2028}é😀\""
        );
        assert_eq!(canonical(r#""\ud83d\ude00""#), "\"😀\"");
    }

    #[test]
    fn refuses_what_kernite_cannot_answer() {
        for bad in [
            "NaN",
            "-Infinity",
            "[Infinity]",
            "1e400",
            r#""\ud800""#,
            r#""\udc00x""#,
            "\"a\u{1}\"",
            "01",
            "1.",
            ".5",
            "[1,]",
            r#"{"a":1,}"#,
            "",
            "  ",
            "[1] [2]",
            "tru",
            "\u{feff}{}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn documents_may_hold_what_python_reads_as_non_finite_floats() {
        let value = parse_as("[NaN, Infinity, -Infinity, 1e400, -1e400]", Dialect::Python).unwrap();
        assert_eq!(to_string(&value, Layout::Response), "[NaN, Infinity, -Infinity, Infinity, -Infinity]");
        assert!(parse_as("[-NaN]", Dialect::Python).is_err());
        assert!(parse_as("[Infinit]", Dialect::Python).is_err());
    }

    #[test]
    fn the_command_lines_files_are_indented_like_python() {
        let value = parse(r#"{"b": [1, {}, [], {"y": 2.0, "x": null}], "a": "é"}"#).unwrap();
        assert_eq!(
            to_indented_string(&value),
            "{\n  \"a\": \"é\",\n  \"b\": [\n    1,\n    {},\n    [],\n    {\n      \"x\": null,\n      \"y\": 2.0\n    }\n  ]\n}"
        );
        assert_eq!(to_indented_string(&crate::decision::Value::Array(vec![])), "[]");
    }

    #[test]
    fn nesting_is_bounded_without_overflowing_the_stack() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep).unwrap_err().reason, "nesting is too deep");
        let deep_objects = r#"{"a":"#.repeat(MAX_DEPTH + 1);
        assert!(parse(&deep_objects).is_err());
    }

    #[test]
    fn huge_integers_are_refused_like_python() {
        assert!(parse(&"9".repeat(4300)).is_ok());
        assert!(parse(&"9".repeat(4301)).is_err());
    }
}
