//! Responses for browser pages: security headers, error pages, redirects.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use askama::Template;

use crate::app::App;
use crate::views::{describe_delegation, describe_scope, ErrorPage, ScopeView};

/// An HTML page that cannot be framed, cached or made to submit anywhere but here and the
/// given redirect targets (CSP `form-action` also governs the redirects after a POST).
pub fn html(
    status: StatusCode,
    body: Result<String, askama::Error>,
    form_targets: &[&str],
) -> HttpResponse {
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            return HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("Something went wrong. Please try again.");
        }
    };
    let mut form_action = String::from("'self'");
    for target in form_targets {
        if let Some(origin) = origin_of(target) {
            form_action.push(' ');
            form_action.push_str(&origin);
        }
    }
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// `scheme://host[:port]` of a URL, for CSP source lists; `None` for what CSP cannot express.
fn origin_of(target: &str) -> Option<String> {
    let url = url::Url::parse(target).ok()?;
    match url.scheme() {
        "http" | "https" => Some(url.origin().ascii_serialization()),
        other => Some(format!("{other}:")),
    }
}

pub fn error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let page = ErrorPage {
        title: title.to_string(),
        message: message.to_string(),
    };
    html(status, page.render(), &[])
}

/// 303 See Other: after a form POST the browser follows with GET.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

pub fn session_expired() -> HttpResponse {
    error_page(
        StatusCode::BAD_REQUEST,
        "Your sign-in session expired",
        "For your security this page can no longer be used. Go back to the application and start again.",
    )
}

/// Adds `Retry-After` (RFC 9110 §10.2.3).
pub fn with_retry_after(response: &mut HttpResponse, seconds: u64) {
    if let Ok(value) = header::HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

/// 503 for a page whose dependency (the database, Redis) did not answer in time.
pub fn unavailable_page(retry_after: u64) -> HttpResponse {
    let mut page = error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is temporarily unavailable",
        "Please try again in a moment.",
    );
    with_retry_after(&mut page, retry_after);
    page
}

/// What the consent page lists: each scope with its description; a delegation names its agent
/// by the agent's registered name.
pub async fn scope_views(app: &App, scopes: &[String]) -> Vec<ScopeView> {
    let mut views = Vec::with_capacity(scopes.len());
    for scope in scopes {
        let description = match crate::oauth::delegation::delegate_of(scope) {
            Some(agent) => {
                let name = match app.clients().find(agent).await {
                    Ok(Some(client)) => client.name.clone(),
                    _ => agent.to_string(),
                };
                describe_delegation(&name)
            }
            None => describe_scope(scope),
        };
        views.push(ScopeView {
            name: scope.clone(),
            description,
        });
    }
    views
}
