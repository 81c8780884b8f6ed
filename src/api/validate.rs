//! The URI check every request passes before a handler sees it (the body checks are in
//! the extractors; both use `crate::validation`).

use crate::error::MatrixError;
use crate::validation::decodes_to_text;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Refuses requests whose path or query does not decode to text a Matrix ID or key can
/// be: an invalid escape (`%ZZ`), bytes that are not UTF-8, or U+0000.
pub async fn check_uri(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let path_ok = uri.path().split('/').all(|segment| decodes_to_text(segment, false));
    let query_ok = uri.query().is_none_or(|query| {
        query.split('&').flat_map(|pair| pair.splitn(2, '=')).all(|part| decodes_to_text(part, true))
    });
    if !path_ok || !query_ok {
        let error = MatrixError::invalid_param("The path or query is not valid percent-encoded UTF-8 text");
        return error.into_response();
    }
    next.run(request).await
}
