// An OpenID Certified provider (oidc-provider) for the tests, on 127.0.0.1 only.
//
// Everything comes from the environment the test gives it:
//   PROVIDER_PORT          the port to listen on (issuer http://127.0.0.1:<port>)
//   PROVIDER_JWKS          the private signing keys, a JWK set (the test keeps them, to forge tokens)
//   CONSOLE_CLIENT_SECRET  the console's client (qr-console: code flow, PKCE, client_secret_basic)
//   CONSOLE_REDIRECT_URIS  its redirect URIs, comma-separated
//   CONSOLE_LOGOUT_URIS    its post-logout redirect URIs, comma-separated
//   SCRIPTS_CLIENT_SECRET  the service account (qr-scripts: client credentials, JWT access tokens)
//   API_AUDIENCE           the audience (resource indicator) of those access tokens
//
// Sign-in is the development login form: any login and any password; the login names the account.
// Prints "ready <issuer>" once it listens.
import process from 'node:process';

import Provider from 'oidc-provider';

const port = Number(process.env.PROVIDER_PORT);
const issuer = `http://127.0.0.1:${port}`;
const audience = process.env.API_AUDIENCE;
const list = (value) => (value ? value.split(',') : []);

// The accounts and the groups each is in ("nobody" is in none the service maps).
const GROUPS = {
  admin: ['qr-admins', 'staff'],
  editor: ['qr-editors'],
  viewer: ['qr-viewers'],
  nobody: ['staff'],
};
const SERVICE_ACCOUNT_GROUPS = { 'qr-scripts': ['qr-editors'] };

const configuration = {
  jwks: JSON.parse(process.env.PROVIDER_JWKS),
  cookies: { keys: ['a test provider only'] },
  clients: [
    {
      client_id: 'qr-console',
      client_secret: process.env.CONSOLE_CLIENT_SECRET,
      redirect_uris: list(process.env.CONSOLE_REDIRECT_URIS),
      post_logout_redirect_uris: list(process.env.CONSOLE_LOGOUT_URIS),
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'qr-scripts',
      client_secret: process.env.SCRIPTS_CLIENT_SECRET,
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  pkce: { required: () => true },
  // The groups come with the openid scope itself, as a provider's mapper adds them to the ID token.
  claims: { openid: ['sub', 'groups'], email: ['email', 'email_verified'] },
  // The scope's claims go into the ID token itself (the service reads no userinfo).
  conformIdTokenClaims: false,
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.org`, email_verified: true, groups: GROUPS[id] ?? [] };
      },
    };
  },
  // The console is this provider's own first-party client: no consent screen.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email');
    await grant.save();
    return grant;
  },
  async extraTokenClaims(_ctx, token) {
    const groups = SERVICE_ACCOUNT_GROUPS[token.clientId];
    return token.kind === 'ClientCredentials' && groups ? { groups } : undefined;
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, client, oneOf) => (client.clientId === 'qr-scripts' ? audience : oneOf),
      useGrantedResource: async () => true,
      getResourceServerInfo: async () => ({
        scope: 'api',
        audience,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 600,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
};

const provider = new Provider(issuer, configuration);
const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
