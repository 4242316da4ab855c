// Wardkey: passkeys and security keys (WebAuthn) on the sign-in page and the
// account page. Served from /static/webauthn.js; the pages work without it
// (the password form needs no script).
"use strict";
(function () {
  function say(id, text) {
    var box = document.getElementById(id);
    if (!box) return;
    box.hidden = false;
    box.querySelector("p").textContent = text;
    box.focus();
  }
  function explain(e) {
    if (e && e.name === "NotAllowedError") return "The request was cancelled or took too long. Try again, or sign in with your password.";
    if (e && e.name === "InvalidStateError") return "This key is already registered to you.";
    if (e && e.name === "SecurityError") return "This browser will not use a key for this address. Call the IT service desk.";
    return (e && e.message) || "Something went wrong. Try again, or sign in with your password.";
  }
  async function post(url, body) {
    var r = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    var answer = await r.json().catch(function () { return { message: "Wardkey did not answer properly. Try again." }; });
    if (!r.ok) throw new Error(answer.message);
    return answer;
  }
  var supported = window.PublicKeyCredential && PublicKeyCredential.parseRequestOptionsFromJSON;

  var signIn = document.getElementById("passkey-sign-in");
  if (signIn && supported) {
    signIn.hidden = false;
    signIn.querySelector("button").addEventListener("click", async function () {
      try {
        var start = await post("/webauthn/login/start", { request: signIn.dataset.request, next: signIn.dataset.next || undefined });
        var options = PublicKeyCredential.parseRequestOptionsFromJSON(start.options.publicKey);
        var credential = await navigator.credentials.get({ publicKey: options });
        var done = await post("/webauthn/login/finish", { ceremony: start.ceremony, credential: credential.toJSON() });
        window.location.assign(done.redirect);
      } catch (e) {
        say("passkey-error", explain(e));
      }
    });
  }

  var add = document.getElementById("add-key");
  if (add && !supported) {
    add.hidden = true;
    say("key-error", "This browser cannot use passkeys or security keys.");
  } else if (add) {
    add.addEventListener("submit", async function (event) {
      event.preventDefault();
      try {
        var start = await post("/account/keys/register/start", { kind: add.elements.kind.value, name: add.elements.name.value });
        var options = PublicKeyCredential.parseCreationOptionsFromJSON(start.options.publicKey);
        var credential = await navigator.credentials.create({ publicKey: options });
        await post("/account/keys/register/finish", { ceremony: start.ceremony, credential: credential.toJSON() });
        window.location.reload();
      } catch (e) {
        say("key-error", explain(e));
      }
    });
  }
})();
