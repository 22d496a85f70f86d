// A real OpenID provider (npm `oidc-provider`) for Keyhall's test suite.
//
// Usage:
//   node provider.mjs --port PORT [--issuer URL] [--accounts FILE] [--client FILE] [--watch-stdin]
//
// Every option may also come from the environment: OIDC_PORT, OIDC_ISSUER, OIDC_ACCOUNTS,
// OIDC_CLIENT. It listens on 127.0.0.1:PORT only. The issuer defaults to
// http://127.0.0.1:PORT but may be anything (for example http://localhost:PORT) so that tests
// can provoke an issuer mismatch (OpenID Connect Discovery 1.0 §4.3).
//
// --accounts FILE  JSON list of {sub, email, email_verified, name, given_name, family_name, groups,
//                  hd, tid, acr, amr, auth_age}: hd and tid are put in the ID token (as Google and
//                  Microsoft do); acr and amr are the session's when that account signs in, and
//                  auth_age (seconds) back-dates its authentication (auth_time), as an IdP that
//                  answers from an old session would
// --client FILE    JSON {client_id, client_secret, redirect_uris, token_endpoint_auth_method?}:
//                  one static confidential client
// --watch-stdin    exit when standard input closes (the test process died without stopping us)
//
// Nothing is written to disk: keys are generated at start and all state lives in memory.
// When listening, one line starting with "READY " is printed on stdout.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    issuer: { type: 'string' },
    accounts: { type: 'string' },
    client: { type: 'string' },
    'watch-stdin': { type: 'boolean', default: false },
  },
});

const port = Number.parseInt(args.port ?? process.env.OIDC_PORT ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  fail('--port (or OIDC_PORT) must be a TCP port number');
}
const issuer = args.issuer ?? process.env.OIDC_ISSUER ?? `http://127.0.0.1:${port}`;

function readJson(path, what) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    return fail(`cannot read ${what} from ${path}: ${error.message}`);
  }
}

const accountsPath = args.accounts ?? process.env.OIDC_ACCOUNTS;
const accountList = accountsPath ? readJson(accountsPath, 'accounts') : [];
if (!Array.isArray(accountList)) {
  fail('the accounts file must hold a JSON list');
}
const accounts = new Map(accountList.map((account) => [String(account.sub), account]));

const clientPath = args.client ?? process.env.OIDC_CLIENT;
const clients = [];
if (clientPath) {
  const client = readJson(clientPath, 'the static client');
  clients.push({
    client_id: client.client_id,
    client_secret: client.client_secret,
    redirect_uris: client.redirect_uris,
    token_endpoint_auth_method: client.token_endpoint_auth_method ?? 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  });
}

// RS256 signing key, made fresh on every start.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `test-${randomBytes(6).toString('hex')}`,
  alg: 'RS256',
  use: 'sig',
};

const claimNames = ['email', 'email_verified', 'name', 'given_name', 'family_name', 'groups', 'hd', 'tid'];

const configuration = {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: {
    // acr, amr and auth_time come from the session (see interactionFinished below).
    openid: ['sub', 'hd', 'tid', 'acr', 'amr', 'auth_time'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 600,
    ClientCredentials: 600,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 3600,
    RefreshToken: 86400,
    Session: 86400,
  },
  clientBasedCORS: () => false,
  async findAccount(_ctx, sub) {
    const account = accounts.get(String(sub));
    if (account === undefined) {
      return undefined;
    }
    return {
      accountId: String(sub),
      async claims() {
        const claims = { sub: String(sub) };
        for (const name of claimNames) {
          if (account[name] !== undefined) {
            claims[name] = account[name];
          }
        }
        return claims;
      },
    };
  },
};

const provider = new Provider(issuer, configuration);

// devInteractions finishes a login with the account id only; give the session the account's
// authentication context (acr, amr) and time (auth_age seconds ago), as a real IdP would.
const finishInteraction = provider.interactionFinished.bind(provider);
provider.interactionFinished = async (req, res, result, options) => {
  const account = result?.login ? accounts.get(String(result.login.accountId)) : undefined;
  if (account !== undefined) {
    if (account.acr !== undefined) result.login.acr = account.acr;
    if (account.amr !== undefined) result.login.amr = account.amr;
    if (account.auth_age !== undefined) result.login.ts = Math.floor(Date.now() / 1000) - account.auth_age;
  }
  return finishInteraction(req, res, result, options);
};

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer} listening on http://127.0.0.1:${port}\n`);
});
server.on('error', (error) => fail(`cannot listen on 127.0.0.1:${port}: ${error.message}`));

// All state is in memory, so there is nothing to flush: stop at once.
function stop() {
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

if (args['watch-stdin']) {
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
}
