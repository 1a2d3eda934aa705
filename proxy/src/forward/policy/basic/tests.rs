use std::time::Instant;

use hipache_schema::routes::policies::next_id;

use super::*;

fn policy(users: &[(&str, String)]) -> Arc<BasicAuth> {
    Arc::new(BasicAuth {
        id: next_id(),
        realm: "Staff only".to_owned(),
        users: users
            .iter()
            .map(|(u, h)| ((*u).to_owned(), h.clone()))
            .collect(),
    })
}

fn basic(user: &str, password: &str) -> HeaderMap {
    let token = data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes());
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {token}")).expect("value"),
    );
    h
}

fn bcrypt_hash(password: &str, cost: u32) -> String {
    bcrypt::hash(password, cost).expect("bcrypt")
}

#[tokio::test]
async fn right_credentials_pass_and_the_rest_get_a_challenge() {
    let auth = policy(&[
        ("alice", bcrypt_hash("s3cret", 4)),
        ("bob", "{SHA}zDWP8f33jIgtzBU4G57UXp/L1Eg=".to_owned()),
    ]);
    assert!(check(&auth, &basic("alice", "s3cret")).await.is_ok());
    assert!(check(&auth, &basic("bob", "carol-secret")).await.is_ok());
    for (headers, reason) in [
        (basic("alice", "wrong"), "bad credentials"),
        (basic("alice", ""), "bad credentials"),
        (basic("mallory", "s3cret"), "bad credentials"),
        (basic("bob", "s3cret"), "bad credentials"),
        (HeaderMap::new(), "no credentials"),
    ] {
        let d = check(&auth, &headers).await.expect_err("refused");
        assert_eq!((d.status, d.reason), (StatusCode::UNAUTHORIZED, reason));
        assert_eq!(
            d.headers[header::WWW_AUTHENTICATE],
            "Basic realm=\"Staff only\", charset=\"UTF-8\""
        );
    }
}

#[test]
fn credentials_are_parsed_as_rfc_7617_says() {
    let v = |s: &str| HeaderValue::from_str(s).expect("value");
    // "alice:pa:ss" (a colon in the password is the password's).
    assert_eq!(
        credentials(&v("Basic YWxpY2U6cGE6c3M=")),
        Some(("alice".to_owned(), b"pa:ss".to_vec()))
    );
    assert_eq!(
        credentials(&v("bAsIc   YWxpY2U6cGE6c3M")),
        Some(("alice".to_owned(), b"pa:ss".to_vec())),
        "scheme in any case, padding optional"
    );
    for bad in [
        "Bearer YWxpY2U6cGE6c3M=",
        "BasicYWxpY2U6cGE6c3M=",
        "Basic",
        "Basic !!!!",
        "Basic YWxpY2U=",
        "Basic YWxpY2U6cGE6c3M===",
    ] {
        assert_eq!(credentials(&v(bad)), None, "{bad}");
    }
    let huge = format!("Basic {}", "A".repeat(MAX_CREDENTIALS));
    assert_eq!(credentials(&v(&huge)), None);
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let auth = policy(&[("bob", "{SHA}zDWP8f33jIgtzBU4G57UXp/L1Eg=".to_owned())]);
    let mut h = basic("bob", "carol-secret");
    let again = h[header::AUTHORIZATION].clone();
    h.append(header::AUTHORIZATION, again);
    let d = check(&auth, &h).await.expect_err("refused");
    assert_eq!(d.reason, "no credentials");
}

#[tokio::test]
async fn a_verified_header_is_not_checked_again() {
    let hash = bcrypt_hash("s3cret", 8);
    let auth = policy(&[("alice", hash)]);
    let headers = basic("alice", "s3cret");
    let first = Instant::now();
    assert!(check(&auth, &headers).await.is_ok());
    let first = first.elapsed();
    let cached = Instant::now();
    for _ in 0..100 {
        assert!(check(&auth, &headers).await.is_ok());
    }
    let cached = cached.elapsed() / 100;
    assert!(
        cached * 20 < first,
        "a cached check ({cached:?}) should cost a small part of a bcrypt one ({first:?})"
    );
    // Failures are never cached: each costs a full check.
    let wrong = basic("alice", "wrong");
    assert!(check(&auth, &wrong).await.is_err());
    let cell = compiled(&auth);
    let p = cell.get().expect("compiled");
    let key = p.cache_key(&wrong[header::AUTHORIZATION]);
    assert!(!p.cache.lock().contains(&key));
}

#[tokio::test]
async fn a_new_document_starts_with_an_empty_cache() {
    let old = policy(&[("alice", bcrypt_hash("old", 4))]);
    assert!(check(&old, &basic("alice", "old")).await.is_ok());
    // The password changed: the document decodes into a new policy.
    let new = policy(&[("alice", bcrypt_hash("new", 4))]);
    assert!(check(&new, &basic("alice", "old")).await.is_err());
    assert!(check(&new, &basic("alice", "new")).await.is_ok());
    // Once the old policy is dropped, its compiled form goes with the next
    // compilation.
    let old_id = old.id;
    drop(old);
    let _ = check(&policy(&[]), &HeaderMap::new()).await;
    assert!(!COMPILED.lock().contains_key(&old_id));
}

#[test]
fn the_cache_is_bounded_and_forgets_the_oldest() {
    let mut v = Verified::default();
    for i in 0..(CACHE_ENTRIES + 10) {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        v.insert(key);
        v.insert(key);
    }
    assert_eq!(v.keys.len(), CACHE_ENTRIES);
    assert_eq!(v.order.len(), CACHE_ENTRIES);
    assert!(!v.contains(&[0u8; 32]), "the oldest went first");
}

#[tokio::test]
async fn unusable_entries_refuse_their_user_only() {
    let auth = policy(&[
        (
            "costly",
            "$2y$20$/rlgThVOdNXqElPtEnovSOw8T82fTyTkyFecDJZdzc191us3g1L6O".to_owned(),
        ),
        ("bob", "{SHA}zDWP8f33jIgtzBU4G57UXp/L1Eg=".to_owned()),
    ]);
    assert!(check(&auth, &basic("costly", "correct horse"))
        .await
        .is_err());
    assert!(check(&auth, &basic("bob", "carol-secret")).await.is_ok());
    let none = policy(&[("x", "{SHA}short".to_owned())]);
    assert!(check(&none, &basic("x", "y")).await.is_err());
}

#[tokio::test]
async fn unknown_users_cost_a_check_like_known_ones() {
    let auth = policy(&[("alice", bcrypt_hash("s3cret", 8))]);
    let known = Instant::now();
    assert!(check(&auth, &basic("alice", "wrong")).await.is_err());
    let known = known.elapsed();
    let unknown = Instant::now();
    assert!(check(&auth, &basic("nobody", "wrong")).await.is_err());
    let unknown = unknown.elapsed();
    assert!(
        unknown * 4 > known,
        "an unknown user ({unknown:?}) is checked against a stand-in like a known one ({known:?})"
    );
}
