// A real OpenID provider for the console's sign-in tests (tests/test_console_oidc.py):
// the OpenID Certified `oidc-provider`, on 127.0.0.1 only, with one client (the
// console), PKCE required, and its own login and consent pages (no devInteractions):
// a person types their name, the password "mat-khau-thu" and, optionally, a one-time
// code; with a code the sign-in's `amr` is ["pwd", "otp"], without it ["pwd"].
//
//   node provider.mjs '<json>'   json: {"redirect_uri", "client_id", "client_secret",
//                                       "people": {"name": {"groups": [...], "name"}}}
//
// Prints `listening <issuer>` once it answers, and runs until killed.
import { createServer } from "node:http";
import Provider from "oidc-provider";

const config = JSON.parse(process.argv[2]);
const PASSWORD = "mat-khau-thu";

const page = (title, body) =>
  `<!doctype html><html lang="vi"><head><meta charset="utf-8"><title>${title}</title></head>` +
  `<body><main><h1>${title}</h1>${body}</main></body></html>`;

const escape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function formBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString());
}

let provider;

async function interaction(req, res) {
  const url = new URL(req.url, "http://x");
  const details = await provider.interactionDetails(req, res);
  const uid = details.uid;
  if (req.method === "GET") {
    res.setHeader("Content-Type", "text/html; charset=utf-8");
    if (details.prompt.name === "login") {
      res.end(page("Đăng nhập SSO tỉnh",
        `<form method="post" action="/interaction/${uid}/login">` +
        `<label>Tên <input id="sso-name" name="login"></label>` +
        `<label>Mật khẩu <input id="sso-password" name="password" type="password"></label>` +
        `<label>Mã OTP <input id="sso-otp" name="otp"></label>` +
        `<button id="sso-login" type="submit">Đăng nhập</button></form>`));
    } else {
      res.end(page("Cho phép truy cập",
        `<p>${escape(details.params.client_id)} xin: ${escape(details.params.scope)}</p>` +
        `<form method="post" action="/interaction/${uid}/confirm">` +
        `<button id="sso-consent" type="submit">Đồng ý</button></form>`));
    }
    return;
  }
  const form = await formBody(req);
  if (url.pathname.endsWith("/login")) {
    const who = form.get("login");
    if (!config.people[who] || form.get("password") !== PASSWORD) {
      res.statusCode = 401;
      res.end(page("Sai tên hoặc mật khẩu", ""));
      return;
    }
    const amr = form.get("otp") ? ["pwd", "otp"] : ["pwd"];
    await provider.interactionFinished(req, res, { login: { accountId: who, amr } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }
  const { prompt, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(" "));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, {
    mergeWithLastSubmission: true,
  });
}

const server = createServer((req, res) => {
  if (req.url.startsWith("/interaction/")) {
    interaction(req, res).catch((e) => {
      res.statusCode = 500;
      res.end(String(e));
    });
    return;
  }
  provider.callback()(req, res);
});

server.listen(0, "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, {
    clients: [{
      client_id: config.client_id,
      client_secret: config.client_secret,
      redirect_uris: [config.redirect_uri],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    }],
    pkce: { required: () => true },
    scopes: ["openid", "profile", "groups"],
    claims: { openid: ["sub", "amr"], profile: ["name", "preferred_username"], groups: ["groups"] },
    conformIdTokenClaims: false, // the scopes' claims in the ID token itself
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, i) => `/interaction/${i.uid}` },
    cookies: { keys: ["only-for-tests-only-for-tests"] },
    async findAccount(ctx, id) {
      const who = config.people[id];
      if (!who) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, preferred_username: id, name: who.name, groups: who.groups };
        },
      };
    },
  });
  console.log(`listening ${issuer}`);
});
