//! Getting in and out: sign-up (a new organization, its first key shown once), log-in (limited
//! per client address and per email address; one answer for an unknown address and a wrong
//! password), log-out, invitation links, and changing one's password. (Over our usual 600
//! lines on purpose: these pages share their forms' re-rendering, the cross-site check, the
//! login limits and the start of a session; split, each half would import the other's.)

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, public_page};
use super::{client_address, see_other, CsrfForm, PageError, PageForm, PageResult, Signed};
use crate::auth::sessions::{clear_cookie, hex_sha256, secure_for, CookieToken, SessionToken};
use crate::auth::{passwords, GeneratedKey};
use crate::config::SignupPolicy;
use crate::domain::dashboard::password_problem;
use crate::domain::{Account, AccountId, Email, Invitation, LoginId, Role, Timestamp};
use crate::http::validation::MAX_NAME_CHARS;
use crate::state::AppState;
use crate::store::{Entity, NewLogin, NewSession, StoreError};

pub fn router() -> axum::Router<AppState> {
    Router::new()
        .route("/dashboard/signup", get(signup_page).post(sign_up))
        .route("/dashboard/login", get(login_page).post(log_in))
        .route("/dashboard/logout", post(log_out))
        .route(
            "/dashboard/invitations/{token}",
            get(invitation_page).post(use_invitation),
        )
        .route("/dashboard/password", post(change_password))
}

#[derive(Deserialize)]
struct SignupForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    organization: String,
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize)]
struct InvitationForm {
    #[serde(default)]
    mode: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
}

/// What a sign-up or log-in form shows again after a refusal.
#[derive(Default)]
struct Filled<'a> {
    email: &'a str,
    organization: &'a str,
    error: Option<&'a str>,
}

async fn signup_page(State(state): State<AppState>, session: Option<Signed>) -> Response {
    if session.is_some() {
        return see_other("/dashboard/rooms");
    }
    signup_form(&state, StatusCode::OK, &Filled::default())
}

fn signup_form(state: &AppState, status: StatusCode, filled: &Filled<'_>) -> Response {
    let body = match state.config().dashboard.signup {
        SignupPolicy::Open => html! {
            (error_note(filled.error))
            form.card method="post" action="/dashboard/signup" {
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="email" required value=(filled.email);
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="new-password" required minlength="8";
                p.hint #password-hint { "At least 8 characters." }
                label for="organization" { "Organization name" }
                input #organization type="text" name="organization" maxlength=(MAX_NAME_CHARS) placeholder="Acme" value=(filled.organization);
                button type="submit" { "Create organization" }
            }
            p { "Already have a login? " a href="/dashboard/login" { "Log in" } }
        },
        SignupPolicy::Invite => html! {
            p { "Sign-up on this server needs an invitation link from a member of an organization." }
            p { a href="/dashboard/login" { "Log in" } }
        },
        SignupPolicy::Closed => html! {
            p { "Sign-up is closed on this server. Its operator creates logins with "
                code { "collabkit accounts create-login" } "." }
            p { a href="/dashboard/login" { "Log in" } }
        },
    };
    public_page(status, "Create your organization", body)
}

fn error_note(error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
    }
}

/// A login form posted from another site would log the victim in to the attacker's account:
/// when the browser says where the form came from, it must be here.
fn from_elsewhere(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    origin == "null" || origin_host != host
}

fn cross_site() -> Response {
    layout::problem(
        StatusCode::FORBIDDEN,
        "Refused",
        "This form was sent from another site.",
    )
}

async fn sign_up(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> PageResult {
    if from_elsewhere(&headers) {
        return Ok(cross_site());
    }
    let address = client_address(request.extensions());
    let PageForm(form) =
        <PageForm<SignupForm> as axum::extract::FromRequest<AppState>>::from_request(
            request, &state,
        )
        .await?;
    if state.config().dashboard.signup != SignupPolicy::Open {
        return Ok(signup_form(
            &state,
            StatusCode::FORBIDDEN,
            &Filled::default(),
        ));
    }
    let refuse = |message: &str| {
        signup_form(
            &state,
            StatusCode::BAD_REQUEST,
            &Filled {
                email: &form.email,
                organization: &form.organization,
                error: Some(message),
            },
        )
    };
    let email = match Email::parse(&form.email) {
        Ok(email) => email,
        Err(message) => return Ok(refuse(message)),
    };
    if let Some(problem) = password_problem(&form.password) {
        return Ok(refuse(&problem));
    }
    // Each sign-up costs a password hash: counted with the log-ins of its address.
    if let Err(wait_secs) = state.login_limiter().attempt(&address, email.as_str()) {
        let mut response = refuse(&format!(
            "Too many attempts. Try again in {} minutes.",
            wait_secs.div_ceil(60)
        ));
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return Ok(response);
    }
    let name = match organization_name(&form.organization, &email) {
        Ok(name) => name,
        Err(message) => return Ok(refuse(message)),
    };
    let hash = passwords::hash(form.password.clone())
        .await
        .map_err(|e| PageError::from(crate::error::ApiError::Internal(e)))?;
    let login = NewLogin {
        id: LoginId::new(),
        email: email.clone(),
        password_hash: hash,
        created_at: Timestamp::now(),
    };
    let account = Account {
        id: AccountId::new(),
        name,
        created_at: Timestamp::now(),
    };
    let mut key = GeneratedKey::new(account.id);
    key.record.name = "First key".to_owned();
    match state.store().sign_up(&login, &account, &key.record).await {
        Ok(()) => {}
        Err(StoreError::Conflict(Entity::Login)) => {
            return Ok(refuse(
                "A login with this email address exists already: log in instead.",
            ))
        }
        Err(other) => return Err(other.into()),
    }
    let session = start_session(&state, &headers, login.id, email, account, Role::Owner).await?;
    let shown = super::settings::Shown::FirstKey {
        secret: key.secret.clone(),
        token: key.bearer_token(),
        origin: super::settings::origin(&headers),
    };
    super::settings::render(&state, &session, Some(shown)).await
}

/// The organization's name: the one given, or one made from the email address.
fn organization_name(given: &str, email: &Email) -> Result<String, &'static str> {
    let given = given.trim();
    let name = if given.is_empty() {
        let local = email.as_str().split('@').next().unwrap_or("My");
        format!("{local}'s organization")
    } else {
        given.to_owned()
    };
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("The organization's name is too long (at most 256 characters).");
    }
    if name.chars().any(char::is_control) {
        return Err("The organization's name must not contain control characters.");
    }
    Ok(name)
}

/// A new session for `login` in `account`: recorded, and its cookie set on the answer the
/// caller builds from the returned `Signed`.
async fn start_session(
    state: &AppState,
    headers: &HeaderMap,
    login_id: LoginId,
    email: Email,
    account: Account,
    role: Role,
) -> Result<Signed, PageError> {
    let token = SessionToken::generate();
    let now = Timestamp::now();
    let ttl = state.config().dashboard.session_ttl();
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    state
        .store()
        .create_session(&NewSession {
            token_hash: token.hash(),
            login_id,
            account_id: account.id,
            created_at: now,
            expires_at: Timestamp::from_millis(now.as_millis().saturating_add(ttl_ms)),
        })
        .await?;
    Ok(Signed {
        token,
        login_id,
        email,
        account,
        role,
        secure: secure_for(state.config().dashboard.cookie_secure, headers),
        ttl_secs: ttl.as_secs(),
    })
}

async fn login_page(session: Option<Signed>) -> Response {
    if session.is_some() {
        return see_other("/dashboard/rooms");
    }
    login_form(StatusCode::OK, &Filled::default())
}

fn login_form(status: StatusCode, filled: &Filled<'_>) -> Response {
    public_page(
        status,
        "Log in",
        html! {
            (error_note(filled.error))
            form.card method="post" action="/dashboard/login" {
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="username" required value=(filled.email);
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
            p { "New here? " a href="/dashboard/signup" { "Create an organization" } }
        },
    )
}

/// The one answer to a wrong password and an unknown address.
const WRONG_LOGIN: &str = "Wrong email address or password.";

/// Checks an email address and password, counting the attempt. `Err`: the page to show.
async fn check_login(
    state: &AppState,
    address: &str,
    email: &str,
    password: &str,
    again: impl Fn(StatusCode, &str) -> Response,
) -> Result<(LoginId, Email), PageError> {
    let normalised = email.trim().to_lowercase();
    if let Err(wait_secs) = state.login_limiter().attempt(address, &normalised) {
        let mut response = again(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many login attempts. Try again in {} minutes.",
                wait_secs.div_ceil(60)
            ),
        );
        if let Ok(value) = wait_secs.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Err(response.into());
    }
    let found = match Email::parse(email) {
        Ok(email) => state.store().find_login(&email).await?,
        Err(_) => None,
    };
    let stored = found.as_ref().map(|f| f.password_hash.clone());
    let matches = passwords::verify(password.to_owned(), stored)
        .await
        .map_err(|e| PageError::from(crate::error::ApiError::Internal(e)))?;
    match found {
        Some(found) if matches => Ok((found.login.id, found.login.email)),
        _ => Err(again(StatusCode::UNAUTHORIZED, WRONG_LOGIN).into()),
    }
}

async fn log_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> PageResult {
    if from_elsewhere(&headers) {
        return Ok(cross_site());
    }
    let address = client_address(request.extensions());
    let PageForm(form) =
        <PageForm<LoginForm> as axum::extract::FromRequest<AppState>>::from_request(
            request, &state,
        )
        .await?;
    let again = |status, message: &str| {
        login_form(
            status,
            &Filled {
                email: &form.email,
                error: Some(message),
                ..Filled::default()
            },
        )
    };
    let (login_id, email) =
        check_login(&state, &address, &form.email, &form.password, again).await?;
    let Some((account, role)) = state
        .store()
        .memberships(login_id)
        .await?
        .into_iter()
        .next()
    else {
        return Ok(public_page(
            StatusCode::OK,
            "No organization",
            html! { p { "Your login belongs to no organization. Ask a member for an invitation link." } },
        ));
    };
    let session = start_session(&state, &headers, login_id, email, account, role).await?;
    Ok(with_cookie(see_other("/dashboard/rooms"), &session))
}

fn with_cookie(mut response: Response, session: &Signed) -> Response {
    response
        .headers_mut()
        .append(header::SET_COOKIE, session.refreshed_cookie());
    response
}

async fn log_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    let secure = secure_for(state.config().dashboard.cookie_secure, &headers);
    if let CookieToken::Present(token) = CookieToken::from_headers(&headers) {
        if !token.csrf_matches(&form.csrf) {
            return Ok(layout::problem(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "Reload the page and log out again.",
            ));
        }
        state.store().delete_session(&token.hash()).await?;
    }
    let mut response = see_other("/dashboard/login");
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear_cookie(secure));
    Ok(response)
}

/// A usable invitation and its organization, or the page saying it is not.
async fn usable_invitation(
    state: &AppState,
    token: &str,
) -> Result<(Invitation, Account), PageError> {
    let not_usable = || {
        PageError::from(layout::problem(
            StatusCode::NOT_FOUND,
            "This invitation link does not work",
            "It was used already, has expired or was withdrawn. Ask for a new one.",
        ))
    };
    let invitation = state
        .store()
        .find_invitation(&hex_sha256(token.as_bytes()))
        .await?
        .filter(|i| i.used_at.is_none() && i.expires_at.as_millis() > Timestamp::now().as_millis())
        .ok_or_else(not_usable)?;
    let account = state
        .store()
        .get_account(invitation.account_id)
        .await?
        .ok_or_else(not_usable)?;
    Ok((invitation, account))
}

async fn invitation_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    session: Option<Signed>,
) -> PageResult {
    let (invitation, account) = usable_invitation(&state, &token).await?;
    Ok(invitation_form(
        &state,
        StatusCode::OK,
        &token,
        &invitation,
        &account,
        session.as_ref(),
        None,
    ))
}

fn invitation_form(
    state: &AppState,
    status: StatusCode,
    token: &str,
    invitation: &Invitation,
    account: &Account,
    session: Option<&Signed>,
    error: Option<&str>,
) -> Response {
    let action = format!("/dashboard/invitations/{token}");
    let may_sign_up = state.config().dashboard.signup != SignupPolicy::Closed;
    let body = html! {
        p { "You are invited to join " strong { (account.name) } " as " strong { (invitation.role) } "." }
        (error_note(error))
        @if let Some(session) = session {
            form.card method="post" action=(action) {
                input type="hidden" name="csrf" value=(session.csrf());
                input type="hidden" name="mode" value="join";
                p { "You are logged in as " (session.email) "." }
                button type="submit" { "Join " (account.name) }
            }
        } @else {
            @if may_sign_up {
                form.card method="post" action=(action) aria-labelledby="new-login" {
                    h2 #new-login { "New here: create a login" }
                    input type="hidden" name="mode" value="signup";
                    label for="new-email" { "Email" }
                    input #new-email type="email" name="email" autocomplete="email" required;
                    label for="new-password" { "Password (at least 8 characters)" }
                    input #new-password type="password" name="password" autocomplete="new-password" required minlength="8";
                    button type="submit" { "Create login and join" }
                }
            }
            form.card method="post" action=(action) aria-labelledby="existing-login" {
                h2 #existing-login { "Have a login: log in" }
                input type="hidden" name="mode" value="login";
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="username" required;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Log in and join" }
            }
        }
    };
    public_page(status, "Invitation", body)
}

async fn use_invitation(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    session: Option<Signed>,
    request: axum::extract::Request,
) -> PageResult {
    if from_elsewhere(&headers) {
        return Ok(cross_site());
    }
    let address = client_address(request.extensions());
    let PageForm(form) =
        <PageForm<InvitationForm> as axum::extract::FromRequest<AppState>>::from_request(
            request, &state,
        )
        .await?;
    let (invitation, account) = usable_invitation(&state, &token).await?;
    let again = |status: StatusCode, message: &str| {
        invitation_form(
            &state,
            status,
            &token,
            &invitation,
            &account,
            None,
            Some(message),
        )
    };
    let hash = hex_sha256(token.as_bytes());
    let (login_id, email) = match (form.mode.as_str(), &session) {
        ("join", Some(session)) => {
            session.check_csrf(&form.csrf)?;
            (session.login_id, session.email.clone())
        }
        ("signup", None) if state.config().dashboard.signup != SignupPolicy::Closed => {
            let email = match Email::parse(&form.email) {
                Ok(email) => email,
                Err(message) => return Ok(again(StatusCode::BAD_REQUEST, message)),
            };
            if let Some(problem) = password_problem(&form.password) {
                return Ok(again(StatusCode::BAD_REQUEST, &problem));
            }
            let login = NewLogin {
                id: LoginId::new(),
                email: email.clone(),
                password_hash: passwords::hash(form.password.clone())
                    .await
                    .map_err(|e| PageError::from(crate::error::ApiError::Internal(e)))?,
                created_at: Timestamp::now(),
            };
            match state.store().create_login(&login).await {
                Ok(()) => {}
                Err(StoreError::Conflict(Entity::Login)) => {
                    return Ok(again(
                        StatusCode::CONFLICT,
                        "A login with this email address exists already: log in below.",
                    ))
                }
                Err(other) => return Err(other.into()),
            }
            (login.id, email)
        }
        ("login", None) => {
            check_login(&state, &address, &form.email, &form.password, again).await?
        }
        _ => {
            return Ok(again(
                StatusCode::BAD_REQUEST,
                "Choose one of the forms below.",
            ))
        }
    };
    let used = match state
        .store()
        .accept_invitation(&hash, login_id, Timestamp::now())
        .await
    {
        Ok(used) => used,
        Err(StoreError::NotFound(Entity::Invitation)) => {
            return Ok(layout::problem(
                StatusCode::NOT_FOUND,
                "This invitation link does not work",
                "It was used already, has expired or was withdrawn. Ask for a new one.",
            ))
        }
        Err(other) => return Err(other.into()),
    };
    let role = state
        .store()
        .memberships(login_id)
        .await?
        .into_iter()
        .find(|(a, _)| a.id == used.account_id)
        .map_or(used.role, |(_, role)| role);
    match session {
        Some(session) => {
            state
                .store()
                .switch_session(&session.token().hash(), used.account_id)
                .await?;
            Ok(see_other("/dashboard/rooms"))
        }
        None => {
            let session = start_session(&state, &headers, login_id, email, account, role).await?;
            Ok(with_cookie(see_other("/dashboard/rooms"), &session))
        }
    }
}

async fn change_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Signed,
    PageForm(form): PageForm<PasswordForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    let back = |status: StatusCode, message: &str| {
        layout::problem(status, "Password not changed", message)
    };
    let stored = state
        .store()
        .find_login(&session.email)
        .await?
        .map(|found| found.password_hash);
    let matches = passwords::verify(form.current.clone(), stored)
        .await
        .map_err(|e| PageError::from(crate::error::ApiError::Internal(e)))?;
    if !matches {
        return Ok(back(
            StatusCode::UNAUTHORIZED,
            "The current password is wrong.",
        ));
    }
    if let Some(problem) = password_problem(&form.new) {
        return Ok(back(StatusCode::BAD_REQUEST, &problem));
    }
    let hash = passwords::hash(form.new.clone())
        .await
        .map_err(|e| PageError::from(crate::error::ApiError::Internal(e)))?;
    // Ends every session of the login, this one too; this browser gets a new one.
    state.store().set_password(session.login_id, &hash).await?;
    let fresh = start_session(
        &state,
        &headers,
        session.login_id,
        session.email.clone(),
        session.account.clone(),
        session.role,
    )
    .await?;
    Ok(with_cookie(see_other("/dashboard/settings?password=changed"), &fresh).into_response())
}
