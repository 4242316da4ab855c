//! The seed generator. `scripts/fuzz seeds` runs every target binary with
//! `WARDKEY_FUZZ_WRITE_SEEDS=fuzz/corpus/<target>`: the target's `init`
//! calls [`maybe_write`], which writes the target's seeds there and exits.
//! Seeds that carry signatures are signed with the fixture keys of
//! [`crate::jose`] and [`crate::webauthn`] at the fixed time
//! [`crate::server::NOW`], so they stay valid. ECDSA signatures are
//! randomised, so regenerating changes those files' bytes, not their
//! meaning.

use std::path::Path;

use serde_json::{Value, json};
use wardkey_agent::fido2::ctap2::get_assertion;

use crate::ctap::{self, CardConfig, Recorder};
use crate::jose::{Signer, sign};
use crate::server::*;
use crate::webauthn as wa;

/// The environment variable naming the directory to write seeds to.
pub const ENV: &str = "WARDKEY_FUZZ_WRITE_SEEDS";

/// If [`ENV`] is set, write `target`'s seeds there and exit.
pub fn maybe_write(target: &str) {
    let Some(dir) = std::env::var_os(ENV) else { return };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("create the seed directory");
    let seeds = match target {
        "tap_jws" => tap_jws(),
        "client_assertion" => client_assertion(),
        "forms" => forms(),
        "ctap2_card" => ctap2_card(),
        "ctap2_soft_card" => ctap2_soft_card(),
        "webauthn" => webauthn(),
        "config" => config(),
        other => panic!("no seeds for {other}"),
    };
    for (name, bytes) in &seeds {
        std::fs::write(dir.join(name), bytes).expect("write a seed");
    }
    eprintln!("wrote {} seeds to {}", seeds.len(), dir.display());
    std::process::exit(0);
}

type Seeds = Vec<(String, Vec<u8>)>;

fn with_mode(mode: u8, rest: impl AsRef<[u8]>) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(rest.as_ref());
    v
}

fn envelope(extra: Value) -> Value {
    let mut claims = json!({"iss": WORKSTATION_ID, "aud": ISSUER, "jti": "fuzz-jti-0000000001", "iat": NOW});
    claims.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
    claims
}

fn tap_header(kid: &str) -> Value {
    json!({"alg": "EdDSA", "kid": kid, "typ": "wardkey-tap+jwt"})
}

/// `J` + a compact JWS as sent; `S` + `header\nclaims`, which the target
/// signs with the workstation's key.
fn tap_jws() -> Seeds {
    let ws = |claims: &Value| sign(Signer::Workstation, &tap_header(WORKSTATION_ID), claims);
    let tap = envelope(json!({"badge": BADGE}));
    let mut seeds = vec![
        ("jws-tap-ok".to_string(), with_mode(b'J', ws(&tap))),
        ("jws-tap-badge-colons".into(), with_mode(b'J', ws(&envelope(json!({"badge": "04:a2:3b:1c"}))))),
        (
            "jws-disabled-workstation".into(),
            with_mode(
                b'J',
                sign(
                    Signer::Workstation,
                    &tap_header(DISABLED_WORKSTATION_ID),
                    &envelope(json!({"iss": DISABLED_WORKSTATION_ID, "badge": BADGE})),
                ),
            ),
        ),
        ("jws-stale".into(), with_mode(b'J', ws(&envelope(json!({"badge": BADGE, "iat": NOW - 3600}))))),
        (
            "jws-other-aud".into(),
            with_mode(b'J', ws(&envelope(json!({"badge": BADGE, "aud": "https://elsewhere.example"})))),
        ),
        ("jws-short-jti".into(), with_mode(b'J', ws(&envelope(json!({"badge": BADGE, "jti": "short"}))))),
        ("jws-pin-action".into(), with_mode(b'J', ws(&envelope(json!({"tap_id": "abcdefabcdef", "pin": "246810"}))))),
        (
            "jws-typ-jwt".into(),
            with_mode(
                b'J',
                sign(Signer::Workstation, &json!({"alg": "EdDSA", "kid": WORKSTATION_ID, "typ": "JWT"}), &tap),
            ),
        ),
        ("jws-alg-none".into(), with_mode(b'J', format!("{}.", ws(&tap).rsplit_once('.').expect("jws").0))),
        ("jws-unknown-kid".into(), with_mode(b'J', sign(Signer::Workstation, &tap_header("nobody"), &tap))),
        ("jws-wrong-key".into(), with_mode(b'J', sign(Signer::ClientEd, &tap_header(WORKSTATION_ID), &tap))),
        ("jws-two-parts".into(), with_mode(b'J', "eyJhbGciOiJFZERTQSJ9.e30")),
        ("jws-trailing-space".into(), with_mode(b'J', format!("  {}\n", ws(&tap)))),
    ];
    for (name, header, claims) in [
        ("signed-tap-ok", tap_header(WORKSTATION_ID), tap.clone()),
        ("signed-no-kid", json!({"alg": "EdDSA", "typ": "wardkey-tap+jwt"}), tap.clone()),
        ("signed-other-iss", tap_header(WORKSTATION_ID), envelope(json!({"badge": BADGE, "iss": "wsother"}))),
        ("signed-iat-float", tap_header(WORKSTATION_ID), envelope(json!({"badge": BADGE, "iat": 1.5e9}))),
        ("signed-long-jti", tap_header(WORKSTATION_ID), envelope(json!({"badge": BADGE, "jti": "j".repeat(200)}))),
        ("signed-badge-bad", tap_header(WORKSTATION_ID), envelope(json!({"badge": "zz-not-hex"}))),
    ] {
        seeds.push((name.into(), with_mode(b'S', format!("{header}\n{claims}"))));
    }
    seeds
}

/// The `jti` of the seeds' client assertions.
pub const ASSERTION_JTI: &str = "fuzz-assertion-jti-0001";

fn assertion_claims(id: &str, aud: &str) -> Value {
    json!({"iss": id, "sub": id, "aud": aud, "jti": ASSERTION_JTI, "iat": NOW, "exp": NOW + 60})
}

/// `J` + a client assertion as sent; `S` + `header\nclaims` signed with the
/// client's key (ES256 when the header says so, else Ed25519); `W` + the
/// same signed with the workstation's key.
fn client_assertion() -> Seeds {
    let token = format!("{ISSUER}/token");
    let client = assertion_claims(JWT_CLIENT, &token);
    let ws = assertion_claims(WORKSTATION_ID, &token);
    let ec = json!({"alg": "ES256", "kid": "ec1", "typ": "JWT"});
    let ed = json!({"alg": "EdDSA", "kid": "ed1", "typ": "JWT"});
    let wsh = json!({"alg": "EdDSA", "kid": WORKSTATION_ID, "typ": "JWT"});
    let mut seeds = vec![
        ("jws-es256-ok".to_string(), with_mode(b'J', sign(Signer::ClientEc, &ec, &client))),
        ("jws-eddsa-ok".into(), with_mode(b'J', sign(Signer::ClientEd, &ed, &client))),
        (
            "jws-es256-aud-issuer".into(),
            with_mode(b'J', sign(Signer::ClientEc, &ec, &assertion_claims(JWT_CLIENT, ISSUER))),
        ),
        ("jws-workstation-ok".into(), with_mode(b'J', sign(Signer::Workstation, &wsh, &ws))),
        ("jws-es256-no-kid".into(), with_mode(b'J', sign(Signer::ClientEc, &json!({"alg": "ES256"}), &client))),
        ("jws-hs256".into(), with_mode(b'J', sign(Signer::ClientEd, &json!({"alg": "HS256", "kid": "ed1"}), &client))),
        (
            "jws-expired".into(),
            with_mode(
                b'J',
                sign(
                    Signer::ClientEc,
                    &ec,
                    &json!({"iss": JWT_CLIENT, "sub": JWT_CLIENT, "aud": token, "jti": "x", "exp": NOW - 3600}),
                ),
            ),
        ),
        (
            "jws-wrong-sub".into(),
            with_mode(b'J', sign(Signer::ClientEc, &ec, &assertion_claims(SECRET_CLIENT, &token))),
        ),
    ];
    for (name, mode, header, claims) in [
        ("signed-es256", b'S', ec.clone(), client.clone()),
        ("signed-eddsa", b'S', ed.clone(), client.clone()),
        (
            "signed-aud-list",
            b'S',
            ed.clone(),
            json!({"iss": JWT_CLIENT, "sub": JWT_CLIENT, "aud": [token, "x"], "jti": "j1", "exp": NOW + 60, "nbf": NOW}),
        ),
        (
            "signed-far-exp",
            b'S',
            ec.clone(),
            json!({"iss": JWT_CLIENT, "sub": JWT_CLIENT, "aud": token, "jti": "j2", "exp": NOW + 86400}),
        ),
        ("signed-no-jti", b'S', ec, json!({"iss": JWT_CLIENT, "sub": JWT_CLIENT, "aud": token, "exp": NOW + 60})),
        ("signed-workstation", b'W', wsh.clone(), ws.clone()),
        (
            "signed-workstation-aud-array",
            b'W',
            wsh,
            json!({"iss": WORKSTATION_ID, "sub": WORKSTATION_ID, "aud": [ISSUER], "jti": "j3", "exp": NOW + 30, "nbf": NOW + 5}),
        ),
    ] {
        seeds.push((name.into(), with_mode(mode, format!("{header}\n{claims}"))));
    }
    seeds
}

/// A route digit, then a form body or query string (see the target).
fn forms() -> Seeds {
    let token = format!("{ISSUER}/token");
    let ws_assertion = sign(
        Signer::Workstation,
        &json!({"alg": "EdDSA", "kid": WORKSTATION_ID}),
        &assertion_claims(WORKSTATION_ID, &token),
    );
    let client_assertion =
        sign(Signer::ClientEc, &json!({"alg": "ES256", "kid": "ec1"}), &assertion_claims(JWT_CLIENT, &token));
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let challenge = code_challenge();
    let redirect = enc(REDIRECT);
    let authorize = format!(
        "response_type=code&client_id={SECRET_CLIENT}&redirect_uri={redirect}&scope=openid%20profile%20email&state=xyz&nonce=n-0S6&code_challenge={challenge}&code_challenge_method=S256"
    );
    let list: Vec<(&str, char, String)> = vec![
        (
            "token-client-credentials",
            '0',
            format!(
                "grant_type=client_credentials&client_id={SECRET_CLIENT}&client_secret={CLIENT_SECRET}&scope=openid"
            ),
        ),
        (
            "token-code",
            '0',
            format!(
                "grant_type=authorization_code&code={CODE}&redirect_uri={redirect}&code_verifier={CODE_VERIFIER}&client_id={SECRET_CLIENT}&client_secret={CLIENT_SECRET}"
            ),
        ),
        (
            "token-refresh",
            '0',
            format!(
                "grant_type=refresh_token&refresh_token=abc.def&client_id={SECRET_CLIENT}&client_secret={CLIENT_SECRET}"
            ),
        ),
        (
            "token-exchange",
            '0',
            format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&client_id={WORKSTATION_ID}&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={ws_assertion}&subject_token=ticket&subject_token_type=urn%3Awardkey%3Aparams%3Aoauth%3Atoken-type%3Asession-ticket&audience={EXCHANGE_CLIENT}"
            ),
        ),
        (
            "token-private-key-jwt",
            '0',
            format!(
                "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={client_assertion}"
            ),
        ),
        (
            "token-public",
            '0',
            format!(
                "grant_type=authorization_code&code={CODE}&client_id={PUBLIC_CLIENT}&redirect_uri={redirect}&code_verifier={CODE_VERIFIER}"
            ),
        ),
        ("token-repeated", '0', "grant_type=client_credentials&grant_type=client_credentials".into()),
        (
            "token-basic-code",
            '1',
            format!("grant_type=authorization_code&code={CODE}&redirect_uri={redirect}&code_verifier={CODE_VERIFIER}"),
        ),
        ("token-basic-cc", '1', "grant_type=client_credentials&scope=openid%20profile".into()),
        ("authorize-get", '2', authorize.clone()),
        (
            "authorize-get-prompt-none",
            '2',
            format!(
                "{authorize}&prompt=none&max_age=0&acr_values=urn%3Awardkey%3Aacr%3Asecurity-key&login_hint={USERNAME}"
            ),
        ),
        (
            "authorize-get-public",
            '2',
            format!(
                "response_type=code&client_id={PUBLIC_CLIENT}&redirect_uri={redirect}&scope=openid&code_challenge={challenge}&code_challenge_method=S256&response_mode=query"
            ),
        ),
        (
            "authorize-get-bad-redirect",
            '2',
            format!(
                "response_type=code&client_id={SECRET_CLIENT}&redirect_uri=https%3A%2F%2Fevil.example%2F&scope=openid"
            ),
        ),
        ("authorize-post", '3', authorize),
        ("introspect", '4', "token=abc.def.ghi&token_type_hint=access_token".into()),
        ("revoke", '5', "token=abc&token_type_hint=refresh_token".into()),
        ("login", '6', format!("csrf={CSRF}&request={REQUEST}&username={USERNAME}&password={}", enc(PASSWORD))),
        ("login-wrong", '6', format!("csrf={CSRF}&request={REQUEST}&username={USERNAME}&password=nope")),
        ("login-unknown", '6', format!("csrf={CSRF}&request={REQUEST}&username=nobody&password=x")),
        (
            "logout",
            '7',
            format!(
                "client_id={SECRET_CLIENT}&post_logout_redirect_uri={}&state=s1&id_token_hint=a.b.c",
                enc(&format!("{REDIRECT}/signed-out"))
            ),
        ),
        ("userinfo", '8', "access_token=abc.def.ghi".into()),
        ("params-form", '9', "application/x-www-form-urlencoded; charset=UTF-8\na=1&b=&c=x%20y+z&%E2%82%AC=%FF".into()),
        ("params-json", '9', "application/json\n{\"a\":1}".into()),
    ];
    list.into_iter().map(|(name, route, body)| (name.to_string(), with_mode(route as u8, body))).collect()
}

fn record_card(config: CardConfig, pin: u8) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut card = config.card();
    let pin_text = ctap::pin(pin).map(|p| secrecy::SecretString::from(p.to_string()));
    let mut recorder = Recorder { card: &mut card, answers: Vec::new(), commands: Vec::new() };
    let _ = get_assertion(&mut recorder, ctap::RP_ID, &ctap::CDH, pin_text.as_ref());
    (recorder.answers, recorder.commands)
}

/// Conversations with the software card, as (name, config, PIN selector).
fn conversations() -> Vec<(&'static str, CardConfig, u8)> {
    vec![
        ("fingerprint", CardConfig(0b0000_0110), 0),
        ("fingerprint-not-recognised", CardConfig(0b0000_0011), 0),
        ("fingerprint-not-recognised-pin", CardConfig(0b0000_0011), 1),
        ("pin-protocol-two", CardConfig(0b0000_0001), 1),
        ("pin-protocol-two-parts-64", CardConfig(0b0100_0001), 1),
        ("pin-protocol-one", CardConfig(0b0000_1001), 1),
        ("pin-wrong", CardConfig(0b0000_0001), 2),
        ("pin-too-short", CardConfig(0b0000_0001), 3),
        ("pin-nfd", CardConfig(0b0000_0001), 4),
        ("pin-required", CardConfig(0b0000_0001), 0),
        ("no-pin-set", CardConfig(0b0000_0000), 1),
        ("other-rp", CardConfig(0b0001_0110), 0),
        ("parts-8", CardConfig(0b1010_0110), 0),
    ]
}

fn ctap2_card() -> Seeds {
    let mut seeds: Seeds = conversations()
        .into_iter()
        .map(|(name, config, pin)| {
            let (answers, _) = record_card(config, pin);
            (format!("card-{name}"), with_mode(pin, crate::frame(&answers)))
        })
        .collect();
    // Hand-made hostile answers.
    let ok = |d: &[u8]| [d, &[0x90, 0x00]].concat();
    seeds.push((
        "hostile-6c-wrong-le".into(),
        with_mode(0, crate::frame(&[vec![0x6C, 0x08], ok(b"FIDO_2_0"), ok(&[0x7F])])),
    ));
    seeds.push((
        "hostile-endless-61".into(),
        with_mode(0, crate::frame(&[ok(b"FIDO_2_0"), vec![0x61, 0xFF], vec![0x61, 0x00]])),
    ));
    seeds.push(("hostile-not-cbor".into(), with_mode(0, crate::frame(&[ok(b"U2F_V2"), ok(&[0, 0xFF, 0x00])]))));
    seeds.push(("hostile-u2f-only".into(), with_mode(0, crate::frame(&[ok(b"U2F_V2"), vec![0x6D, 0x00]]))));
    seeds
}

fn ctap2_soft_card() -> Seeds {
    let mut seeds: Seeds = conversations()
        .into_iter()
        .map(|(name, config, pin)| {
            let (_, commands) = record_card(config, pin);
            (format!("platform-{name}"), with_mode(config.0, crate::frame(&commands)))
        })
        .collect();
    seeds.push((
        "apdus-odd".into(),
        with_mode(
            0b0000_0111,
            crate::frame(&[
                vec![0x00, 0xA4, 0x04, 0x00],
                vec![0x00, 0xC0, 0x00, 0x00, 0x00],
                vec![0x80, 0x10, 0x00, 0x00, 0x00, 0x00, 0x01, 0x04],
                vec![0x80, 0x10, 0x00, 0x00, 0x02, 0x06, 0xA0, 0x00],
                vec![0x80, 0x10, 0x00, 0x00, 0x03, 0x09, 0xA1, 0x00],
            ]),
        ),
    ));
    seeds
}

fn webauthn() -> Seeds {
    let key = wa::key(wa::CREDENTIAL_PKCS8);
    let new_key = wa::key(wa::NEW_CREDENTIAL_PKCS8);
    let ch = challenge_b64();
    let handle = user_handle();
    let login =
        |credential: Value| with_mode(b'L', json!({"ceremony": LOGIN_CEREMONY, "credential": credential}).to_string());
    let register = |ceremony: &str, credential: Value| {
        with_mode(b'R', json!({"ceremony": ceremony, "credential": credential}).to_string())
    };
    let uv = wa::UP | wa::UV;
    vec![
        ("login-ok".into(), login(wa::assertion(&ch, ISSUER, RP_ID, CREDENTIAL_ID, &handle, &key, uv, 0))),
        ("login-no-uv".into(), login(wa::assertion(&ch, ISSUER, RP_ID, CREDENTIAL_ID, &handle, &key, wa::UP, 0))),
        ("login-backup-eligible".into(), login(wa::assertion(&ch, ISSUER, RP_ID, CREDENTIAL_ID, &handle, &key, uv | wa::BE, 0))),
        ("login-counter".into(), login(wa::assertion(&ch, ISSUER, RP_ID, CREDENTIAL_ID, &handle, &key, uv, 7))),
        ("login-other-origin".into(), login(wa::assertion(&ch, "https://evil.example", RP_ID, CREDENTIAL_ID, &handle, &key, uv, 0))),
        ("login-unknown-credential".into(), login(wa::assertion(&ch, ISSUER, RP_ID, NEW_CREDENTIAL_ID, &handle, &new_key, uv, 0))),
        ("login-wrong-handle".into(), login(wa::assertion(&ch, ISSUER, RP_ID, CREDENTIAL_ID, b"someone-else", &key, uv, 0))),
        ("login-wrong-key".into(), login(wa::assertion(&ch, ISSUER, RP_ID, CREDENTIAL_ID, &handle, &new_key, uv, 0))),
        ("login-expired-ceremony".into(), with_mode(b'L', json!({"ceremony": "gone", "credential": wa::assertion(&ch, ISSUER, RP_ID, CREDENTIAL_ID, &handle, &key, uv, 0)}).to_string())),
        ("register-passkey".into(), register(PASSKEY_CEREMONY, wa::registration(&ch, ISSUER, RP_ID, NEW_CREDENTIAL_ID, &new_key, uv))),
        ("register-security-key".into(), register(SECURITY_KEY_CEREMONY, wa::registration(&ch, ISSUER, RP_ID, NEW_CREDENTIAL_ID, &new_key, uv))),
        ("register-backup-eligible".into(), register(PASSKEY_CEREMONY, wa::registration(&ch, ISSUER, RP_ID, NEW_CREDENTIAL_ID, &new_key, uv | wa::BE))),
        ("register-existing-credential".into(), register(SECURITY_KEY_CEREMONY, wa::registration(&ch, ISSUER, RP_ID, CREDENTIAL_ID, &key, uv))),
        ("register-no-uv".into(), register(PASSKEY_CEREMONY, wa::registration(&ch, ISSUER, RP_ID, NEW_CREDENTIAL_ID, &new_key, wa::UP))),
        ("register-other-rp".into(), register(SECURITY_KEY_CEREMONY, wa::registration(&ch, ISSUER, "evil.example", NEW_CREDENTIAL_ID, &new_key, uv))),
    ]
}

fn config() -> Seeds {
    let mut seeds: Seeds = vec![
        ("wardkey-toml-example".into(), include_bytes!("../../config/wardkey.toml").to_vec()),
        ("agent-toml-example".into(), include_bytes!("../../config/agent.toml").to_vec()),
        ("empty".into(), Vec::new()),
    ];
    let small: [(&str, &str); 12] = [
        (
            "server",
            "[server]\nlisten = \"0.0.0.0:8443\"\npublic_url = \"https://sso.trust.nhs.uk/\"\ntls_cert = \"/etc/wardkey/cert.pem\"\ntls_key = \"/etc/wardkey/key.pem\"\n",
        ),
        (
            "store-postgres",
            "[store]\nurl = \"postgres://wardkey:secret@db.internal/wardkey\"\ndirectory_poll = \"1s\"\n[cache]\nurl = \"redis+sentinel://s1:26379,s2:26379/mymaster\"\n",
        ),
        (
            "durations",
            "[session]\nidle_timeout = \"1h 30m\"\nmax_lifetime = \"13h\"\npin_grace = \"4h\"\n[oidc]\ncode_ttl = \"60s\"\naccess_token_ttl = \"5m\"\nclock_skew = \"30s\"\n",
        ),
        ("wards", "[wards.ICU]\npin_grace = \"15m\"\nidle_timeout = \"5m\"\n[wards.\"A&E\"]\npin_grace = \"0s\"\n"),
        (
            "password",
            "[password]\nm_cost = 19456\nt_cost = 2\np_cost = 1\nmax_concurrent = 2\nbackoff_after = 5\nlock_after = 100\n",
        ),
        (
            "tap",
            "[tap]\npin_min_length = 6\nenrolment_code_ttl = \"24h\"\npin_entry_ttl = \"60s\"\nself_enrolment = true\n",
        ),
        (
            "webauthn-models",
            "[webauthn]\npasskeys = false\nadd_key_within = \"10m\"\n[[webauthn.approved_models]]\ndescription = \"Trust badge v2\"\nca = \"/nonexistent/ca.pem\"\naaguids = [\"6d44ba9b-f6ec-2e49-b930-0c8fe920cb73\"]\n",
        ),
        ("invalid-listen", "[server]\nlisten = \"localhost\"\n"),
        ("unknown-key", "[server]\nlisen = \"127.0.0.1:8080\"\n"),
        (
            "agent",
            "server = \"https://sso.trust.nhs.uk\"\nworkstation_id = \"ws123\"\nname = \"pc1\"\nward = \"ICU\"\nidle_timeout = \"10m\"\ndebounce = \"800ms\"\nrequest_timeout = \"5s\"\n[hooks]\nunlock = [\"/usr/bin/true\"]\n",
        ),
        ("agent-bad-debounce", "debounce = \"1h\"\n"),
        ("types", "[server]\nlisten = 8080\n[session]\nidle_timeout = 5\n[tap]\npin_min_length = \"six\"\n"),
    ];
    seeds.extend(small.iter().map(|(n, t)| (format!("{n}.toml"), t.as_bytes().to_vec())));
    seeds
}
