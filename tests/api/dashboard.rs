//! The dashboard over real HTTP: sign-up and its first key, log-in and log-out, the session
//! cookie on the REST API (CSRF token on writes, 401 and 403 bodies), roles, invitations,
//! the sign-up policy, login limits, password changes, escaping, and the CLI's logins.

use std::time::Duration;

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::cli::collabkit;
use crate::harness::{both_backends, eventually, Backend, Reply, TestApp};
use crate::socket::Socket;

both_backends!(
    sign_up_shows_the_account_id_and_a_key_that_works,
    the_session_cookie_opens_the_rest_api_with_csrf_on_writes,
    missing_malformed_and_ended_sessions_get_the_documented_401,
    viewers_read_and_cannot_write,
    invitation_links_work_once,
    the_signup_policy_is_enforced,
    logins_fail_alike_and_are_limited,
    a_password_change_ends_other_sessions,
    names_are_escaped_and_pages_set_a_strict_policy,
    keys_are_created_named_and_revoked_in_settings,
    the_cli_gives_an_account_a_login,
    rooms_and_users_are_made_from_the_dashboard,
    online_users_and_activity_reach_the_pages,
    webhooks_are_managed_and_retried_from_the_dashboard,
    owners_rename_and_delete_the_organization,
);

const PASSWORD: &str = "correct horse battery";

/// The documented 401 body, field by field (the request ID aside).
fn assert_documented_401(reply: &Reply) {
    reply.expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(reply.body["description"], "Unauthorized");
    assert_eq!(reply.body["data"], json!({}));
    assert_eq!(
        reply.body["error"],
        json!({
            "module": "Auth",
            "code": "UNAUTHORIZED",
            "message": "Invalid or missing authentication credentials"
        })
    );
}

/// A page as a browser gets it.
pub struct Html {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Html {
    /// The `value` of the element with this id.
    pub fn value_of(&self, id: &str) -> String {
        let at = self
            .text
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id} in {}", self.text));
        let rest = &self.text[at..];
        let start = rest.find("value=\"").expect("a value") + 7;
        let end = rest[start..].find('"').unwrap();
        rest[start..start + end].to_owned()
    }

    pub fn location(&self) -> String {
        self.headers["location"].to_str().unwrap().to_owned()
    }
}

/// A browser: its cookie jar holds the session cookie; redirects are not followed.
pub struct Browser {
    base: String,
    client: reqwest::Client,
    pub cookie: Option<String>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        Self {
            base: app.base.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    fn with_cookie(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, format!("collabkit_session={cookie}"));
        }
        request
    }

    async fn page(&mut self, request: reqwest::RequestBuilder) -> Html {
        let response = self
            .with_cookie(request)
            .send()
            .await
            .expect("the server answers");
        for value in response.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            if let Some(rest) = text.strip_prefix("collabkit_session=") {
                let token = rest.split(';').next().unwrap();
                self.cookie = Some(token.to_owned()).filter(|t| !t.is_empty());
            }
        }
        Html {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Html {
        let request = self.client.get(format!("{}{path}", self.base));
        self.page(request).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Html {
        let request = self.client.post(format!("{}{path}", self.base)).form(form);
        self.page(request).await
    }

    /// Posts a form with this session's CSRF token.
    pub async fn act(&mut self, path: &str, form: &[(&str, &str)]) -> Html {
        let csrf = self.csrf().await;
        let mut fields = form.to_vec();
        fields.push(("csrf", &csrf));
        self.post(path, &fields).await
    }

    /// The session's CSRF token, as pages carry it.
    pub async fn csrf(&mut self) -> String {
        let page = self.get("/dashboard/settings").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let at = page.text.find("data-csrf=\"").expect("a CSRF token") + 11;
        page.text[at..at + 64].to_owned()
    }

    pub async fn sign_up(&mut self, email: &str, organization: &str) -> (String, String) {
        let page = self
            .post(
                "/dashboard/signup",
                &[
                    ("email", email),
                    ("password", PASSWORD),
                    ("organization", organization),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        (page.value_of("account-id"), page.value_of("new-token"))
    }

    /// A REST call with the session cookie (and a CSRF token, if given).
    pub async fn rest(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: Option<&str>,
    ) -> Reply {
        let mut request =
            self.with_cookie(self.client.request(method, format!("{}{path}", self.base)));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        Reply::from(request.send().await.unwrap()).await
    }
}

pub(crate) async fn bearer(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    Reply::from(request.send().await.unwrap()).await
}

async fn sign_up_shows_the_account_id_and_a_key_that_works(backend: Backend) {
    let app = TestApp::start(backend).await;
    assert_eq!(
        Browser::new(&app).get("/").await.location(),
        "/dashboard",
        "/ leads to the dashboard"
    );
    let mut browser = Browser::new(&app);
    assert_eq!(
        browser.get("/dashboard").await.location(),
        "/dashboard/login"
    );
    let response = app
        .client
        .post(format!("{}/dashboard/signup", app.base))
        .form(&[
            ("email", "Ada@Example.com"),
            ("password", PASSWORD),
            ("organization", "Acme"),
        ])
        .send()
        .await
        .unwrap();
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("collabkit_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let page = Html {
        status: response.status(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    };
    assert_eq!(page.status, StatusCode::OK);
    let account_id = page.value_of("account-id");
    let key = page.value_of("new-key");
    assert!(key.starts_with("ck_"), "{key}");
    // The documented token, built from what the page shows, opens the REST API.
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{account_id}:{key}"));
    assert_eq!(token, page.value_of("new-token"));
    let rooms = bearer(
        &app,
        &token,
        Method::GET,
        &format!("/v1/accounts/{account_id}/rooms"),
        None,
    )
    .await;
    rooms.expect(StatusCode::OK);
    // The key is shown once: Settings lists it without the secret, with its last use.
    let mut browser = Browser::new(&app);
    browser
        .post(
            "/dashboard/login",
            &[("email", "ada@example.com"), ("password", PASSWORD)],
        )
        .await;
    let settings = browser.get("/dashboard/settings").await;
    assert_eq!(settings.status, StatusCode::OK);
    assert!(settings.text.contains(&account_id));
    assert!(!settings.text.contains(&key), "the key is shown once");
    assert!(settings.text.contains("First key"));
    assert!(
        !settings.text.contains(">never<"),
        "its last use is recorded"
    );
    // Over HTTPS (a proxy says so) the cookie is Secure.
    let response = browser
        .client
        .post(format!("{}/dashboard/login", app.base))
        .header("x-forwarded-proto", "https")
        .form(&[("email", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let cookie = response.headers().get(SET_COOKIE).cloned();
    assert!(cookie.is_some(), "{status} {:?}", response.text().await);
    assert!(cookie.unwrap().to_str().unwrap().contains("; Secure"));
}

async fn the_session_cookie_opens_the_rest_api_with_csrf_on_writes(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut browser = Browser::new(&app);
    let (account_id, _) = browser.sign_up("owner@example.com", "Acme").await;
    let rooms = format!("/v1/accounts/{account_id}/rooms");
    browser
        .rest(Method::GET, &rooms, None, None)
        .await
        .expect(StatusCode::OK);
    let body = Some(json!({ "name": "From the browser" }));
    // A write without the token, or with a forged one, is refused.
    for forged in [None, Some("0".repeat(64)), Some(String::new())] {
        let reply = browser
            .rest(Method::POST, &rooms, body.clone(), forged.as_deref())
            .await;
        reply.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
        assert!(reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-CSRF-Token"));
    }
    let csrf = browser.csrf().await;
    let created = browser.rest(Method::POST, &rooms, body, Some(&csrf)).await;
    created.expect(StatusCode::CREATED);
    // Another organization's path: valid cookie, no permission.
    let other = app.account().await;
    let reply = browser
        .rest(
            Method::GET,
            &format!("/v1/accounts/{}/rooms", other.id),
            None,
            None,
        )
        .await;
    reply.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    // Bearer is unchanged, and wins over a cookie.
    other.get("/rooms").await.expect(StatusCode::OK);
    let mut with_both = app
        .client
        .get(other.url("/rooms"))
        .bearer_auth(&other.token);
    with_both = with_both.header(
        COOKIE,
        format!("collabkit_session={}", browser.cookie.clone().unwrap()),
    );
    Reply::from(with_both.send().await.unwrap())
        .await
        .expect(StatusCode::OK);
}

async fn missing_malformed_and_ended_sessions_get_the_documented_401(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut browser = Browser::new(&app);
    let (account_id, _) = browser.sign_up("owner@example.com", "Acme").await;
    let rooms = format!("/v1/accounts/{account_id}/rooms");
    let mut anonymous = Browser::new(&app);
    assert_documented_401(&anonymous.rest(Method::GET, &rooms, None, None).await);
    for malformed in [
        "",
        "short",
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        "a b",
    ] {
        anonymous.cookie = Some(malformed.to_owned());
        assert_documented_401(&anonymous.rest(Method::GET, &rooms, None, None).await);
    }
    // Well formed but unknown.
    anonymous.cookie = Some("A".repeat(43));
    assert_documented_401(&anonymous.rest(Method::GET, &rooms, None, None).await);
    // Logged out: the old cookie is dead, on the API and on pages.
    let old = browser.cookie.clone().unwrap();
    let out = browser.act("/dashboard/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.cookie, None, "the cookie is cleared");
    browser.cookie = Some(old.clone());
    assert_documented_401(&browser.rest(Method::GET, &rooms, None, None).await);
    assert_eq!(
        browser.get("/dashboard/rooms").await.location(),
        "/dashboard/login"
    );
    // Expired: a session whose end has passed.
    let store = collabkit::app::open_store(&app.config).await.unwrap();
    let email = collabkit::domain::Email::parse("owner@example.com").unwrap();
    let login = store.find_login(&email).await.unwrap().unwrap().login;
    let token = collabkit::auth::sessions::SessionToken::generate();
    let now = collabkit::domain::Timestamp::now().as_millis();
    store
        .create_session(&collabkit::store::NewSession {
            token_hash: token.hash(),
            login_id: login.id,
            account_id: account_id.parse().unwrap(),
            created_at: collabkit::domain::Timestamp::from_millis(now - 10_000),
            expires_at: collabkit::domain::Timestamp::from_millis(now - 1),
        })
        .await
        .unwrap();
    let mut late = Browser::new(&app);
    late.cookie = Some(token.as_str().to_owned());
    assert_documented_401(&late.rest(Method::GET, &rooms, None, None).await);
    assert_eq!(
        late.get("/dashboard/settings").await.location(),
        "/dashboard/login"
    );
}

async fn viewers_read_and_cannot_write(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut owner = Browser::new(&app);
    let (account_id, token) = owner.sign_up("owner@example.com", "Acme").await;
    let room = bearer(
        &app,
        &token,
        Method::POST,
        &format!("/v1/accounts/{account_id}/rooms"),
        Some(json!({"name": "Lobby"})),
    )
    .await;
    let room_id = room.data()["room"]["id"].as_str().unwrap().to_owned();
    let invite = owner
        .act("/dashboard/settings/invitations", &[("role", "viewer")])
        .await;
    assert_eq!(invite.status, StatusCode::OK, "{}", invite.text);
    let link = invite.value_of("invite-link");
    let path = &link[link.find("/dashboard/").unwrap()..];
    let mut viewer = Browser::new(&app);
    let joined = viewer
        .post(
            path,
            &[
                ("mode", "signup"),
                ("email", "viewer@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", joined.text);
    let rooms = format!("/v1/accounts/{account_id}/rooms");
    viewer
        .rest(Method::GET, &rooms, None, None)
        .await
        .expect(StatusCode::OK);
    let csrf = viewer.csrf().await;
    let refused = viewer
        .rest(
            Method::POST,
            &rooms,
            Some(json!({"name": "No"})),
            Some(&csrf),
        )
        .await;
    refused.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Viewers") && message.contains("may not create"),
        "{message}"
    );
    let deleted = viewer
        .rest(
            Method::DELETE,
            &format!("{rooms}/{room_id}"),
            None,
            Some(&csrf),
        )
        .await;
    deleted.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    // The pages show no write buttons, and a forged form is refused.
    let page = viewer.get(&format!("/dashboard/rooms/{room_id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Lobby"));
    assert!(!page.text.contains("Create user") && !page.text.contains("Delete room"));
    let forged = viewer
        .act(&format!("/dashboard/rooms/{room_id}/delete"), &[])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let settings = viewer.get("/dashboard/settings").await;
    assert!(!settings.text.contains("Create key") && !settings.text.contains("Revoke"));
    let forged = viewer
        .act("/dashboard/settings/keys", &[("name", "mine")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    bearer(
        &app,
        &token,
        Method::GET,
        &format!("{rooms}/{room_id}"),
        None,
    )
    .await
    .expect(StatusCode::OK);
}

async fn invitation_links_work_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut owner = Browser::new(&app);
    let (account_id, _) = owner.sign_up("owner@example.com", "Acme").await;
    let invite = owner
        .act("/dashboard/settings/invitations", &[("role", "admin")])
        .await;
    let link = invite.value_of("invite-link");
    let path = link[link.find("/dashboard/").unwrap()..].to_owned();
    let mut admin = Browser::new(&app);
    assert!(admin
        .get(&path)
        .await
        .text
        .contains("as <strong>admin</strong>"));
    let joined = admin
        .post(
            &path,
            &[
                ("mode", "signup"),
                ("email", "admin@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(joined.status, StatusCode::SEE_OTHER);
    let csrf = admin.csrf().await;
    admin
        .rest(
            Method::POST,
            &format!("/v1/accounts/{account_id}/rooms"),
            Some(json!({"name": "By admin"})),
            Some(&csrf),
        )
        .await
        .expect(StatusCode::CREATED);
    // Replayed: refused, and nobody joins with it.
    let mut late = Browser::new(&app);
    assert_eq!(late.get(&path).await.status, StatusCode::NOT_FOUND);
    let replay = late
        .post(
            &path,
            &[
                ("mode", "signup"),
                ("email", "late@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(replay.status, StatusCode::NOT_FOUND);
    assert_eq!(late.cookie, None);
    let wrong = late.get("/dashboard/invitations/not-a-real-token").await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
    // Admins cannot invite owners.
    let refused = admin
        .act("/dashboard/settings/invitations", &[("role", "owner")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let settings = owner.get("/dashboard/settings").await;
    assert!(settings.text.contains("admin@example.com"));
    // A login in two organizations switches between them.
    let (own_id, _) = {
        let page = admin.get("/dashboard/settings").await;
        assert!(!page.text.contains("Your organizations"));
        (page.value_of("account-id"), ())
    };
    assert_eq!(own_id, account_id);
    let mut other = Browser::new(&app);
    let (other_id, _) = other.sign_up("other@example.com", "Other org").await;
    let invite = other
        .act("/dashboard/settings/invitations", &[("role", "viewer")])
        .await;
    let link = invite.value_of("invite-link");
    let path = link[link.find("/dashboard/").unwrap()..].to_owned();
    let csrf = admin.csrf().await;
    let joined = admin
        .post(&path, &[("mode", "join"), ("csrf", &csrf)])
        .await;
    assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", joined.text);
    let page = admin.get("/dashboard/settings").await;
    assert_eq!(
        page.value_of("account-id"),
        other_id,
        "joining shows the new organization"
    );
    assert!(page.text.contains("Your organizations") && page.text.contains("Acme"));
    let switched = admin
        .act("/dashboard/switch", &[("account", &account_id)])
        .await;
    assert_eq!(switched.status, StatusCode::SEE_OTHER);
    assert_eq!(
        admin
            .get("/dashboard/settings")
            .await
            .value_of("account-id"),
        account_id
    );
    let refused = admin
        .act(
            "/dashboard/switch",
            &[("account", &uuid::Uuid::new_v4().to_string())],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    // The cookie opens the REST API of both, with each role.
    admin
        .rest(
            Method::GET,
            &format!("/v1/accounts/{other_id}/rooms"),
            None,
            None,
        )
        .await
        .expect(StatusCode::OK);
    let csrf = admin.csrf().await;
    admin
        .rest(
            Method::POST,
            &format!("/v1/accounts/{other_id}/rooms"),
            Some(json!({"name": "x"})),
            Some(&csrf),
        )
        .await
        .expect_error(StatusCode::FORBIDDEN, "FORBIDDEN");
}

async fn the_signup_policy_is_enforced(backend: Backend) {
    for (policy, says) in [
        (collabkit::config::SignupPolicy::Closed, "Sign-up is closed"),
        (
            collabkit::config::SignupPolicy::Invite,
            "needs an invitation link",
        ),
    ] {
        let app = TestApp::start_with(backend, |c| c.dashboard.signup = policy).await;
        let mut browser = Browser::new(&app);
        assert!(browser.get("/dashboard/signup").await.text.contains(says));
        let refused = browser
            .post(
                "/dashboard/signup",
                &[("email", "a@example.com"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(browser.cookie, None);
        let store = collabkit::app::open_store(&app.config).await.unwrap();
        let email = collabkit::domain::Email::parse("a@example.com").unwrap();
        assert!(
            store.find_login(&email).await.unwrap().is_none(),
            "{policy:?}"
        );
    }
    // Invite: a link still lets a new login in.
    let app = TestApp::start_with(backend, |c| {
        c.dashboard.signup = collabkit::config::SignupPolicy::Invite
    })
    .await;
    let account = app.account().await;
    let store = collabkit::app::open_store(&app.config).await.unwrap();
    let token = "invitation-token-for-the-policy-test-00000000";
    store
        .create_invitation(&collabkit::store::NewInvitation {
            id: collabkit::domain::InvitationId::new(),
            token_hash: collabkit::auth::sessions::hex_sha256(token.as_bytes()),
            account_id: account.id.parse().unwrap(),
            role: collabkit::domain::Role::Admin,
            created_at: collabkit::domain::Timestamp::now(),
            expires_at: collabkit::domain::Timestamp::from_millis(
                collabkit::domain::Timestamp::now().as_millis() + 60_000,
            ),
        })
        .await
        .unwrap();
    let mut browser = Browser::new(&app);
    let joined = browser
        .post(
            &format!("/dashboard/invitations/{token}"),
            &[
                ("mode", "signup"),
                ("email", "b@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", joined.text);
    browser
        .rest(
            Method::GET,
            &format!("/v1/accounts/{}/rooms", account.id),
            None,
            None,
        )
        .await
        .expect(StatusCode::OK);
}

async fn logins_fail_alike_and_are_limited(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.dashboard.login_attempts_per_email = 4).await;
    Browser::new(&app)
        .sign_up("owner@example.com", "Acme")
        .await;
    let mut browser = Browser::new(&app);
    let wrong = browser
        .post(
            "/dashboard/login",
            &[
                ("email", "owner@example.com"),
                ("password", "wrong password"),
            ],
        )
        .await;
    let unknown = browser
        .post(
            "/dashboard/login",
            &[
                ("email", "nobody@example.com"),
                ("password", "wrong password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let message = |page: &Html| {
        let at = page.text.find("role=\"alert\">").unwrap();
        page.text[at..at + 60].to_owned()
    };
    assert_eq!(message(&wrong), message(&unknown), "the same answer");
    assert_eq!(browser.cookie, None);
    for (password, status) in [
        ("wrong again", StatusCode::UNAUTHORIZED),
        (PASSWORD, StatusCode::SEE_OTHER),
        (PASSWORD, StatusCode::TOO_MANY_REQUESTS),
    ] {
        let page = browser
            .post(
                "/dashboard/login",
                &[("email", "OWNER@example.com"), ("password", password)],
            )
            .await;
        assert_eq!(page.status, status, "{}", page.text);
    }
    // The sign-up counted as the address's first attempt; sign-ups count as attempts too (each
    // costs a password hash).
    let again = browser
        .post(
            "/dashboard/signup",
            &[("email", "owner@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    // Another address is still welcome.
    let other = browser
        .post(
            "/dashboard/login",
            &[("email", "someone@example.com"), ("password", "x")],
        )
        .await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    // A login form from another site is refused.
    let response = app
        .client
        .post(format!("{}/dashboard/login", app.base))
        .header("origin", "https://evil.example")
        .form(&[("email", "owner@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

async fn a_password_change_ends_other_sessions(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut first = Browser::new(&app);
    let (account_id, _) = first.sign_up("owner@example.com", "Acme").await;
    let mut second = Browser::new(&app);
    second
        .post(
            "/dashboard/login",
            &[("email", "owner@example.com"), ("password", PASSWORD)],
        )
        .await;
    let rooms = format!("/v1/accounts/{account_id}/rooms");
    second
        .rest(Method::GET, &rooms, None, None)
        .await
        .expect(StatusCode::OK);
    let wrong = first
        .act(
            "/dashboard/password",
            &[("current", "nope"), ("new", "a new password")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let changed = first
        .act(
            "/dashboard/password",
            &[("current", PASSWORD), ("new", "a new password")],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.text);
    assert_documented_401(&second.rest(Method::GET, &rooms, None, None).await);
    first
        .rest(Method::GET, &rooms, None, None)
        .await
        .expect(StatusCode::OK);
    let old = Browser::new(&app)
        .post(
            "/dashboard/login",
            &[("email", "owner@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
}

async fn names_are_escaped_and_pages_set_a_strict_policy(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut browser = Browser::new(&app);
    let evil = "<script>alert(1)</script>\"'&é中文";
    let (account_id, token) = browser.sign_up("owner@example.com", evil).await;
    let created = bearer(
        &app,
        &token,
        Method::POST,
        &format!("/v1/accounts/{account_id}/rooms"),
        Some(json!({"name": evil})),
    )
    .await;
    let room_id = created.data()["room"]["id"].as_str().unwrap().to_owned();
    bearer(
        &app,
        &token,
        Method::POST,
        &format!("/v1/accounts/{account_id}/users"),
        Some(json!({"name": evil, "roomId": room_id})),
    )
    .await
    .expect(StatusCode::CREATED);
    for path in [
        "/dashboard/rooms".to_owned(),
        format!("/dashboard/rooms/{room_id}"),
        "/dashboard/settings".to_owned(),
        format!("/dashboard/analytics?room={room_id}"),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(
            !page.text.contains("<script>alert"),
            "{path} is not escaped"
        );
        assert!(
            page.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}"
        );
        assert!(page.text.contains("é中文"), "{path}");
        let policy = page.headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.contains("default-src 'none'") && policy.contains("script-src 'self'"),
            "{policy}"
        );
        assert!(!policy.contains("unsafe-inline"));
        assert!(page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert_eq!(page.headers["cache-control"], "no-store");
    }
    // Empty and huge names are refused with a page, not stored.
    let csrf = browser.csrf().await;
    let huge = "x".repeat(300);
    for name in ["", "   ", huge.as_str()] {
        let page = browser
            .post("/dashboard/rooms", &[("csrf", &csrf), ("name", name)])
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{name:?}");
        assert!(page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    let listed = bearer(
        &app,
        &token,
        Method::GET,
        &format!("/v1/accounts/{account_id}/rooms"),
        None,
    )
    .await;
    assert_eq!(
        listed.data()["rooms"].as_array().map(Vec::len),
        Some(1),
        "{:#}",
        listed.body
    );
    // Our own script and stylesheet load.
    for (asset, kind) in [("app.js", "text/javascript"), ("app.css", "text/css")] {
        let page = browser.get(&format!("/dashboard/assets/{asset}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
}

async fn keys_are_created_named_and_revoked_in_settings(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.auth.key_cache_ttl_ms = 60_000).await;
    let mut browser = Browser::new(&app);
    let (account_id, first_token) = browser.sign_up("owner@example.com", "Acme").await;
    let page = browser
        .act("/dashboard/settings/keys", &[("name", "CI <runner>")])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let token = page.value_of("new-token");
    assert!(page.text.contains("CI &lt;runner&gt;"));
    let rooms = format!("/v1/accounts/{account_id}/rooms");
    bearer(&app, &token, Method::GET, &rooms, None)
        .await
        .expect(StatusCode::OK);
    let keys = browser
        .rest(
            Method::GET,
            &format!("/v1/accounts/{account_id}/keys"),
            None,
            None,
        )
        .await;
    let keys = keys.data()["keys"].as_array().unwrap().clone();
    let named = keys
        .iter()
        .find(|k| k["name"] == "CI <runner>")
        .expect("the named key");
    let key_id = named["id"].as_str().unwrap();
    let revoked = browser
        .act(&format!("/dashboard/settings/keys/{key_id}/revoke"), &[])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    // At once on this node, despite a minute of key cache.
    assert_documented_401(&bearer(&app, &token, Method::GET, &rooms, None).await);
    bearer(&app, &first_token, Method::GET, &rooms, None)
        .await
        .expect(StatusCode::OK);
    assert!(browser
        .get("/dashboard/settings")
        .await
        .text
        .contains("revoked"));
}

async fn the_cli_gives_an_account_a_login(backend: Backend) {
    let app = TestApp::start(backend).await;
    let account = app.account().await;
    let mut command = collabkit(&app.db);
    command
        .args([
            "accounts",
            "create-login",
            "--account",
            &account.id,
            "--email",
            "ops@example.com",
            "--role",
            "admin",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    use std::io::Write as _;
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut browser = Browser::new(&app);
    let logged = browser
        .post(
            "/dashboard/login",
            &[("email", "ops@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(logged.status, StatusCode::SEE_OTHER, "{}", logged.text);
    let settings = browser.get("/dashboard/settings").await;
    assert_eq!(settings.value_of("account-id"), account.id);
    // A short password is refused.
    let mut command = collabkit(&app.db);
    command
        .args([
            "accounts",
            "create-login",
            "--account",
            &account.id,
            "--email",
            "x@example.com",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "short").unwrap();
    assert!(!child.wait_with_output().unwrap().status.success());
}

async fn rooms_and_users_are_made_from_the_dashboard(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut browser = Browser::new(&app);
    let (account_id, token) = browser.sign_up("owner@example.com", "Acme").await;
    let created = browser
        .act(
            "/dashboard/rooms",
            &[("name", "Design review"), ("customId", "design")],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    let room_path = created.location();
    let room_id = room_path.rsplit('/').next().unwrap().to_owned();
    let page = browser
        .act(&format!("{room_path}/users"), &[("name", "Alice")])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let jwt = page.value_of("user-jwt");
    assert_eq!(jwt.split('.').count(), 3, "a JWT: {jwt}");
    let users = bearer(
        &app,
        &token,
        Method::GET,
        &format!("/v1/accounts/{account_id}/users?roomId={room_id}"),
        None,
    )
    .await;
    assert_eq!(
        users.data()["users"][0]["name"],
        "Alice",
        "{:#}",
        users.body
    );
    let list = browser.get("/dashboard/rooms?search=design").await;
    assert!(list.text.contains("Design review"));
    let none = browser.get("/dashboard/rooms?search=nothing-like-it").await;
    assert!(!none.text.contains("Design review"), "{}", none.text);
    // The live counts stream answers with the room's count.
    let response = app
        .client
        .get(format!("{}/dashboard/rooms/live?ids={room_id}", app.base))
        .header(
            COOKIE,
            format!("collabkit_session={}", browser.cookie.clone().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut response = response;
    let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains(&format!("\"{room_id}\":0")), "{text}");
    let deleted = browser.act(&format!("{room_path}/delete"), &[]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    bearer(
        &app,
        &token,
        Method::GET,
        &format!("/v1/accounts/{account_id}/rooms/{room_id}"),
        None,
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

async fn online_users_and_activity_reach_the_pages(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.analytics.flush_interval_ms = 200).await;
    let mut browser = Browser::new(&app);
    browser.sign_up("owner@example.com", "Acme").await;
    let created = browser.act("/dashboard/rooms", &[("name", "Live")]).await;
    let room_path = created.location();
    let room_id = room_path.rsplit('/').next().unwrap().to_owned();
    let mut tokens = Vec::new();
    for name in ["Alice", "Bob"] {
        let page = browser
            .act(&format!("{room_path}/users"), &[("name", name)])
            .await;
        tokens.push(page.value_of("user-jwt"));
    }
    let (mut alice, _) = Socket::join(&app.base, &tokens[0]).await;
    let (_bob, bob_joined) = Socket::join(&app.base, &tokens[1]).await;
    let bob_id = bob_joined["user"]["id"].as_str().unwrap().to_owned();
    alice
        .request("users.follow", json!({ "userId": bob_id }))
        .await
        .unwrap();
    alice
        .request("broadcast", json!({ "event": "wave", "data": {} }))
        .await
        .unwrap();
    alice
        .request("presence.update", json!({ "state": { "x": 1 } }))
        .await
        .unwrap();
    // The room page and the list show both online.
    let online = eventually(Duration::from_secs(5), || {
        let path = room_path.clone();
        let expected = format!("data-room=\"{room_id}\" aria-live=\"polite\">2<");
        let mut page_browser = Browser::new(&app);
        page_browser.cookie = browser.cookie.clone();
        async move {
            let page = page_browser.get(&path).await;
            page.text.matches("badge on\">online").count() == 2 && page.text.contains(&expected)
        }
    })
    .await;
    assert!(online, "the room page shows two users online");
    let page = browser.get(&room_path).await;
    assert!(page.text.contains("Latest sessions") && page.text.contains("No comments yet."));
    assert!(page.text.contains("<td>Alice</td>") && page.text.contains("<td>Bob</td>"));
    // Who follows whom: Alice follows Bob, Bob nobody.
    assert_eq!(
        page.text.matches("<td class=\"follows\">Bob</td>").count(),
        1,
        "{}",
        page.text
    );
    assert_eq!(page.text.matches("<td class=\"follows\"></td>").count(), 1);
    // A store written over REST shows with its schema and entries, escaped.
    let (account_id, token) = {
        let settings = browser.get("/dashboard/settings").await;
        let id = settings.value_of("account-id");
        let key = browser
            .act("/dashboard/settings/keys", &[("name", "test")])
            .await;
        (id, key.value_of("new-token"))
    };
    let base = format!("/v1/accounts/{account_id}");
    let schema = json!({ "schema": { "title": { "type": "string", "required": true } } });
    bearer(
        &app,
        &token,
        Method::PUT,
        &format!("{base}/stores/tasks"),
        Some(schema),
    )
    .await;
    let value = json!({ "value": { "title": "<i>ship</i>" } });
    let written = bearer(
        &app,
        &token,
        Method::PUT,
        &format!("{base}/rooms/{room_id}/stores/tasks/t1"),
        Some(value),
    )
    .await;
    assert!(written.status.is_success(), "{:#}", written.body);
    let page = browser.get(&room_path).await;
    assert!(
        page.text
            .contains("/stores/tasks\"><code>tasks</code></a> — 1 entries"),
        "{}",
        page.text
    );
    let store = browser.get(&format!("{room_path}/stores/tasks")).await;
    assert_eq!(store.status, StatusCode::OK);
    assert!(
        store.text.contains("&lt;i&gt;ship&lt;/i&gt;")
            && store.text.contains("&quot;required&quot;: true")
    );
    assert_eq!(
        browser
            .get(&format!("{room_path}/stores/nope"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The analytics charts have points: users online, messages, joins.
    let page = browser
        .get(&format!("/dashboard/analytics?room={room_id}"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Users online, "), "{}", page.text);
    assert!(page.text.contains(": 2 users"), "a peak of two users");
    // Two sessions started: in one minute, or (a minute turning between them) in two.
    let two_sessions =
        page.text.contains(": 2 sessions") || page.text.matches(": 1 sessions").count() == 2;
    assert!(two_sessions, "{}", page.text);
    assert!(
        page.text.contains("Average session, "),
        "their average duration"
    );
    assert!(page.text.contains("Broadcasts, ") && page.text.contains("Presence updates, "));
    assert!(page.text.contains("<svg"));
    let whole = browser.get("/dashboard/analytics?range=day").await;
    assert!(
        whole.text.contains("Live</a>"),
        "the busiest rooms list the room"
    );
    for range in ["week", "month"] {
        let page = browser
            .get(&format!("/dashboard/analytics?range={range}"))
            .await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text.contains("Joins, "), "{range}");
    }
}

async fn webhooks_are_managed_and_retried_from_the_dashboard(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.webhooks.allow_private_addresses = true;
        c.webhooks.retry_delays_ms = vec![];
        c.webhooks.poll_interval_ms = 100;
    })
    .await;
    let mut browser = Browser::new(&app);
    let (account_id, token) = browser.sign_up("owner@example.com", "Acme").await;
    // Nothing listens on the discard port: every attempt fails.
    let created = browser
        .act(
            "/dashboard/webhooks",
            &[
                ("url", "http://127.0.0.1:9/hook"),
                ("events", "session.started"),
                ("events", "user.created"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let secret = created.value_of("webhook-secret");
    assert!(!secret.is_empty());
    let hooks = bearer(
        &app,
        &token,
        Method::GET,
        &format!("/v1/accounts/{account_id}/webhooks"),
        None,
    )
    .await;
    let hook = hooks.data()["webhooks"][0].clone();
    assert_eq!(
        hook["events"],
        json!(["session.started", "user.created"]),
        "{hook:#}"
    );
    assert!(
        !hooks.body.to_string().contains(&secret),
        "the secret is shown once"
    );
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    let path = format!("/dashboard/webhooks/{hook_id}");
    assert_eq!(
        browser.act(&format!("{path}/test"), &[]).await.status,
        StatusCode::SEE_OTHER
    );
    let deliveries = format!("/v1/accounts/{account_id}/webhooks/{hook_id}/deliveries");
    let attempts = || async {
        let listed = bearer(&app, &token, Method::GET, &deliveries, None).await;
        let first = listed.data()["deliveries"][0].clone();
        (
            first["status"].as_str().unwrap_or("").to_owned(),
            first["attempts"].as_i64().unwrap_or(0),
            first["id"].as_str().unwrap_or("").to_owned(),
        )
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            attempts().await.0 == "failed"
        })
        .await
    );
    let (_, tries, delivery_id) = attempts().await;
    let page = browser.get(&path).await;
    assert!(page.text.contains("Retry now") && page.text.contains("webhook.test"));
    let retried = browser
        .act(&format!("{path}/deliveries/{delivery_id}/retry"), &[])
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER, "{}", retried.text);
    assert!(
        eventually(Duration::from_secs(10), || async {
            let (status, now, _) = attempts().await;
            status == "failed" && now > tries
        })
        .await,
        "retried once more"
    );
    // Disable, then a test is refused; edit the events.
    browser.act(&path, &[("toggle", "1")]).await;
    let listed = bearer(
        &app,
        &token,
        Method::GET,
        &format!("/v1/accounts/{account_id}/webhooks/{hook_id}"),
        None,
    )
    .await;
    assert_eq!(listed.data()["webhook"]["enabled"], false);
    assert_eq!(
        browser.act(&format!("{path}/test"), &[]).await.status,
        StatusCode::CONFLICT
    );
    let edited = browser
        .act(
            &path,
            &[
                ("url", "http://127.0.0.1:9/other"),
                ("events", "user.deleted"),
            ],
        )
        .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.text);
    let listed = bearer(
        &app,
        &token,
        Method::GET,
        &format!("/v1/accounts/{account_id}/webhooks/{hook_id}"),
        None,
    )
    .await;
    assert_eq!(listed.data()["webhook"]["events"], json!(["user.deleted"]));
    let refused = browser
        .act(&path, &[("url", "ftp://nope"), ("events", "user.deleted")])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        browser.act(&format!("{path}/delete"), &[]).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(browser.get(&path).await.status, StatusCode::NOT_FOUND);
}

async fn owners_rename_and_delete_the_organization(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut owner = Browser::new(&app);
    let (account_id, token) = owner.sign_up("owner@example.com", "Acme").await;
    let base = format!("/v1/accounts/{account_id}");
    let room = bearer(
        &app,
        &token,
        Method::POST,
        &format!("{base}/rooms"),
        Some(json!({"name": "Lobby"})),
    )
    .await;
    let room_id = room.data()["room"]["id"].as_str().unwrap().to_owned();
    let al = bearer(
        &app,
        &token,
        Method::POST,
        &format!("{base}/users"),
        Some(json!({"name": "Al", "roomId": room_id})),
    )
    .await;
    let al_id = al.data()["user"]["id"].as_str().unwrap().to_owned();
    // Two files in the room: the room page lists them; one is deleted from there.
    let mut keys = Vec::new();
    for name in ["notes.txt", "plan <b>.txt"] {
        let form = reqwest::multipart::Form::new()
            .text("roomId", room_id.clone())
            .text("userId", al_id.clone())
            .part(
                "file",
                reqwest::multipart::Part::bytes(format!("the {name}").into_bytes())
                    .file_name(name.to_owned()),
            );
        let uploaded = Reply::from(
            app.client
                .post(format!("{}{base}/upload", app.base))
                .bearer_auth(&token)
                .multipart(form)
                .send()
                .await
                .unwrap(),
        )
        .await;
        uploaded.expect(StatusCode::CREATED);
        keys.push(uploaded.data()["file"]["key"].as_str().unwrap().to_owned());
    }
    let room_page = owner.get(&format!("/dashboard/rooms/{room_id}")).await;
    assert_eq!(room_page.status, StatusCode::OK, "{}", room_page.text);
    assert!(room_page.text.contains("Files (2)"), "{}", room_page.text);
    assert!(room_page.text.contains(">notes.txt</a>"));
    assert!(room_page.text.contains("plan &lt;b&gt;.txt"));
    assert!(room_page
        .text
        .contains(&format!("{base}/storage/{}", keys[0])));
    let public = |key: &str| format!("{}{base}/storage/{key}", app.base);
    let removed = owner
        .act(
            &format!("/dashboard/rooms/{room_id}/files/delete"),
            &[("key", &keys[0])],
        )
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.text);
    let gone = app.client.get(public(&keys[0])).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let kept = app.client.get(public(&keys[1])).send().await.unwrap();
    assert_eq!(kept.status(), StatusCode::OK);
    assert_eq!(stored_objects(&app.config.files_dir()), 1);
    // An admin may neither rename nor delete it.
    let invite = owner
        .act("/dashboard/settings/invitations", &[("role", "admin")])
        .await;
    let link = invite.value_of("invite-link");
    let mut admin = Browser::new(&app);
    admin
        .post(
            &link[link.find("/dashboard/").unwrap()..],
            &[
                ("mode", "signup"),
                ("email", "admin@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(
        admin
            .act("/dashboard/settings/name", &[("name", "Mine")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        admin
            .act("/dashboard/settings/delete", &[("confirm", "Acme")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // The owner renames it, and must type the new name to delete it.
    assert_eq!(
        owner
            .act("/dashboard/settings/name", &[("name", "Acme <2>")])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    assert!(owner
        .get("/dashboard/settings")
        .await
        .text
        .contains("Acme &lt;2&gt;"));
    assert_eq!(
        owner
            .act("/dashboard/settings/delete", &[("confirm", "Acme")])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    bearer(&app, &token, Method::GET, &format!("{base}/rooms"), None)
        .await
        .expect(StatusCode::OK);
    let deleted = owner
        .act("/dashboard/settings/delete", &[("confirm", "Acme <2>")])
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.text);
    // Its keys, rooms and users are gone; its members belong to no organization.
    assert_documented_401(&bearer(&app, &token, Method::GET, &format!("{base}/rooms"), None).await);
    let store = collabkit::app::open_store(&app.config).await.unwrap();
    let id = account_id.parse().unwrap();
    assert!(store.get_account(id).await.unwrap().is_none());
    assert!(store.list_api_keys(id).await.unwrap().is_empty());
    assert!(store
        .get_room(id, room_id.parse().unwrap())
        .await
        .unwrap()
        .is_none());
    let page = owner.get("/dashboard/rooms").await;
    assert!(page.text.contains("No organization"), "{}", page.text);
    // Its files too: rows and objects.
    let gone = app.client.get(public(&keys[1])).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(stored_objects(&app.config.files_dir()), 0);
}

/// Regular files under `dir`, at any depth (none if it does not exist).
fn stored_objects(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => stored_objects(&entry.path()),
            Ok(kind) if kind.is_file() => 1,
            _ => 0,
        })
        .sum()
}
