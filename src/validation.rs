//! Input rules shared by every entry point: path and query strings must be
//! well-formed percent-encoding of UTF-8 without U+0000, and JSON may not hold U+0000 in
//! any key or string. Both databases then see the same input, and PostgreSQL (which
//! cannot store U+0000 in text) never turns one into a 500.

use serde_json::Value;

use crate::error::MatrixError;

/// Whether a percent-encoded path segment or query part decodes to UTF-8 without U+0000.
pub fn decodes_to_text(encoded: &str, plus_is_space: bool) -> bool {
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // Two hex digits exactly: `from_str_radix` alone would take `%+1` as 0x01.
                let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                match hex.and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => decoded.push(byte),
                    None => return false,
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                decoded.push(b' ');
                i += 1;
            }
            byte => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok_and(|text| !text.contains('\0'))
}

/// Refuses JSON holding U+0000 in a key or a string, anywhere.
pub fn check_json_text(value: &Value) -> Result<(), MatrixError> {
    let refuse = || MatrixError::bad_json("Strings may not contain U+0000");
    match value {
        Value::String(text) if text.contains('\0') => Err(refuse()),
        Value::Array(items) => items.iter().try_for_each(check_json_text),
        Value::Object(fields) => fields.iter().try_for_each(|(key, value)| {
            if key.contains('\0') {
                return Err(refuse());
            }
            check_json_text(value)
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_must_decode_to_text_without_nul() {
        for good in ["", "abc", "%21room%3Aexample.org", "%C3%A9", "a+b", "%2F"] {
            assert!(decodes_to_text(good, true), "{good}");
        }
        for bad in ["%ZZ", "%", "%2", "%00", "a%00b", "%FF%FE", "%C3", "%+2", "%+0", "a%+Fb"] {
            assert!(!decodes_to_text(bad, true), "{bad}");
        }
    }

    #[test]
    fn nul_is_refused_in_keys_and_strings_at_any_depth() {
        assert!(check_json_text(&json!({ "a": [1, "b", { "c": null }] })).is_ok());
        for bad in [json!("\u{0}"), json!({ "a\u{0}": 1 }), json!({ "a": [{ "b": "x\u{0}y" }] })] {
            assert_eq!(check_json_text(&bad).unwrap_err().errcode, "M_BAD_JSON", "{bad}");
        }
    }
}
