//! The dashboard's logins, members, sessions and invitations.

use collabkit::domain::{Account, AccountId, Email, InvitationId, LoginId, Role, Timestamp};
use collabkit::store::{Entity, NewInvitation, NewLogin, NewSession, StoreError};

use crate::fixture::{contract, key, Backend, Fixture};

contract!(
    sign_up_creates_the_organization_its_key_and_its_owner,
    sessions_expire_slide_and_end,
    a_password_change_ends_every_session,
    invitations_are_used_once_and_expire,
    an_organization_keeps_an_owner,
    deleting_an_organization_deletes_what_it_holds,
);

fn login(email: &str) -> NewLogin {
    NewLogin {
        id: LoginId::new(),
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$test".to_owned(),
        created_at: Timestamp::now(),
    }
}

fn organization(name: &str) -> Account {
    Account {
        id: AccountId::new(),
        name: name.to_owned(),
        created_at: Timestamp::now(),
    }
}

fn session(token_hash: &str, login: LoginId, account: AccountId, ttl_ms: i64) -> NewSession {
    let now = Timestamp::now();
    NewSession {
        token_hash: token_hash.to_owned(),
        login_id: login,
        account_id: account,
        created_at: now,
        expires_at: Timestamp::from_millis(now.as_millis() + ttl_ms),
    }
}

fn later(ms: i64) -> Timestamp {
    Timestamp::from_millis(Timestamp::now().as_millis() + ms)
}

async fn sign_up_creates_the_organization_its_key_and_its_owner(backend: Backend) {
    let f = Fixture::new(backend).await;
    let ada = login("Ada@Example.com");
    let org = organization("Ada's <b>org</b>");
    let first = key(org.id);
    f.store.sign_up(&ada, &org, &first).await.unwrap();

    let found = f.store.find_login(&ada.email).await.unwrap().unwrap();
    assert_eq!(found.login.id, ada.id);
    assert_eq!(found.login.email.as_str(), "ada@example.com");
    assert_eq!(found.password_hash, ada.password_hash);
    assert_eq!(
        f.store.get_account(org.id).await.unwrap(),
        Some(org.clone())
    );
    let keys = f.store.list_api_keys(org.id).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].name, "test key");
    let members = f.store.list_members(org.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].login_id, members[0].role),
        (ada.id, Role::Owner)
    );
    assert_eq!(
        f.store.memberships(ada.id).await.unwrap(),
        vec![(org.clone(), Role::Owner)]
    );

    // The same address again (in other capitals) is a conflict that leaves nothing behind.
    let again = login("ADA@example.com");
    let other = organization("Second");
    let refused = f.store.sign_up(&again, &other, &key(other.id)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(Entity::Login))),
        "{refused:?}"
    );
    assert_eq!(f.store.get_account(other.id).await.unwrap(), None);
    assert!(f
        .store
        .find_login(&Email::parse("nobody@example.com").unwrap())
        .await
        .unwrap()
        .is_none());

    // Keys record their last use, never moving back.
    f.store.touch_api_key(first.id, later(0)).await.unwrap();
    f.store
        .touch_api_key(first.id, Timestamp::from_millis(1))
        .await
        .unwrap();
    let used = f.store.list_api_keys(org.id).await.unwrap()[0].last_used_at;
    assert!(used.is_some_and(|t| t.as_millis() > 1));
}

async fn sessions_expire_slide_and_end(backend: Backend) {
    let f = Fixture::new(backend).await;
    let ada = login("ada@example.com");
    let org = organization("Org");
    f.store.sign_up(&ada, &org, &key(org.id)).await.unwrap();
    let elsewhere = f.account().await;

    f.store
        .create_session(&session("live", ada.id, org.id, 60_000))
        .await
        .unwrap();
    f.store
        .create_session(&session("stale", ada.id, org.id, -1))
        .await
        .unwrap();
    let now = Timestamp::now();
    let access = f
        .store
        .session_access("live", Some(org.id), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(access.login_id, ada.id);
    assert_eq!(access.current_account, Some(org.id));
    assert_eq!(access.role, Some(Role::Owner));
    let foreign = f
        .store
        .session_access("live", Some(elsewhere), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(foreign.role, None, "not a member of another organization");
    assert_eq!(
        f.store
            .session_access("stale", Some(org.id), now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        f.store
            .session_access("nope", Some(org.id), now)
            .await
            .unwrap(),
        None
    );

    // Sliding: the expiry moves forward, never back.
    f.store
        .extend_session("live", later(3_600_000))
        .await
        .unwrap();
    f.store.extend_session("live", later(1_000)).await.unwrap();
    let moved = f
        .store
        .session_access("live", None, now)
        .await
        .unwrap()
        .unwrap();
    assert!(moved.expires_at.as_millis() > later(3_000_000).as_millis());

    assert_eq!(
        f.store
            .delete_expired_sessions(Timestamp::now())
            .await
            .unwrap(),
        1
    );
    f.store.delete_session("live").await.unwrap();
    assert_eq!(
        f.store.session_access("live", None, now).await.unwrap(),
        None
    );
}

async fn a_password_change_ends_every_session(backend: Backend) {
    let f = Fixture::new(backend).await;
    let ada = login("ada@example.com");
    let org = organization("Org");
    f.store.sign_up(&ada, &org, &key(org.id)).await.unwrap();
    for token in ["one", "two"] {
        f.store
            .create_session(&session(token, ada.id, org.id, 60_000))
            .await
            .unwrap();
    }
    f.store.set_password(ada.id, "$argon2id$new").await.unwrap();
    for token in ["one", "two"] {
        let access = f.store.session_access(token, None, Timestamp::now()).await;
        assert_eq!(access.unwrap(), None, "{token}");
    }
    let found = f.store.find_login(&ada.email).await.unwrap().unwrap();
    assert_eq!(found.password_hash, "$argon2id$new");
    let missing = f.store.set_password(LoginId::new(), "x").await;
    assert!(matches!(missing, Err(StoreError::NotFound(Entity::Login))));
}

async fn invitations_are_used_once_and_expire(backend: Backend) {
    let f = Fixture::new(backend).await;
    let owner = login("owner@example.com");
    let org = organization("Org");
    f.store.sign_up(&owner, &org, &key(org.id)).await.unwrap();
    let invite = |hash: &str, role: Role, ttl_ms: i64| NewInvitation {
        id: InvitationId::new(),
        token_hash: hash.to_owned(),
        account_id: org.id,
        role,
        created_at: Timestamp::now(),
        expires_at: later(ttl_ms),
    };
    let viewer_invite = f
        .store
        .create_invitation(&invite("v", Role::Viewer, 60_000))
        .await
        .unwrap();
    f.store
        .create_invitation(&invite("old", Role::Admin, -1))
        .await
        .unwrap();
    let pending = f
        .store
        .list_invitations(org.id, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(pending, vec![viewer_invite.clone()]);

    let bob = login("bob@example.com");
    f.store.create_login(&bob).await.unwrap();
    let used = f
        .store
        .accept_invitation("v", bob.id, Timestamp::now())
        .await
        .unwrap();
    assert_eq!((used.id, used.role), (viewer_invite.id, Role::Viewer));
    let members = f.store.list_members(org.id).await.unwrap();
    assert!(members
        .iter()
        .any(|m| m.login_id == bob.id && m.role == Role::Viewer));

    // Replayed, expired and unknown links all fail alike.
    for hash in ["v", "old", "unknown"] {
        let again = f
            .store
            .accept_invitation(hash, bob.id, Timestamp::now())
            .await;
        assert!(
            matches!(again, Err(StoreError::NotFound(Entity::Invitation))),
            "{hash}"
        );
    }
    assert!(f
        .store
        .list_invitations(org.id, Timestamp::now())
        .await
        .unwrap()
        .is_empty());
    let found = f.store.find_invitation("v").await.unwrap().unwrap();
    assert!(found.used_at.is_some());

    // A member invited again keeps the higher role.
    f.store
        .create_invitation(&invite("a", Role::Admin, 60_000))
        .await
        .unwrap();
    f.store
        .accept_invitation("a", bob.id, Timestamp::now())
        .await
        .unwrap();
    let role = |members: Vec<collabkit::domain::Member>| {
        members
            .into_iter()
            .find(|m| m.login_id == bob.id)
            .map(|m| m.role)
    };
    assert_eq!(
        role(f.store.list_members(org.id).await.unwrap()),
        Some(Role::Admin)
    );
    let pending = f
        .store
        .create_invitation(&invite("gone", Role::Viewer, 60_000))
        .await
        .unwrap();
    f.store.delete_invitation(org.id, pending.id).await.unwrap();
    let deleted = f
        .store
        .accept_invitation("gone", bob.id, Timestamp::now())
        .await;
    assert!(matches!(
        deleted,
        Err(StoreError::NotFound(Entity::Invitation))
    ));
}

async fn an_organization_keeps_an_owner(backend: Backend) {
    let f = Fixture::new(backend).await;
    let owner = login("owner@example.com");
    let org = organization("Org");
    f.store.sign_up(&owner, &org, &key(org.id)).await.unwrap();
    let refused = f.store.set_member(org.id, owner.id, Role::Viewer).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid { .. })),
        "{refused:?}"
    );
    let refused = f.store.remove_member(org.id, owner.id).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid { .. })),
        "{refused:?}"
    );

    let second = login("second@example.com");
    f.store.create_login(&second).await.unwrap();
    f.store
        .set_member(org.id, second.id, Role::Owner)
        .await
        .unwrap();
    f.store.remove_member(org.id, owner.id).await.unwrap();
    let members = f.store.list_members(org.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].login_id, second.id);
    let missing = f.store.remove_member(org.id, owner.id).await;
    assert!(matches!(missing, Err(StoreError::NotFound(Entity::Member))));
    let nobody = f
        .store
        .set_member(org.id, LoginId::new(), Role::Viewer)
        .await;
    assert!(matches!(nobody, Err(StoreError::NotFound(Entity::Login))));
}

async fn deleting_an_organization_deletes_what_it_holds(backend: Backend) {
    let f = Fixture::new(backend).await;
    let owner = login("owner@example.com");
    let org = organization("Org");
    f.store.sign_up(&owner, &org, &key(org.id)).await.unwrap();
    let room = f.room(org.id).await;
    f.user(room, "Alice").await;
    f.store
        .create_session(&session("s", owner.id, org.id, 60_000))
        .await
        .unwrap();
    let other = f.room(f.account().await).await;
    let online = f
        .store
        .online_counts(
            org.id,
            &[
                room.room_id,
                other.room_id,
                collabkit::domain::RoomId::new(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        online,
        vec![(room.room_id, 0)],
        "another account's room is left out"
    );
    assert!(f.store.online_counts(org.id, &[]).await.unwrap().is_empty());
    let renamed = f.store.rename_account(org.id, "Renamed").await.unwrap();
    assert_eq!(renamed.name, "Renamed");

    f.store.delete_account(org.id).await.unwrap();
    assert_eq!(f.store.get_account(org.id).await.unwrap(), None);
    assert!(f.store.list_api_keys(org.id).await.unwrap().is_empty());
    assert!(f.store.list_members(org.id).await.unwrap().is_empty());
    let id = org.id;
    assert_eq!(
        f.count(&format!(
            "SELECT COUNT(*) FROM users WHERE account_id = '{id}'"
        ))
        .await,
        0
    );
    assert_eq!(
        f.count(&format!(
            "SELECT COUNT(*) FROM rooms WHERE account_id = '{id}'"
        ))
        .await,
        0
    );
    // The login and its session stay, pointing at no organization.
    let access = f
        .store
        .session_access("s", None, Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(access.current_account, None);
    let again = f.store.delete_account(org.id).await;
    assert!(matches!(again, Err(StoreError::NotFound(Entity::Account))));
}
