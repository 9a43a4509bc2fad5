//! The dashboard: server-rendered pages at `/dashboard` (sign-up, log-in, settings, rooms,
//! analytics, webhooks) for the people of an organization, with the session cookie of
//! `auth::sessions`. Every form that changes something carries the session's CSRF token;
//! every page is sent with a strict Content-Security-Policy (our own script and stylesheet,
//! nothing inline, no other origin).

mod access;
mod analytics;
mod chart;
mod layout;
mod room;
mod rooms;
mod settings;
mod webhooks;
mod workflows;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::Markup;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::auth::sessions::{secure_for, CookieToken, SessionToken};
use crate::domain::{Account, Email, LoginId, Role};
use crate::error::ApiError;
use crate::state::AppState;

pub use layout::{asset, CONTENT_SECURITY_POLICY};

/// The dashboard's routes, and `/` sending people to it.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard", get(home))
        .route("/dashboard/", get(home))
        .route("/dashboard/assets/app.css", get(layout::stylesheet))
        .route("/dashboard/assets/app.js", get(layout::script))
        .merge(access::router())
        .merge(settings::router())
        .merge(rooms::router())
        .merge(room::router())
        .merge(analytics::router())
        .merge(webhooks::router())
        .merge(workflows::router())
}

async fn home(session: Option<Signed>) -> Redirect {
    match session {
        Some(_) => Redirect::to("/dashboard/rooms"),
        None => Redirect::to("/dashboard/login"),
    }
}

/// A logged-in member of an organization, on one of its pages.
pub struct Signed {
    token: SessionToken,
    pub login_id: LoginId,
    pub email: Email,
    pub account: Account,
    pub role: Role,
    /// Whether the cookie is set with `Secure`.
    secure: bool,
    ttl_secs: u64,
}

impl Signed {
    /// The session's CSRF token, for the forms of a page.
    pub fn csrf(&self) -> String {
        self.token.csrf()
    }

    /// Refuses a form without this session's CSRF token.
    pub fn check_csrf(&self, given: &str) -> Result<(), PageError> {
        if self.token.csrf_matches(given) {
            Ok(())
        } else {
            Err(PageError::from(layout::problem(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The form did not carry this session's security token (it may come from an \
                 older session or another site). Go back, reload the page and try again.",
            )))
        }
    }

    /// Refuses a change to a viewer.
    pub fn check_write(&self) -> Result<(), PageError> {
        if self.role.may_write() {
            Ok(())
        } else {
            Err(PageError::from(layout::problem(
                StatusCode::FORBIDDEN,
                "Viewers cannot change anything",
                crate::auth::bearer::VIEWER_REFUSAL,
            )))
        }
    }

    /// Refuses what only owners may do.
    pub fn check_owner(&self) -> Result<(), PageError> {
        if self.role.may_manage_owners() {
            Ok(())
        } else {
            Err(PageError::from(layout::problem(
                StatusCode::FORBIDDEN,
                "Only owners can do this",
                "Deleting or renaming the organization and managing its owners is for owners.",
            )))
        }
    }

    /// The cookie again, with its full lifetime: the session's end slid forward.
    fn refreshed_cookie(&self) -> HeaderValue {
        self.token.cookie(self.ttl_secs, self.secure)
    }

    pub fn token(&self) -> &SessionToken {
        &self.token
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_login = || Redirect::to("/dashboard/login").into_response();
        let CookieToken::Present(token) = CookieToken::from_headers(&parts.headers) else {
            return Err(to_login());
        };
        let sessions = state.sessions();
        let access = sessions
            .access(&token, None)
            .await
            .map_err(|e| layout::failure(e.into()))?
            .ok_or_else(to_login)?;
        let (account_id, role) = match (access.current_account, access.role) {
            (Some(account), Some(role)) => (account, role),
            // Its organization was deleted, or it was removed from it: the next one it has.
            _ => {
                let memberships = state
                    .store()
                    .memberships(access.login_id)
                    .await
                    .map_err(|e| layout::failure(e.into()))?;
                let Some((account, role)) = memberships.into_iter().next() else {
                    return Err(layout::no_organization(&token));
                };
                state
                    .store()
                    .switch_session(&token.hash(), account.id)
                    .await
                    .map_err(|e| layout::failure(e.into()))?;
                (account.id, role)
            }
        };
        let account = state
            .store()
            .get_account(account_id)
            .await
            .map_err(|e| layout::failure(e.into()))?
            .ok_or_else(to_login)?;
        Ok(Self {
            token,
            login_id: access.login_id,
            email: access.email,
            account,
            role,
            secure: secure_for(state.config().dashboard.cookie_secure, &parts.headers),
            ttl_secs: state.config().dashboard.session_ttl().as_secs(),
        })
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Response> {
        if CookieToken::from_headers(&parts.headers) == CookieToken::Absent {
            return Ok(None);
        }
        Ok(
            <Self as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

/// A form that carries nothing but its CSRF token (a button's).
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// A form's fields, repeated ones (checkboxes) kept.
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A form's room field: empty (every room), or a room of the organization. Err: what to tell
/// the user.
pub async fn room_field(
    state: &AppState,
    session: &Signed,
    text: &str,
) -> Result<Result<Option<crate::domain::RoomId>, String>, PageError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Ok(None));
    }
    let Ok(id) = text.parse() else {
        return Ok(Err("The room ID must be a UUID.".to_owned()));
    };
    Ok(
        match state.store().get_room(session.account.id, id).await? {
            Some(_) => Ok(Some(id)),
            None => Err("There is no such room.".to_owned()),
        },
    )
}

/// A form posted by a page (`application/x-www-form-urlencoded`), within the body limit.
pub struct PageForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for PageForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let limit = state.config().limits.max_body_bytes;
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| {
                layout::problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Too much text",
                    "What was sent is larger than the server accepts.",
                )
            })?;
        parse_form(&bytes)
            .map(PageForm)
            .map_err(IntoResponse::into_response)
    }
}

fn parse_form<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, PageError> {
    serde_urlencoded::from_bytes(bytes).map_err(|_| {
        PageError::from(layout::problem(
            StatusCode::BAD_REQUEST,
            "The form could not be read",
            "Go back, reload the page and try again.",
        ))
    })
}

/// The client's address as the connection loop saw it ("unknown" in tests without one).
pub fn client_address(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// A full page: HTML with the security headers, and the session's cookie refreshed.
pub fn html(status: StatusCode, markup: Markup, session: Option<&Signed>) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    response
        .extensions_mut()
        .insert(crate::http::middleware::OwnBody);
    let headers = response.headers_mut();
    set_page_headers(headers);
    if let Some(session) = session {
        headers.append(header::SET_COOKIE, session.refreshed_cookie());
    }
    response
}

fn set_page_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Pages show secrets once (keys, tokens): never keep them in a cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// After a change: back to a page (303, so that a reload does not post again).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// What a failed store or engine call shows.
impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        Self(Box::new(layout::failure(error)))
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(error: crate::store::StoreError) -> Self {
        Self(Box::new(layout::failure(error.into())))
    }
}

impl From<Response> for PageError {
    fn from(response: Response) -> Self {
        Self(Box::new(response))
    }
}

/// A page handler's failure: an HTML page saying what went wrong (boxed: a `Response` is
/// large, and this travels in every `Result` of the pages).
pub struct PageError(Box<Response>);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        *self.0
    }
}

pub type PageResult = Result<Response, PageError>;
