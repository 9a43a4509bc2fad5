//! The frame of every page (header, navigation, main), the pages that say something went
//! wrong, and the stylesheet and script the pages load (ours, served from the binary).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::{html as page_response, Signed};
use crate::auth::sessions::SessionToken;
use crate::error::ApiError;

/// Our script and stylesheet only, nothing inline, no frames, forms post here only; the live
/// counts' event stream and fetches stay on this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("assets/app.css");
const SCRIPT: &str = include_str!("assets/app.js");

/// Where a page sits in the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Rooms,
    Analytics,
    Webhooks,
    Workflows,
    Settings,
}

const NAV: [(Nav, &str, &str); 5] = [
    (Nav::Rooms, "Rooms", "/dashboard/rooms"),
    (Nav::Analytics, "Analytics", "/dashboard/analytics"),
    (Nav::Webhooks, "Webhooks", "/dashboard/webhooks"),
    (Nav::Workflows, "Workflows", "/dashboard/workflows"),
    (Nav::Settings, "Settings", "/dashboard/settings"),
];

/// A page of the organization, for a logged-in member.
pub fn page(session: &Signed, nav: Nav, title: &str, body: Markup) -> Response {
    page_with_status(StatusCode::OK, session, nav, title, body)
}

pub fn page_with_status(
    status: StatusCode,
    session: &Signed,
    nav: Nav,
    title: &str,
    body: Markup,
) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-csrf=(session.csrf()) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/dashboard/rooms" { "CollabKit" }
                    span.org title="Organization" { (session.account.name) }
                    nav aria-label="Main" {
                        ul {
                            @for (item, label, href) in NAV {
                                li {
                                    @if item == nav {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                            // Coming with its issue (files are on each room's page).
                            li { span.soon title="Coming soon" { "Workflows" } }
                        }
                    }
                    form.logout method="post" action="/dashboard/logout" {
                        input type="hidden" name="csrf" value=(session.csrf());
                        span.who { (session.email) " · " (session.role) }
                        button.link type="submit" { "Log out" }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    page_response(status, markup, Some(session))
}

/// A page for people not logged in (sign-up, log-in, an invitation).
pub fn public_page(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.public {
                main #main.narrow {
                    p.brand { "CollabKit" }
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    page_response(status, markup, None)
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · CollabKit" }
            link rel="stylesheet" href="/dashboard/assets/app.css";
            script src="/dashboard/assets/app.js" defer {}
        }
    }
}

/// A message on a page of its own, with a way back.
pub fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    public_page(
        status,
        title,
        html! {
            p role="alert" { (detail) }
            p { a href="/dashboard" { "Back to the dashboard" } }
        },
    )
}

/// A failed call, as a page; internal details go to the log only.
pub fn failure(error: ApiError) -> Response {
    if let ApiError::Internal(inner) = &error {
        tracing::error!(error = %inner, "dashboard request failed");
    }
    let status = error.status();
    let detail = match &error {
        ApiError::Internal(_) => "Something went wrong on the server. Try again.".to_owned(),
        ApiError::Validation { message, .. } => message.clone(),
        other => other.message().into_owned(),
    };
    problem(
        status,
        status.canonical_reason().unwrap_or("Error"),
        &detail,
    )
}

/// A login that belongs to no organization any more.
pub fn no_organization(token: &SessionToken) -> Response {
    public_page(
        StatusCode::OK,
        "No organization",
        html! {
            p { "Your login belongs to no organization any more. Ask a member for an invitation link." }
            form method="post" action="/dashboard/logout" {
                input type="hidden" name="csrf" value=(token.csrf());
                button type="submit" { "Log out" }
            }
        },
    )
}

pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// A static file of ours (`body`), never sniffed as another type, revalidated on each use.
pub fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A time as people read it, in UTC.
pub fn when(at: crate::domain::Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(at.as_millis()).map_or_else(
        || "?".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// A secret shown once, with a button that copies it.
pub fn secret_once(label: &str, id: &str, value: &str) -> Markup {
    html! {
        div.secret role="status" {
            label for=(id) { (label) " — shown once: copy it now" }
            div.copyrow {
                input #(id) type="text" readonly value=(value) data-secret;
                button type="button" data-copy=(id) { "Copy" }
            }
        }
    }
}
