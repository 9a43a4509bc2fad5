//! Settings: the Account ID, API keys (create with a name and see it once, list with created
//! and last-used times, revoke), the organization's name, its members and their roles,
//! invitation links, one's password, and deleting the organization.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use serde::Deserialize;

use super::layout::{self, page, secret_once, when, Nav};
use super::{see_other, CsrfForm, PageError, PageForm, PageResult, Signed};
use crate::auth::sessions::{hex_sha256, random_token};
use crate::auth::GeneratedKey;
use crate::domain::{ApiKeyId, InvitationId, LoginId, Role, Timestamp};
use crate::http::validation::MAX_NAME_CHARS;
use crate::state::AppState;
use crate::store::NewInvitation;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/settings", get(settings_page))
        .route("/dashboard/settings/keys", post(create_key))
        .route("/dashboard/settings/keys/{keyId}/revoke", post(revoke_key))
        .route("/dashboard/settings/name", post(rename))
        .route("/dashboard/settings/invitations", post(invite))
        .route(
            "/dashboard/settings/invitations/{id}/withdraw",
            post(withdraw_invitation),
        )
        .route(
            "/dashboard/settings/members/{loginId}/role",
            post(change_role),
        )
        .route(
            "/dashboard/settings/members/{loginId}/remove",
            post(remove_member),
        )
        .route("/dashboard/settings/delete", post(delete_organization))
        .route("/dashboard/switch", post(switch_organization))
}

/// A secret the page shows once.
pub enum Shown {
    /// Just signed up: the organization's first key.
    FirstKey {
        secret: String,
        token: String,
        /// `http(s)://host` of the server, for the example command.
        origin: String,
    },
    Key {
        secret: String,
        token: String,
    },
    Invitation {
        link: String,
    },
}

async fn settings_page(State(state): State<AppState>, session: Signed) -> PageResult {
    render(&state, &session, None).await
}

pub async fn render(state: &AppState, session: &Signed, shown: Option<Shown>) -> PageResult {
    let account_id = session.account.id;
    let keys = state.store().list_api_keys(account_id).await?;
    let members = state.store().list_members(account_id).await?;
    let invitations = state
        .store()
        .list_invitations(account_id, Timestamp::now())
        .await?;
    let memberships = state.store().memberships(session.login_id).await?;
    let csrf = session.csrf();
    let writes = session.role.may_write();
    let body = html! {
        @match &shown {
            Some(Shown::FirstKey { secret, token, origin }) => {
                section.notice aria-labelledby="welcome" {
                    h2 #welcome { "Your organization is ready" }
                    p { "Use the Account ID and this API key for the REST API. The key is shown only now." }
                    (secret_once("API key", "new-key", secret))
                    (secret_once("Bearer token (base64 of accountId:apiKey)", "new-token", token))
                    pre.example { "curl " (origin) "/v1/accounts/" (account_id) "/rooms \\\n  -H \"Authorization: Bearer " (token) "\"" }
                }
            }
            Some(Shown::Key { secret, token }) => {
                section.notice aria-labelledby="new-key-title" {
                    h2 #new-key-title { "New API key" }
                    (secret_once("API key", "new-key", secret))
                    (secret_once("Bearer token", "new-token", token))
                }
            }
            Some(Shown::Invitation { link }) => {
                section.notice aria-labelledby="invite-title" {
                    h2 #invite-title { "Invitation link" }
                    p { "Send this link to the person you invite. It works once." }
                    (secret_once("Invitation link", "invite-link", link))
                }
            }
            None => {}
        }
        section aria-labelledby="account-title" {
            h2 #account-title { "Account" }
            label for="account-id" { "Account ID" }
            div.copyrow {
                input #account-id type="text" readonly value=(account_id);
                button type="button" data-copy="account-id" { "Copy" }
            }
            @if session.role.may_manage_owners() {
                form.inline method="post" action="/dashboard/settings/name" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="org-name" { "Organization name" }
                    input #org-name type="text" name="name" required maxlength=(MAX_NAME_CHARS) value=(session.account.name);
                    button type="submit" { "Rename" }
                }
            } @else {
                p { "Organization: " strong { (session.account.name) } }
            }
        }
        section aria-labelledby="keys-title" {
            h2 #keys-title { "API keys" }
            div.scroll {
                table {
                    thead { tr { th { "Name" } th { "Key" } th { "Created" } th { "Last used" } th { "Status" } th { span.visually-hidden { "Actions" } } } }
                    tbody {
                        @for key in &keys {
                            tr {
                                td { @if key.name.is_empty() { span.muted { "(no name)" } } @else { (key.name) } }
                                td { code { (key.prefix) "…" } }
                                td { (when(key.created_at)) }
                                td { @match key.last_used_at { Some(at) => (when(at)), None => span.muted { "never" } } }
                                td { @if key.revoked_at.is_some() { span.badge.off { "revoked" } } @else { span.badge.on { "active" } } }
                                td {
                                    @if writes && key.revoked_at.is_none() {
                                        form method="post" action={ "/dashboard/settings/keys/" (key.id) "/revoke" } data-confirm="Revoke this key? Requests using it will be refused." {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button.danger type="submit" aria-label={ "Revoke key " (key.prefix) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if writes {
                form.inline method="post" action="/dashboard/settings/keys" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="key-name" { "New key's name" }
                    input #key-name type="text" name="name" maxlength="100" placeholder="Production backend";
                    button type="submit" { "Create key" }
                }
            }
        }
        section aria-labelledby="members-title" {
            h2 #members-title { "Members" }
            div.scroll {
                table {
                    thead { tr { th { "Email" } th { "Role" } th { "Since" } th { span.visually-hidden { "Actions" } } } }
                    tbody {
                        @for member in &members {
                            tr {
                                td { (member.email) @if member.login_id == session.login_id { " (you)" } }
                                td {
                                    @if session.role.may_grant(member.role) && session.role.may_grant(Role::Viewer) && member.login_id != session.login_id {
                                        form.inline method="post" action={ "/dashboard/settings/members/" (member.login_id) "/role" } {
                                            input type="hidden" name="csrf" value=(csrf);
                                            label.visually-hidden for={ "role-" (member.login_id) } { "Role of " (member.email) }
                                            select id={ "role-" (member.login_id) } name="role" {
                                                @for role in Role::ALL {
                                                    @if session.role.may_grant(role) {
                                                        option value=(role) selected[role == member.role] { (role) }
                                                    }
                                                }
                                            }
                                            button type="submit" { "Change" }
                                        }
                                    } @else { (member.role) }
                                }
                                td { (when(member.created_at)) }
                                td {
                                    @if session.role.may_grant(member.role) && member.login_id != session.login_id {
                                        form method="post" action={ "/dashboard/settings/members/" (member.login_id) "/remove" } data-confirm="Remove this member?" {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button.danger type="submit" aria-label={ "Remove " (member.email) } { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if writes {
                h3 { "Invitations" }
                @if invitations.is_empty() { p.muted { "No pending invitations." } }
                ul {
                    @for invitation in &invitations {
                        li {
                            (invitation.role) " · expires " (when(invitation.expires_at)) " "
                            form.inline method="post" action={ "/dashboard/settings/invitations/" (invitation.id) "/withdraw" } {
                                input type="hidden" name="csrf" value=(csrf);
                                button.link type="submit" { "Withdraw" }
                            }
                        }
                    }
                }
                form.inline method="post" action="/dashboard/settings/invitations" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="invite-role" { "Invite someone as" }
                    select #invite-role name="role" {
                        @for role in Role::ALL {
                            @if session.role.may_grant(role) {
                                option value=(role) selected[role == Role::Viewer] { (role) }
                            }
                        }
                    }
                    button type="submit" { "Create invitation link" }
                }
            }
        }
        @if memberships.len() > 1 {
            section aria-labelledby="orgs-title" {
                h2 #orgs-title { "Your organizations" }
                ul {
                    @for (account, role) in &memberships {
                        li {
                            (account.name) " (" (role) ") "
                            @if account.id == session.account.id {
                                span.badge.on { "current" }
                            } @else {
                                form.inline method="post" action="/dashboard/switch" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="account" value=(account.id);
                                    button type="submit" aria-label={ "Switch to " (account.name) } { "Switch" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="password-title" {
            h2 #password-title { "Your password" }
            form.card method="post" action="/dashboard/password" {
                input type="hidden" name="csrf" value=(csrf);
                input type="email" name="username" autocomplete="username" value=(session.email) hidden;
                label for="current-password" { "Current password" }
                input #current-password type="password" name="current" autocomplete="current-password" required;
                label for="new-password" { "New password (at least 8 characters; logs out your other sessions)" }
                input #new-password type="password" name="new" autocomplete="new-password" required minlength="8";
                button type="submit" { "Change password" }
            }
        }
        @if session.role.may_manage_owners() {
            section.danger-zone aria-labelledby="delete-title" {
                h2 #delete-title { "Delete this organization" }
                p { "Deletes its rooms, users, stores, comments, webhooks and keys, for good." }
                form.card method="post" action="/dashboard/settings/delete" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="confirm-name" { "Type the organization's name to confirm: " strong { (session.account.name) } }
                    input #confirm-name type="text" name="confirm" required autocomplete="off";
                    button.danger type="submit" { "Delete organization" }
                }
            }
        }
    };
    Ok(page(session, Nav::Settings, "Settings", body))
}

#[derive(Deserialize)]
struct NameForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct RoleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
}

#[derive(Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

fn bad(title: &str, detail: &str) -> Response {
    layout::problem(StatusCode::BAD_REQUEST, title, detail)
}

async fn create_key(
    State(state): State<AppState>,
    session: Signed,
    PageForm(form): PageForm<NameForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let name = form.name.trim();
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Ok(bad(
            "Key not created",
            "A key's name has at most 100 characters.",
        ));
    }
    let mut key = GeneratedKey::new(session.account.id);
    key.record.name = name.to_owned();
    state
        .store()
        .create_api_key(&key.record, state.config().auth.max_keys_per_account)
        .await?;
    let shown = Shown::Key {
        secret: key.secret.clone(),
        token: key.bearer_token(),
    };
    render(&state, &session, Some(shown)).await
}

async fn revoke_key(
    State(state): State<AppState>,
    session: Signed,
    Path(key_id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let key_id: ApiKeyId = key_id
        .parse()
        .map_err(|_| bad("No such key", "That key does not exist."))?;
    state
        .store()
        .revoke_api_key(session.account.id, key_id)
        .await?;
    state.keys().forget(key_id);
    Ok(see_other("/dashboard/settings"))
}

async fn rename(
    State(state): State<AppState>,
    session: Signed,
    PageForm(form): PageForm<NameForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_owner()?;
    let name = form.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Ok(bad(
            "Not renamed",
            "A name has 1 to 256 characters and no control characters.",
        ));
    }
    state
        .store()
        .rename_account(session.account.id, name)
        .await?;
    Ok(see_other("/dashboard/settings"))
}

fn parse_role(text: &str) -> Result<Role, PageError> {
    text.parse()
        .map_err(|()| bad("Unknown role", "A role is owner, admin or viewer.").into())
}

/// `http(s)://host` of this request, for links people copy.
pub fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost:8080");
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    format!("{}://{host}", if https { "https" } else { "http" })
}

async fn invite(
    State(state): State<AppState>,
    session: Signed,
    headers: HeaderMap,
    PageForm(form): PageForm<RoleForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let role = parse_role(&form.role)?;
    if !session.role.may_grant(role) {
        session.check_owner()?;
    }
    let token = random_token();
    let now = Timestamp::now();
    let ttl_ms = i64::try_from(state.config().dashboard.invitation_ttl_ms).unwrap_or(i64::MAX);
    state
        .store()
        .create_invitation(&NewInvitation {
            id: InvitationId::new(),
            token_hash: hex_sha256(token.as_bytes()),
            account_id: session.account.id,
            role,
            created_at: now,
            expires_at: Timestamp::from_millis(now.as_millis().saturating_add(ttl_ms)),
        })
        .await?;
    let link = format!("{}/dashboard/invitations/{token}", origin(&headers));
    render(&state, &session, Some(Shown::Invitation { link })).await
}

async fn withdraw_invitation(
    State(state): State<AppState>,
    session: Signed,
    Path(id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let id: InvitationId = id
        .parse()
        .map_err(|_| bad("No such invitation", "That invitation does not exist."))?;
    state
        .store()
        .delete_invitation(session.account.id, id)
        .await?;
    Ok(see_other("/dashboard/settings"))
}

/// The member named in the path, whom this session may manage.
async fn managed_member(
    state: &AppState,
    session: &Signed,
    login_id: &str,
) -> Result<(LoginId, Role), PageError> {
    let login_id: LoginId = login_id
        .parse()
        .map_err(|_| bad("No such member", "That member does not exist."))?;
    let members = state
        .store()
        .list_members(session.account.id)
        .await
        .map_err(|e| layout::failure(e.into()))?;
    let member = members
        .into_iter()
        .find(|m| m.login_id == login_id)
        .ok_or_else(|| bad("No such member", "That member does not exist."))?;
    if !session.role.may_grant(member.role) {
        session.check_owner()?;
    }
    Ok((login_id, member.role))
}

async fn change_role(
    State(state): State<AppState>,
    session: Signed,
    Path(login_id): Path<String>,
    PageForm(form): PageForm<RoleForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let role = parse_role(&form.role)?;
    if !session.role.may_grant(role) {
        session.check_owner()?;
    }
    let (login_id, _) = managed_member(&state, &session, &login_id).await?;
    state
        .store()
        .set_member(session.account.id, login_id, role)
        .await?;
    Ok(see_other("/dashboard/settings"))
}

async fn remove_member(
    State(state): State<AppState>,
    session: Signed,
    Path(login_id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_write()?;
    let (login_id, _) = managed_member(&state, &session, &login_id).await?;
    state
        .store()
        .remove_member(session.account.id, login_id)
        .await?;
    Ok(see_other("/dashboard/settings"))
}

async fn delete_organization(
    State(state): State<AppState>,
    session: Signed,
    PageForm(form): PageForm<ConfirmForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    session.check_owner()?;
    if form.confirm.trim() != session.account.name.trim() {
        return Ok(bad(
            "Not deleted",
            "The name typed does not match the organization's name.",
        ));
    }
    // Sockets of its rooms are closed as each room goes; then the rest in one transaction.
    let rooms = state
        .store()
        .list_rooms(
            session.account.id,
            &crate::store::ListFilter::default(),
            crate::store::Page {
                limit: i64::MAX,
                offset: 0,
            },
        )
        .await?;
    // Its files' keys are read before their rows go with the rooms; the objects after.
    let mut files = Vec::new();
    for room in &rooms.items {
        state.engine().hub().close_room_sockets(room.id);
        let scope = crate::store::RoomScope {
            account_id: session.account.id,
            room_id: room.id,
        };
        files.extend(state.store().room_file_keys(scope).await?);
    }
    let keys = state.store().list_api_keys(session.account.id).await?;
    state.store().delete_account(session.account.id).await?;
    for room in &rooms.items {
        let gone = crate::rooms::Outcome::recorded(room.id, Vec::new());
        state.engine().publish(gone).await;
    }
    state
        .engine()
        .delete_room_objects(session.account.id, files)
        .await;
    // Its keys stop working at once on this node (on others within the key cache's TTL).
    for key in keys {
        state.keys().forget(key.id);
    }
    Ok(see_other("/dashboard"))
}

#[derive(Deserialize)]
struct SwitchForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    account: String,
}

/// Shows another organization of the login's.
async fn switch_organization(
    State(state): State<AppState>,
    session: Signed,
    PageForm(form): PageForm<SwitchForm>,
) -> PageResult {
    session.check_csrf(&form.csrf)?;
    let memberships = state.store().memberships(session.login_id).await?;
    let Some((account, _)) = memberships
        .into_iter()
        .find(|(account, _)| account.id.to_string() == form.account)
    else {
        return Ok(bad(
            "Not switched",
            "You are not a member of that organization.",
        ));
    };
    state
        .store()
        .switch_session(&session.token().hash(), account.id)
        .await?;
    Ok(see_other("/dashboard/rooms"))
}
