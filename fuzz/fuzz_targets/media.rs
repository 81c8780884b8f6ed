//! Media headers from outside: an upload's `Content-Type` (a client's) and a remote
//! server's `Content-Disposition` for fetched media. The input is the content type on
//! the first line, the disposition after it. Whatever they hold, the headers kith
//! serves the media with must be valid header values, and a file name read back out of
//! kith's own `Content-Disposition` must be the name it wrote.

#![no_main]

use axum::http::HeaderValue;
use kith::services::media::{
    content_disposition, served_content_type, upload_content_type, upload_name_from_disposition,
};
use kith_fuzz::first_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (content_type, disposition) = first_line(data);
    let (Ok(content_type), Ok(disposition)) = (std::str::from_utf8(content_type), std::str::from_utf8(disposition))
    else {
        return;
    };
    let stored = upload_content_type(Some(content_type));
    let _ = HeaderValue::from_str(&served_content_type(&stored));
    let name = upload_name_from_disposition(disposition);
    if let Some(name) = &name {
        assert!(!name.is_empty() && !name.chars().any(char::is_control));
    }
    let served = content_disposition(&stored, name.as_deref());
    assert!(HeaderValue::from_str(&served).is_ok(), "not a header value: {served:?}");
    assert_eq!(upload_name_from_disposition(&served), name, "{served:?}");
});
