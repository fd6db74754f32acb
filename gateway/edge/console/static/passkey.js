// Passkeys in the console: the one script the console runs, on the pages that add a
// passkey or sign in with one. The page holds the server's options (a JSON block, not
// run); the button asks the browser's authenticator, then posts its answer in the
// page's own form (with the form's CSRF token), as a person's submit would.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const data = document.getElementById("passkey-options");
  const form = document.getElementById("passkey-form");
  if (!data || !form) return;
  const options = JSON.parse(data.textContent);
  const create = form.dataset.ceremony === "create";
  const status = document.getElementById("passkey-status");
  form.addEventListener("submit", async (event) => {
    if (form.elements.credential.value) return; // the answer is in: post it
    event.preventDefault();
    try {
      const credential = create
        ? await navigator.credentials.create({
            publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
          })
        : await navigator.credentials.get({
            publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
          });
      form.elements.credential.value = JSON.stringify(credential.toJSON());
      form.submit();
    } catch (e) {
      if (status) status.textContent = status.dataset.failed + " (" + e.name + ")";
    }
  });
});
