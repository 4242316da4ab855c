//! The whole OIDC flow as an EPR app sees it, driven by the `openidconnect`
//! crate (a certified-profile RP library not written here): discovery, code +
//! PKCE, ID token validation, userinfo, refresh rotation, introspection,
//! revocation, RP-initiated logout and `prompt=none` silent re-auth.

use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreJwsSigningAlgorithm, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyAdditionalClaims, EndSessionUrl,
    IdTokenClaims, IntrospectionUrl, IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope, TokenIntrospectionResponse, TokenResponse,
};
use wardkey_core::client::GrantType;
use wardkey_core::keys::SigningAlg;

use crate::helpers::*;

fn rp_http() -> openidconnect::reqwest::Client {
    // RPs should not follow redirects from the OP's back channel (SSRF).
    openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn discover(app: &TestApp) -> ProviderMetadataWithLogout {
    ProviderMetadataWithLogout::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &rp_http())
        .await
        .expect("discovery")
}

fn alg_of(alg: SigningAlg) -> CoreJwsSigningAlgorithm {
    match alg {
        SigningAlg::ES256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        SigningAlg::RS256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        SigningAlg::EdDSA => CoreJwsSigningAlgorithm::EdDsa,
    }
}

#[tokio::test]
async fn full_flow_with_a_real_relying_party() {
    let app = spawn_app().await;
    let user = app.add_user("alice").await;
    let secret = app.add_epr("epr").await;
    let http = rp_http();
    let metadata = discover(&app).await;
    let end_session = metadata.additional_metadata().end_session_endpoint.clone().expect("end_session_endpoint");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new("epr".into()),
        Some(ClientSecret::new(secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
    .set_introspection_url(IntrospectionUrl::new(app.url("/introspect")).unwrap());

    // Code + PKCE through a browser that keeps cookies.
    let browser = no_redirects(true);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let back = app.browser_authorize(&browser, auth_url.as_str(), "alice").await;
    assert_eq!(query_param(&back, "state").as_deref(), Some(csrf.secret().as_str()));
    assert_eq!(query_param(&back, "iss").as_deref(), Some(app.base.as_str()), "RFC 9207 iss");
    let code = query_param(&back, "code").expect("code");
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");

    // The ID token validates in the RP library, at_hash included.
    let verifier = client.id_token_verifier().set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let id_token = tokens.id_token().expect("id_token");
    let claims: &IdTokenClaims<EmptyAdditionalClaims, CoreGenderClaim> = id_token.claims(&verifier, &nonce).unwrap();
    assert_eq!(claims.subject().as_str(), user.id);
    assert_eq!(claims.preferred_username().unwrap().as_str(), "alice");
    assert_eq!(claims.email().unwrap().as_str(), "alice@trust.nhs.uk");
    assert!(claims.auth_time().is_some());
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "urn:wardkey:acr:pwd");
    assert_eq!(claims.auth_method_refs().unwrap()[0].as_str(), "pwd");
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));
    let raw_claims = decode_claims(&id_token.to_string());
    let sid = raw_claims["sid"].as_str().expect("sid claim").to_string();

    // Userinfo.
    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), Some(claims.subject().clone()))
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.name().unwrap().get(None).unwrap().as_str(), "alice name");

    // Introspection.
    let intro = client.introspect(tokens.access_token()).request_async(&http).await.unwrap();
    assert!(intro.active());
    assert_eq!(intro.username(), Some("alice"));

    // Refresh rotates the refresh token; the new ID token keeps auth_time.
    let refresh = tokens.refresh_token().expect("refresh token").clone();
    let rotated = client.exchange_refresh_token(&refresh).unwrap().request_async(&http).await.expect("refresh");
    let refresh2 = rotated.refresh_token().expect("rotated refresh token").clone();
    assert_ne!(refresh.secret(), refresh2.secret());
    let refreshed_claims =
        rotated.id_token().expect("id_token on refresh").claims(&verifier, |_: Option<&Nonce>| Ok(())).unwrap();
    assert_eq!(refreshed_claims.auth_time(), claims.auth_time());

    // prompt=none with the session cookie: a code without a login page.
    let (challenge, verifier2) = PkceCodeChallenge::new_random_sha256();
    let (silent_url, _, nonce2) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_prompt(CoreAuthPrompt::None)
        .set_pkce_challenge(challenge)
        .url();
    let r = browser.get(silent_url.as_str()).send().await.unwrap();
    let back = url::Url::parse(&location(&r)).unwrap();
    let code = query_param(&back, "code").expect("silent code");
    let silent = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier2)
        .request_async(&http)
        .await
        .unwrap();
    let silent_claims = silent.id_token().unwrap().claims(&verifier, &nonce2).unwrap();
    assert_eq!(silent_claims.auth_time(), claims.auth_time(), "no new authentication happened");

    // Revoking the refresh token ends the grant: refresh and introspection
    // fail. (The library refuses to revoke over plain http, so this one
    // request is made by hand, exactly as RFC 7009 §2.1 shows it.)
    let r = app
        .post_form(
            "/revoke",
            &[("token", refresh2.secret()), ("token_type_hint", "refresh_token")],
            Some(("epr", &secret)),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(client.exchange_refresh_token(&refresh2).unwrap().request_async(&http).await.is_err());
    let intro = client.introspect(rotated.access_token()).request_async(&http).await.unwrap();
    assert!(!intro.active());

    // RP-initiated logout with id_token_hint returns to the registered URI.
    let logout_url = LogoutRequest::from(EndSessionUrl::new(end_session.url().to_string()).unwrap())
        .set_id_token_hint(silent.id_token().unwrap())
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(POST_LOGOUT.into()).unwrap())
        .set_state(CsrfToken::new("bye".into()))
        .http_get_url();
    let r = browser.get(logout_url.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), format!("{POST_LOGOUT}?state=bye"));
    assert!(!app.state.sessions.session_alive(&sid).await.unwrap());

    // After logout: silent auth needs a login, and old access tokens are dead.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (silent_url, _, _) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_prompt(CoreAuthPrompt::None)
        .set_pkce_challenge(challenge)
        .url();
    let r = browser.get(silent_url.as_str()).send().await.unwrap();
    let back = url::Url::parse(&location(&r)).unwrap();
    assert_eq!(query_param(&back, "error").as_deref(), Some("login_required"));
    let denied: Result<CoreUserInfoClaims, _> =
        client.user_info(silent.access_token().clone(), None).unwrap().request_async(&http).await;
    assert!(denied.is_err(), "userinfo after logout must fail");
}

fn decode_claims(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn id_tokens_verify_for_every_signing_algorithm() {
    let app = spawn_app().await;
    app.add_user("bob").await;
    let http = rp_http();
    for alg in SigningAlg::ALL {
        let id = format!("epr-{}", alg.as_str().to_lowercase());
        let secret = app.add_client(&id, Auth::Secret, &[GrantType::AuthorizationCode], alg).await.unwrap();
        let client = CoreClient::from_provider_metadata(
            discover(&app).await,
            ClientId::new(id),
            Some(ClientSecret::new(secret)),
        )
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (auth_url, _, nonce) = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge)
            .url();
        let back = app.browser_authorize(&no_redirects(true), auth_url.as_str(), "bob").await;
        let tokens = client
            .exchange_code(AuthorizationCode::new(query_param(&back, "code").unwrap()))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .unwrap();
        assert!(tokens.refresh_token().is_none(), "no refresh token without the refresh_token grant");
        let verifier = client.id_token_verifier().set_allowed_algs(vec![alg_of(alg)]);
        let id_token = tokens.id_token().unwrap();
        let claims = id_token.claims(&verifier, &nonce).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        let expected = AccessTokenHash::from_token(
            tokens.access_token(),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(claims.access_token_hash(), Some(&expected), "{alg:?} at_hash");
    }
}

#[tokio::test]
async fn public_client_with_pkce_and_client_credentials() {
    let app = spawn_app().await;
    app.add_user("carol").await;
    app.add_client("spa", Auth::Public, &[GrantType::AuthorizationCode, GrantType::RefreshToken], SigningAlg::ES256)
        .await;
    let http = rp_http();
    let client = CoreClient::from_provider_metadata(discover(&app).await, ClientId::new("spa".into()), None)
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let back = app.browser_authorize(&no_redirects(true), auth_url.as_str(), "carol").await;
    let tokens = client
        .exchange_code(AuthorizationCode::new(query_param(&back, "code").unwrap()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("public client code exchange");
    let verifier = client.id_token_verifier().set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    tokens.id_token().unwrap().claims(&verifier, &nonce).unwrap();
    let refresh = tokens.refresh_token().unwrap();
    client.exchange_refresh_token(refresh).unwrap().request_async(&http).await.expect("public refresh");

    // An EPR back end: client credentials, no user, no ID token.
    let secret =
        app.add_client("lab-backend", Auth::Secret, &[GrantType::ClientCredentials], SigningAlg::ES256).await.unwrap();
    let backend = CoreClient::from_provider_metadata(
        discover(&app).await,
        ClientId::new("lab-backend".into()),
        Some(ClientSecret::new(secret)),
    );
    let tokens = backend.exchange_client_credentials().unwrap().request_async(&http).await.expect("client credentials");
    assert!(tokens.id_token().is_none());
    assert!(tokens.refresh_token().is_none());
    let claims = decode_claims(tokens.access_token().secret());
    assert_eq!(claims["sub"], "lab-backend");
}

#[tokio::test]
async fn data_and_keys_survive_a_restart() {
    let app = spawn_app().await;
    app.add_user("dave").await;
    let secret = app.add_epr("epr").await;
    let jwks_before: serde_json::Value = app.get("/jwks").await.json().await.unwrap();
    let tokens = login_and_redeem(&app, "epr", &secret, "dave").await;
    let stopped = app.stop();

    let app = stopped.restart().spawn().await;
    let jwks_after: serde_json::Value = app.get("/jwks").await.json().await.unwrap();
    assert_eq!(jwks_before, jwks_after, "signing keys are kept in the store");
    // The user, password and client are still there.
    let again = login_and_redeem(&app, "epr", &secret, "dave").await;
    assert_eq!(
        decode_claims(again["id_token"].as_str().unwrap())["sub"],
        decode_claims(tokens["id_token"].as_str().unwrap())["sub"]
    );
}

#[tokio::test]
async fn discovery_is_truthful_and_ops_endpoints_answer() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get("/.well-known/openid-configuration").await.json().await.unwrap();
    assert_eq!(doc["issuer"], app.base);
    assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "end_session_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
    ] {
        let url = doc[endpoint].as_str().unwrap();
        assert!(url.starts_with(&app.base), "{endpoint} on the issuer");
    }
    let jwks: serde_json::Value = app.get("/jwks").await.json().await.unwrap();
    let algs: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["alg"].as_str().unwrap()).collect();
    for alg in ["ES256", "RS256", "EdDSA"] {
        assert!(algs.contains(&alg), "{alg} key published");
    }
    assert!(jwks["keys"].as_array().unwrap().iter().all(|k| k.get("d").is_none()), "no private parts");
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("wardkey_http_request_duration_seconds"), "{metrics}");
    // Login page: not framable, works without JavaScript.
    let page = app.get("/login").await;
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(page.headers().get("access-control-allow-origin").is_none(), "no CORS on /login");
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"username\"") && html.contains("name=\"password\"") && !html.contains("<script"));
}
