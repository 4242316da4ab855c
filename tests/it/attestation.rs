//! A trust's allow-list of security-key models (`webauthn.approved_models`)
//! without a browser: security keys made in software that answer the
//! server's real registration ceremony with a `packed` attestation (WebAuthn
//! L2 §8.2) signed by a certificate from a test CA. A key of an approved
//! model is added and then signs in; another model, a CA that is not on the
//! list, and a key that sends no attestation are refused in words and
//! audited; passkeys can be turned off; and a server without the list, and
//! keys added before it, work as before. The same software keys, added
//! without a browser, also drive the security-key step-up at a workstation.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ciborium::Value as Cbor;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SigningKey,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;
use wardkey_core::clock::Clock;
use wardkey_idp::config::ApprovedModel;

use crate::browser::{SoftKey, on_localhost, spawn_on_localhost_with};
use crate::helpers::*;

/// The model the trust approves in these tests.
pub(crate) const APPROVED: &str = "6d44ba9b-f6ec-2e49-b930-0c8fe920cb73";
/// Another model, attested by the same CA.
const OTHER: &str = "2fc0579f-8113-47ea-b116-bb5a8db9202a";

/// `id-fido-gen-ce-aaguid`: the attestation certificate extension that
/// names the model (WebAuthn L2 §8.2.1).
const FIDO_GEN_CE_AAGUID: &[u64] = &[1, 3, 6, 1, 4, 1, 45724, 1, 1, 4];

/// An attestation CA, as a vendor or a trust that provisions its own keys
/// runs one.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, for `webauthn.approved_models[].ca`.
    pub(crate) pem: String,
}

impl TestCa {
    /// A CA named `name`. Two CAs made with the same name differ only in
    /// their key, as a forged CA would.
    pub(crate) fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "GB");
        params.distinguished_name.push(DnType::OrganizationName, "Test Trust");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // webauthn-rs checks the CA's key usage allows signing certificates.
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { issuer: Issuer::new(params, key), pem }
    }

    /// Write the CA certificate to `dir`; its path.
    pub(crate) fn write(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join(format!("ca-{}.pem", rand::random::<u32>()));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// An attestation certificate for model `aaguid` and its key, meeting
    /// WebAuthn L2 §8.2.1: version 3; subject C, O, OU "Authenticator
    /// Attestation" and CN; basic constraints with CA false; the AAGUID as a
    /// non-critical OCTET STRING extension.
    fn attestation_certificate(&self, aaguid: &str) -> (Vec<u8>, KeyPair) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "GB");
        params.distinguished_name.push(DnType::OrganizationName, "Test Trust");
        params.distinguished_name.push(DnType::OrganizationalUnitName, "Authenticator Attestation");
        params.distinguished_name.push(DnType::CommonName, "Test key batch 1");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let mut octet_string = vec![0x04, 16];
        octet_string.extend_from_slice(uuid_bytes(aaguid).as_slice());
        params.custom_extensions = vec![CustomExtension::from_oid_content(FIDO_GEN_CE_AAGUID, octet_string)];
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (certificate.der().to_vec(), key)
    }
}

fn uuid_bytes(aaguid: &str) -> [u8; 16] {
    *uuid::Uuid::parse_str(aaguid).unwrap().as_bytes()
}

/// How a software key attests.
enum Attestation {
    /// `packed` with this certificate (DER) and its key.
    Packed(Vec<u8>, KeyPair),
    /// `none`: what a key that will not say its model (or a browser that
    /// strips attestation) sends.
    None,
}

/// A FIDO2 security key in software: a P-256 credential key pair, the model
/// it claims, and how it proves it.
struct TestKey {
    aaguid: [u8; 16],
    attestation: Attestation,
    pkcs8: Vec<u8>,
    credential_id: Vec<u8>,
    /// Sets the backup-eligible flag: a key whose private key may be
    /// synced (WebAuthn L2 §6.1.3), however well attested.
    backup_eligible: bool,
}

impl TestKey {
    /// A key of model `aaguid` whose attestation certificate `ca` issued.
    fn attested_by(ca: &TestCa, aaguid: &str) -> TestKey {
        let (certificate, key) = ca.attestation_certificate(aaguid);
        TestKey::new(aaguid, Attestation::Packed(certificate, key))
    }

    fn new(aaguid: &str, attestation: Attestation) -> TestKey {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap().as_ref().to_vec();
        let credential_id = rand::random::<[u8; 32]>().to_vec();
        TestKey { aaguid: uuid_bytes(aaguid), attestation, pkcs8, credential_id, backup_eligible: false }
    }

    fn key_pair(&self) -> EcdsaKeyPair {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.pkcs8).unwrap()
    }

    /// The credential public key as a COSE_Key (RFC 9053 §7.1.1: EC2,
    /// ES256, P-256, x, y).
    fn cose_key(&self) -> Cbor {
        let point = self.key_pair().public_key().as_ref().to_vec();
        assert_eq!(point.len(), 65, "an uncompressed P-256 point");
        Cbor::Map(vec![
            (1.into(), 2.into()),
            (3.into(), (-7).into()),
            ((-1).into(), 1.into()),
            ((-2).into(), Cbor::Bytes(point[1..33].to_vec())),
            ((-3).into(), Cbor::Bytes(point[33..].to_vec())),
        ])
    }

    /// The answer to registration options `options` (the `options` of
    /// `/account/keys/register/start`), made at `origin`: a
    /// `RegisterPublicKeyCredential` as a browser sends it.
    fn register(&self, options: &Value, origin: &str) -> Value {
        let b64url = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let rp_id = options["publicKey"]["rp"]["id"].as_str().unwrap();
        let client_data = json!({
            "type": "webauthn.create",
            "challenge": options["publicKey"]["challenge"],
            "origin": origin,
            "crossOrigin": false,
        })
        .to_string();
        // authenticatorData (WebAuthn L2 §6.1): rpIdHash, flags (user
        // present, user verified, attested credential data), signCount,
        // then the attested credential data (§6.5.1): AAGUID, credential
        // id length and id, the COSE public key.
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        auth_data.push(0x01 | 0x04 | 0x40 | if self.backup_eligible { 0x08 } else { 0 });
        auth_data.extend_from_slice(&0u32.to_be_bytes());
        auth_data.extend_from_slice(&self.aaguid);
        auth_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        ciborium::into_writer(&self.cose_key(), &mut auth_data).unwrap();
        let (format, statement) = match &self.attestation {
            // §8.2: sig over authenticatorData || clientDataHash with the
            // attestation certificate's key; x5c holds that certificate.
            Attestation::Packed(certificate, key) => {
                let mut signed = auth_data.clone();
                signed.extend_from_slice(&Sha256::digest(client_data.as_bytes()));
                let statement = Cbor::Map(vec![
                    ("alg".into(), (-7).into()),
                    ("sig".into(), Cbor::Bytes(key.sign(&signed).unwrap())),
                    ("x5c".into(), Cbor::Array(vec![Cbor::Bytes(certificate.clone())])),
                ]);
                ("packed", statement)
            }
            Attestation::None => ("none", Cbor::Map(vec![])),
        };
        let object = Cbor::Map(vec![
            ("fmt".into(), format.into()),
            ("attStmt".into(), statement),
            ("authData".into(), Cbor::Bytes(auth_data)),
        ]);
        let mut attestation_object = Vec::new();
        ciborium::into_writer(&object, &mut attestation_object).unwrap();
        json!({
            "id": b64url(&self.credential_id),
            "rawId": b64url(&self.credential_id),
            "type": "public-key",
            "response": {
                "attestationObject": b64url(&attestation_object),
                "clientDataJSON": b64url(client_data.as_bytes()),
                "transports": ["usb"],
            },
            "extensions": {},
        })
    }

    /// The same key, for signing in (the browser tests' software key).
    fn soft_key(&self, user_id: &str) -> SoftKey {
        SoftKey {
            credential_id: self.credential_id.clone(),
            user_handle: wardkey_idp::passkeys::user_handle(user_id).as_bytes().to_vec(),
            key: self.key_pair(),
            counter: 0,
        }
    }
}

/// A browser signed in as `username` with a password.
async fn signed_in(app: &TestApp, username: &str) -> reqwest::Client {
    let browser = no_redirects(true);
    if app.state.store.client("web").await.unwrap().is_none() {
        app.add_epr("web").await;
    }
    let (url, _) = authorize_url(app, "web", &[]);
    app.browser_authorize(&browser, &url, username).await;
    browser
}

async fn post_json(app: &TestApp, browser: &reqwest::Client, path: &str, body: Value) -> reqwest::Response {
    browser.post(app.url(path)).json(&body).send().await.unwrap()
}

/// Start a security-key registration named `name`: its ceremony and options.
async fn start(app: &TestApp, browser: &reqwest::Client, name: &str) -> (Value, Value) {
    let r =
        post_json(app, browser, "/account/keys/register/start", json!({"kind": "security_key", "name": name})).await;
    assert_eq!(r.status(), 200);
    let started: Value = r.json().await.unwrap();
    (started["ceremony"].clone(), started["options"].clone())
}

/// Add `key` as security key `name` through the real ceremony; the
/// finish answer.
async fn add(app: &TestApp, browser: &reqwest::Client, key: &TestKey, name: &str) -> reqwest::Response {
    let (ceremony, options) = start(app, browser, name).await;
    let credential = key.register(&options, &app.issuer);
    post_json(app, browser, "/account/keys/register/finish", json!({"ceremony": ceremony, "credential": credential}))
        .await
}

/// Sign in with `key` alone (no session): the finish status.
async fn sign_in(app: &TestApp, key: &mut SoftKey) -> u16 {
    let client = no_redirects(true);
    let started: Value = post_json(app, &client, "/webauthn/login/start", json!({})).await.json().await.unwrap();
    let credential = key.assert(&started["options"], &app.issuer);
    let r = post_json(
        app,
        &client,
        "/webauthn/login/finish",
        json!({"ceremony": started["ceremony"], "credential": credential}),
    )
    .await;
    r.status().as_u16()
}

/// The refusal a clinician sees, checked word for word.
async fn assert_not_approved(r: reqwest::Response) {
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "key_not_approved", "{body}");
    assert_eq!(body["message"], "This key is not one your trust has approved. Use a key issued by IT.");
}

/// `aaguid` approved with the CA certificate in `ca`.
pub(crate) fn approved_model(ca: std::path::PathBuf, aaguid: &str) -> ApprovedModel {
    ApprovedModel { ca, aaguid: aaguid.into(), description: "Trust FIDO2 badge".into() }
}

#[tokio::test]
async fn only_security_keys_of_an_approved_model_can_be_added() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Test Trust key CA");
    let ca_file = ca.write(dir.path());
    let app = spawn_on_localhost_with(|s| {
        s.webauthn.approved_models = vec![approved_model(ca_file.clone(), APPROVED)];
        s.webauthn.passkeys = false;
    })
    .await;
    let uma = app.add_user("uma").await;
    let browser = app.invited("uma").await;

    // The ceremony asks the key to prove its model.
    let (_, options) = start(&app, &browser, "probe").await;
    assert_eq!(options["publicKey"]["attestation"], "direct", "{options}");

    // A key of the approved model, attested by the trust's CA: added, and
    // it then signs in at the security-key level.
    let approved = TestKey::attested_by(&ca, APPROVED);
    let r = add(&app, &browser, &approved, "Badge 1").await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let stored = app.state.store.webauthn_credentials(&uma.id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, approved.credential_id);
    let mut badge = approved.soft_key(&uma.id);
    assert_eq!(sign_in(&app, &mut badge).await, 200);

    // The same CA, another model: refused, and audited with the AAGUID it
    // claimed.
    let other_model = TestKey::attested_by(&ca, OTHER);
    assert_not_approved(add(&app, &browser, &other_model, "Badge 2").await).await;
    // A CA that is not on the list, though it copies the trust CA's name
    // and signs the approved model's AAGUID.
    let forged = TestCa::new("Test Trust key CA");
    assert_not_approved(add(&app, &browser, &TestKey::attested_by(&forged, APPROVED), "Badge 3").await).await;
    let elsewhere = TestCa::new("Another vendor CA");
    assert_not_approved(add(&app, &browser, &TestKey::attested_by(&elsewhere, APPROVED), "Badge 4").await).await;
    // A key that will not say what it is (the browser was told not to
    // share its make and model): refused, with how to get past that.
    let r = add(&app, &browser, &TestKey::new(APPROVED, Attestation::None), "Badge 5").await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "key_not_approved", "{body}");
    assert!(body["message"].as_str().unwrap().contains("allow it to see the key's make and model"), "{body}");
    // None of them was stored; the approved key is still the only one.
    assert_eq!(app.state.store.webauthn_credentials(&uma.id).await.unwrap().len(), 1);

    let audit = app.state.store.recent_audit(100).await.unwrap();
    let refusals: Vec<_> = audit.iter().filter(|e| e.event == "webauthn.key_not_approved").collect();
    assert_eq!(refusals.len(), 4, "{refusals:?}");
    assert!(refusals.iter().all(|e| e.subject == "uma"));
    assert!(refusals.iter().any(|e| e.detail["aaguid"] == OTHER && e.detail["name"] == "Badge 2"), "{refusals:?}");
    assert!(refusals.iter().any(|e| e.detail["format"] == "none"), "{refusals:?}");
    let forged_refusal = refusals.iter().find(|e| e.detail["name"] == "Badge 3").unwrap();
    assert_eq!(forged_refusal.detail["aaguid"], APPROVED);
    assert!(forged_refusal.detail["reason"].as_str().unwrap().contains("not trusted"), "{forged_refusal:?}");
    assert_eq!(audit.iter().filter(|e| e.event == "webauthn.register").count(), 1);

    // Passkeys are off: refused before any ceremony, in words.
    let r =
        post_json(&app, &browser, "/account/keys/register/start", json!({"kind": "passkey", "name": "Phone"})).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "passkeys_off", "{body}");
    assert!(body["message"].as_str().unwrap().contains("does not allow passkeys"), "{body}");
    // The page offers security keys only, and says why.
    let page = browser.get(app.url("/account/keys")).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("value=\"passkey\""), "{page}");
    assert!(page.contains("does not allow passkeys") && page.contains("approved"), "{page}");
}

#[tokio::test]
async fn without_a_list_any_key_is_added_and_keys_added_before_a_list_keep_working() {
    // No list: no attestation is asked for, any model and passkeys are
    // accepted, but nothing vouches for a "security key": it is recorded,
    // and signs in, as a passkey (AAL2).
    let app = spawn_on_localhost_with(|_| {}).await;
    let vic = app.add_user("vic").await;
    let browser = app.invited("vic").await;
    let (_, options) = start(&app, &browser, "probe").await;
    assert_eq!(options["publicKey"]["attestation"], "none", "{options}");
    let unlisted = TestKey::new(OTHER, Attestation::None);
    let r = add(&app, &browser, &unlisted, "Old key").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["kind"], "passkey", "chosen as a security key, recorded as what it is: {body}");
    let stored = app.state.store.webauthn_credentials(&vic.id).await.unwrap();
    assert_eq!(stored[0].kind, wardkey_store::AuthenticatorKind::Passkey);
    // The same key again: refused in words that say so.
    let r = add(&app, &browser, &unlisted, "Old key again").await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("already registered"), "{body}");
    let r =
        post_json(&app, &browser, "/account/keys/register/start", json!({"kind": "passkey", "name": "Phone"})).await;
    assert_eq!(r.status(), 200);
    let page = browser.get(app.url("/account/keys")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("value=\"passkey\"") && page.contains("signs in as a passkey"), "{page}");

    // The trust adopts a list and turns passkeys off: the key added before
    // still signs in (the policy applies when a key is added).
    let dir = tempfile::tempdir().unwrap();
    let ca_file = TestCa::new("Test Trust key CA").write(dir.path());
    let port = wardkey_testsupport::free_port();
    let mut app = app
        .stop()
        .restart()
        .settings(|s| {
            on_localhost(s, port);
            s.webauthn.approved_models = vec![approved_model(ca_file.clone(), APPROVED)];
            s.webauthn.passkeys = false;
        })
        .spawn()
        .await;
    app.base = app.issuer.clone();
    let mut old_key = unlisted.soft_key(&vic.id);
    assert_eq!(sign_in(&app, &mut old_key).await, 200);
    let browser = app.invited("vic").await;
    let r = add(&app, &browser, &TestKey::attested_by(&TestCa::new("Another vendor CA"), OTHER), "New key").await;
    assert_not_approved(r).await;
}

/// With approved models, a key added as a passkey (no model checked)
/// still signs in on the web at the passkey level, but cannot unlock a
/// workstation: that takes a security key of an approved model.
#[tokio::test]
async fn with_approved_models_a_passkey_cannot_unlock_a_workstation() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = TestCa::new("Test Trust key CA").write(dir.path());
    let app =
        spawn_on_localhost_with(|s| s.webauthn.approved_models = vec![approved_model(ca_file.clone(), APPROVED)]).await;
    let ula = app.add_user("ula").await;
    let browser = app.invited("ula").await;
    let r =
        post_json(&app, &browser, "/account/keys/register/start", json!({"kind": "passkey", "name": "Phone"})).await;
    assert_eq!(r.status(), 200);
    let started: Value = r.json().await.unwrap();
    let phone = TestKey::new(OTHER, Attestation::None);
    let credential = phone.register(&started["options"], &app.issuer);
    let r = post_json(
        &app,
        &browser,
        "/account/keys/register/finish",
        json!({"ceremony": started["ceremony"], "credential": credential}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mut passkey = phone.soft_key(&ula.id);
    assert_eq!(sign_in(&app, &mut passkey).await, 200, "the web sign-in is unchanged");

    let ws = crate::tap::TestWorkstation::enrol(&app, "pc", "Ward 1").await;
    let challenge = ws.call(&app, "/tap/key/start", json!({})).await;
    let credential = passkey.assert(&challenge["options"], &app.issuer);
    let r = ws.send(&app, "/tap/key", json!({"ceremony": challenge["ceremony"], "credential": credential})).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("not one your trust has approved"), "{body}");
}

/// Step-up at the ward PC: a badge session gets no token for an
/// application that needs a hardware key; the clinician taps their security
/// key on the same workstation, and the application's token exchange then
/// succeeds at the security-key level.
#[tokio::test]
async fn a_security_key_tap_steps_a_badge_session_up_at_the_workstation() {
    use crate::tap::{TestWorkstation, enrol_badge};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Test Trust key CA");
    let ca_file = ca.write(dir.path());
    let app =
        spawn_on_localhost_with(|s| s.webauthn.approved_models = vec![approved_model(ca_file.clone(), APPROVED)]).await;
    enrol_badge(&app, "rae", "5EA1").await;
    let rae = app.state.store.user_by_username("rae").await.unwrap().unwrap();
    use wardkey_core::client::GrantType;
    use wardkey_core::keys::SigningAlg;
    app.add_client("prescribing", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    let client = app.state.store.client("prescribing").await.unwrap().unwrap();
    app.state.store.remove_client("prescribing").await.unwrap();
    let client = wardkey_core::client::Client { min_acr: Some("urn:wardkey:acr:security-key".into()), ..client };
    app.state.store.create_client(&client).await.unwrap();
    app.sync_directory().await;
    let browser = app.invited("rae").await;
    let badge = TestKey::attested_by(&ca, APPROVED);
    assert_eq!(add(&app, &browser, &badge, "Rae's FIDO2 badge").await.status(), 200);

    let ws = TestWorkstation::enrol(&app, "pc", "Ward 11").await;
    // Badge and PIN: not enough for this application.
    let ticket = crate::tap::tap_in(&app, &ws, "5EA1").await;
    let r = ws.exchange(&app, &ticket, "prescribing").await;
    assert_oauth_error(r, 400, "insufficient_user_authentication").await;

    let mut key = badge.soft_key(&rae.id);
    let challenge = ws.call(&app, "/tap/key/start", json!({})).await;
    let credential = key.assert(&challenge["options"], &app.issuer);
    let answer = ws.call(&app, "/tap/key", json!({"ceremony": challenge["ceremony"], "credential": credential})).await;
    assert_eq!(answer["state"], "active", "{answer}");
    let stepped_up = answer["session_ticket"].as_str().unwrap();
    let r = ws.exchange(&app, stepped_up, "prescribing").await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    let payload = tokens["access_token"].as_str().unwrap().split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["acr"], "urn:wardkey:acr:security-key", "{claims}");
    assert_eq!(claims["amr"], json!(["hwk", "mfa"]), "{claims}");
}

/// The claims of a JWT (not verified: the server's own tokens, read back).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Register client `id` for token exchange, needing at least `min_acr`.
pub(crate) async fn add_exchange_client(app: &TestApp, id: &str, min_acr: Option<&str>) {
    use wardkey_core::client::GrantType;
    use wardkey_core::keys::SigningAlg;
    app.add_client(id, Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    let client = app.state.store.client(id).await.unwrap().unwrap();
    app.state.store.remove_client(id).await.unwrap();
    let client = wardkey_core::client::Client { min_acr: min_acr.map(str::to_string), ..client };
    app.state.store.create_client(&client).await.unwrap();
    app.sync_directory().await;
}

/// An attacker's view of issue 12's "assurance leaks between places": a
/// security-key tap (AAL3) at one ward PC, and a password sign-in in a
/// browser elsewhere. Each place keeps the level it earned: the badge tap at
/// a second PC resumes at badge + PIN (dated by the PIN), and gets nothing
/// from an application that needs a hardware key; the browser's silent
/// sign-in still says password, with its own `auth_time`.
#[tokio::test]
async fn assurance_stays_at_the_place_it_was_earned() {
    use crate::tap::{TestWorkstation, enrol_badge, tap_in};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Test Trust key CA");
    let ca_file = ca.write(dir.path());
    let app =
        spawn_on_localhost_with(|s| s.webauthn.approved_models = vec![approved_model(ca_file.clone(), APPROVED)]).await;
    enrol_badge(&app, "sol", "5010").await;
    let sol = app.state.store.user_by_username("sol").await.unwrap().unwrap();
    add_exchange_client(&app, "prescribing", Some("urn:wardkey:acr:security-key")).await;
    add_exchange_client(&app, "results", None).await;
    let web_secret = app.add_epr("web").await;
    let key = TestKey::attested_by(&ca, APPROVED);
    assert_eq!(add(&app, &app.invited("sol").await, &key, "Sol's key").await.status(), 200);

    // A password sign-in in a browser in the office.
    let office = signed_in(&app, "sol").await;
    let signed_in_at = app.clock.now();
    // Later, badge and PIN at PC 1, then the security key there too.
    app.clock.advance(60);
    let ws1 = TestWorkstation::enrol(&app, "pc1", "Ward 1").await;
    let ws2 = TestWorkstation::enrol(&app, "pc2", "Ward 1").await;
    let pin_ticket = tap_in(&app, &ws1, "5010").await;
    let pin_at = app.clock.now();
    app.clock.advance(60);
    let mut soft = key.soft_key(&sol.id);
    let challenge = ws1.call(&app, "/tap/key/start", json!({})).await;
    let credential = soft.assert(&challenge["options"], &app.issuer);
    let answer = ws1.call(&app, "/tap/key", json!({"ceremony": challenge["ceremony"], "credential": credential})).await;
    assert_eq!(answer["state"], "active", "{answer}");
    let key_ticket = answer["session_ticket"].as_str().unwrap().to_string();
    let r = ws1.exchange(&app, &key_ticket, "prescribing").await;
    assert_eq!(r.status(), 200, "PC 1 reached the security-key level");
    let token: Value = r.json().await.unwrap();
    assert_eq!(claims(token["access_token"].as_str().unwrap())["acr"], "urn:wardkey:acr:security-key");
    // The PIN ticket of PC 1 died with the key tap's new attachment.
    assert_oauth_error(ws1.exchange(&app, &pin_ticket, "results").await, 400, "invalid_grant").await;

    // PC 2: the badge alone resumes the session (PIN grace), at badge + PIN.
    let answer = ws2.call(&app, "/tap", json!({"badge": "5010"})).await;
    assert_eq!(answer["state"], "active", "{answer}");
    let ticket2 = answer["session_ticket"].as_str().unwrap().to_string();
    let refused =
        assert_oauth_error(ws2.exchange(&app, &ticket2, "prescribing").await, 400, "insufficient_user_authentication")
            .await;
    assert!(refused["error_description"].as_str().unwrap().contains("security key"), "{refused}");
    let r = ws2.exchange(&app, &ticket2, "results").await;
    assert_eq!(r.status(), 200);
    let token: Value = r.json().await.unwrap();
    let at_pc2 = claims(token["access_token"].as_str().unwrap());
    assert_eq!(at_pc2["acr"], "urn:wardkey:acr:badge-pin", "{at_pc2}");
    assert_eq!(at_pc2["amr"], json!(["badge", "pin"]), "{at_pc2}");
    assert_eq!(at_pc2["auth_time"], pin_at, "dated by the PIN, not by the key tap at PC 1: {at_pc2}");

    // The office browser: a silent sign-in still says password, as of then.
    let (url, verifier) = authorize_url(&app, "web", &[("prompt", "none")]);
    let r = office.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let back = Url::parse(&location(&r)).unwrap();
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("{back}"));
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let tokens: Value = app.post_form("/token", &form, Some(("web", &web_secret))).await.json().await.unwrap();
    let id_token = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_token["acr"], "urn:wardkey:acr:pwd", "{id_token}");
    assert_eq!(id_token["auth_time"], signed_in_at, "{id_token}");
    // And an application that needs a key gets no silent sign-in there.
    let (url, _) = authorize_url(&app, "web", &[("prompt", "none"), ("acr_values", "urn:wardkey:acr:passkey")]);
    let r = office.get(&url).send().await.unwrap();
    let back = Url::parse(&location(&r)).unwrap();
    assert_eq!(query_param(&back, "error").as_deref(), Some("login_required"), "{back}");
}

/// Issue 12's "key registration" attack: a phished password must not add a
/// key, let alone an AAL3 one. A password session is told to sign in again
/// with a key; a passkey sign-in adds passkeys only while it is recent, and
/// never a security key (that needs a security-key sign-in or an invite);
/// an approved model whose flags say it can be synced is a passkey; and an
/// invite link is spent by its button, not by a mail scanner's GET.
#[tokio::test]
async fn adding_a_key_needs_a_recent_sign_in_as_strong_as_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Test Trust key CA");
    let ca_file = ca.write(dir.path());
    let app =
        spawn_on_localhost_with(|s| s.webauthn.approved_models = vec![approved_model(ca_file.clone(), APPROVED)]).await;
    let pat = app.add_user("pat").await;

    // The attacker with Pat's password.
    let phished = signed_in(&app, "pat").await;
    for kind in ["passkey", "security_key"] {
        let r = post_json(&app, &phished, "/account/keys/register/start", json!({"kind": kind, "name": "Mine"})).await;
        assert_eq!(r.status(), 403, "{kind}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "sign_in_again", "{body}");
        assert!(body["message"].as_str().unwrap().contains("invite link"), "{body}");
    }
    let page = phished.get(app.url("/account/keys")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"sign-in-again\"") && !page.contains("id=\"add-key\""), "{page}");

    // The invite: a GET (a mail scanner) shows the page and spends nothing.
    let token = app.invite("pat").await;
    let scanner = app.http.get(app.url(&format!("/account/invite/{token}"))).send().await.unwrap();
    assert_eq!(scanner.status(), 200);
    assert!(scanner.text().await.unwrap().contains("<form method=\"post\">"));
    let invited = no_redirects(true);
    let r = invited.post(app.url(&format!("/account/invite/{token}"))).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let again = app.http.post(app.url(&format!("/account/invite/{token}"))).send().await.unwrap();
    assert_eq!(again.status(), 400, "spent once");
    // Ten browsers racing one fresh invite: exactly one gets it.
    let token = app.invite("pat").await;
    let url = app.url(&format!("/account/invite/{token}"));
    let racers: Vec<_> = (0..10).map(|_| no_redirects(true)).collect();
    let answers = futures_util::future::join_all(racers.iter().map(|b| b.post(&url).send())).await;
    let won = answers.iter().filter(|r| r.as_ref().unwrap().status() == 303).count();
    assert_eq!(won, 1, "an invite is spent once, however many race for it");

    // With the invite: a passkey, and an approved key that can be synced
    // (backup-eligible), which is recorded as a passkey too.
    let phone = TestKey::new(OTHER, Attestation::None);
    let (ceremony, options) = {
        let r = post_json(&app, &invited, "/account/keys/register/start", json!({"kind": "passkey", "name": "Phone"}))
            .await;
        let started: Value = r.json().await.unwrap();
        (started["ceremony"].clone(), started["options"].clone())
    };
    let credential = phone.register(&options, &app.issuer);
    let r = post_json(
        &app,
        &invited,
        "/account/keys/register/finish",
        json!({"ceremony": ceremony, "credential": credential}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut synced = TestKey::attested_by(&ca, APPROVED);
    synced.backup_eligible = true;
    let r = add(&app, &invited, &synced, "Synced").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["kind"], "passkey", "backup-eligible: not hardware-bound");

    // Signed in with the passkey (AAL2): may add another passkey now, but
    // not a security key; and after the window, nothing.
    let with_passkey = no_redirects(true);
    let mut soft = phone.soft_key(&pat.id);
    let started: Value = post_json(&app, &with_passkey, "/webauthn/login/start", json!({})).await.json().await.unwrap();
    let credential = soft.assert(&started["options"], &app.issuer);
    let r = post_json(
        &app,
        &with_passkey,
        "/webauthn/login/finish",
        json!({"ceremony": started["ceremony"], "credential": credential}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let hardware = TestKey::attested_by(&ca, APPROVED);
    let r = add(&app, &with_passkey, &hardware, "Hardware").await;
    assert_eq!(r.status(), 403, "a passkey sign-in adds no AAL3 key");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "sign_in_again");
    let before = app.state.store.webauthn_credentials(&pat.id).await.unwrap().len();
    app.clock.advance(301);
    let r = post_json(&app, &with_passkey, "/account/keys/register/start", json!({"kind": "passkey", "name": "Late"}))
        .await;
    assert_eq!(r.status(), 403, "the sign-in is too old");
    assert_eq!(app.state.store.webauthn_credentials(&pat.id).await.unwrap().len(), before, "nothing added");
}
