//! How media is presented to browsers: only types that cannot run script are shown
//! inline (no HTML, no SVG); everything else is an attachment. The list is Synapse's.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Content types a browser may display in place.
const INLINE_CONTENT_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// The `Content-Disposition` of media of this type and name.
pub fn content_disposition(content_type: &str, upload_name: Option<&str>) -> String {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let kind = if INLINE_CONTENT_TYPES.contains(&essence.as_str()) { "inline" } else { "attachment" };
    match upload_name.filter(|name| !name.is_empty()) {
        Some(name) => format!("{kind}; filename*=utf-8''{}", encode_rfc5987(name)),
        None => kind.to_owned(),
    }
}

/// Text types are served with an explicit charset, so browsers do not sniff one.
pub fn served_content_type(content_type: &str) -> String {
    let lower = content_type.to_ascii_lowercase();
    if lower.starts_with("text/") && !lower.contains("charset") {
        format!("{content_type}; charset=UTF-8")
    } else {
        content_type.to_owned()
    }
}

/// What `filename*` leaves unencoded: RFC 5987's attr-char.
const NOT_ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

fn encode_rfc5987(name: &str) -> String {
    utf8_percent_encode(name, NOT_ATTR_CHAR).to_string()
}

/// The file name in a `Content-Disposition` (another server's): `filename*=utf-8''…`
/// preferred over `filename="…"`.
pub fn upload_name_from_disposition(header: &str) -> Option<String> {
    let params: Vec<(String, &str)> = header
        .split(';')
        .skip(1)
        .filter_map(|param| param.split_once('='))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim()))
        .collect();
    let extended = params.iter().find(|(key, _)| key == "filename*").and_then(|(_, value)| {
        let (charset, encoded) = value.split_once("''")?;
        charset.eq_ignore_ascii_case("utf-8").then(|| percent_decode_str(encoded).decode_utf8().ok())?.map(String::from)
    });
    let plain =
        || params.iter().find(|(key, _)| key == "filename").map(|(_, value)| value.trim_matches('"').to_owned());
    extended.or_else(plain).filter(|name| !name.is_empty() && !name.chars().any(char::is_control))
}

/// A content type clients may give an upload: a plausible `type/subtype`, or a default.
pub fn upload_content_type(header: Option<&str>) -> String {
    match header.map(str::trim) {
        Some(value) if value.len() <= 255 && value.contains('/') && !value.chars().any(char::is_control) => {
            value.to_owned()
        }
        _ => "application/octet-stream".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_back_from_either_form() {
        let disposition = content_disposition("image/png", Some("é x.png"));
        assert_eq!(upload_name_from_disposition(&disposition).as_deref(), Some("é x.png"));
        assert_eq!(upload_name_from_disposition("attachment; filename=\"a b.txt\"").as_deref(), Some("a b.txt"));
        assert_eq!(upload_name_from_disposition("inline"), None);
        assert_eq!(upload_name_from_disposition("inline; filename*=utf-8''a%0Ab"), None);
    }

    #[test]
    fn scriptable_types_are_attachments_and_names_are_encoded() {
        assert_eq!(content_disposition("image/png", None), "inline");
        assert_eq!(content_disposition("text/html", Some("a.html")), "attachment; filename*=utf-8''a.html");
        assert_eq!(content_disposition("image/svg+xml", None), "attachment");
        assert_eq!(
            content_disposition("IMAGE/PNG; x=y", Some("é \"x\".png")),
            "inline; filename*=utf-8''%C3%A9%20%22x%22.png"
        );
        assert_eq!(served_content_type("text/plain"), "text/plain; charset=UTF-8");
        assert_eq!(upload_content_type(Some("bad\u{7}/x")), "application/octet-stream");
    }
}
