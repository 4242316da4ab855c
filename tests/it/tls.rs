//! Serving HTTPS directly (rustls): the RP library completes a flow over TLS,
//! and cookies get `Secure` and the `__Host-` prefix.

use openidconnect::core::CoreProviderMetadata;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreRevocableToken};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    RedirectUrl, RevocationUrl, TokenResponse,
};

use crate::helpers::*;

#[tokio::test]
async fn https_flow_with_secure_host_cookies_and_revocation() {
    install_crypto();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let pem = certified.cert.pem();
    let tls_dir = tempfile::tempdir().unwrap();
    let (cert, key) = (tls_dir.path().join("cert.pem"), tls_dir.path().join("key.pem"));
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let app = TestApp::builder()
        .settings(|s| {
            s.server.tls_cert = Some(cert.clone());
            s.server.tls_key = Some(key.clone());
        })
        .spawn()
        .await;
    assert!(app.base.starts_with("https://"));
    app.add_user("erin").await;
    let secret = app.add_epr("epr").await;

    let root = openidconnect::reqwest::Certificate::from_pem(pem.as_bytes()).unwrap();
    let http = openidconnect::reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let browser = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();

    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &http).await.unwrap();
    let client =
        CoreClient::from_provider_metadata(metadata, ClientId::new("epr".into()), Some(ClientSecret::new(secret)))
            .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
            .set_revocation_url(RevocationUrl::new(app.url("/revoke")).unwrap());

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    // The login form's CSRF cookie is Secure and host-bound.
    let r = browser.get(auth_url.as_str()).send().await.unwrap();
    let login = browser.get(app.url(&location(&r))).send().await.unwrap();
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.starts_with("__Host-wardkey_csrf="), "{set_cookie}");
    assert!(set_cookie.contains("; Secure") && set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));

    let back = app.browser_authorize(&browser, auth_url.as_str(), "erin").await;
    let tokens = client
        .exchange_code(AuthorizationCode::new(query_param(&back, "code").unwrap()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_verifier = client.id_token_verifier().set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    tokens.id_token().unwrap().claims(&id_verifier, &nonce).unwrap();

    // RFC 7009 revocation through the library (it insists on https).
    let refresh = tokens.refresh_token().unwrap().clone();
    client.revoke_token(CoreRevocableToken::from(refresh.clone())).unwrap().request_async(&http).await.unwrap();
    assert!(client.exchange_refresh_token(&refresh).unwrap().request_async(&http).await.is_err());
}
