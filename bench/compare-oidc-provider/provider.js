// node-oidc-provider configured like Portcullis for bench/compare: one confidential client
// (client_secret_basic, client_credentials only) that gets ES256-signed JWT access tokens for
// the resource https://inference.example.com, plus introspection. Started by bench/compare:
//
//   NODE_ENV=production PORT=… BENCH_CLIENT_ID=… BENCH_CLIENT_SECRET=… node provider.js
//
// Everything else is oidc-provider's default: its in-memory adapter (an LRU of 1000 entries),
// no request logging, one Node.js process.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.js: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const port = Number(required('PORT'));
const issuer = `http://127.0.0.1:${port}`;
const clientId = required('BENCH_CLIENT_ID');
const clientSecret = required('BENCH_CLIENT_SECRET');
const resource = process.env.BENCH_RESOURCE || 'https://inference.example.com';
// oidc-provider refuses to introspect JWT (structured) access tokens (400
// unsupported_token_type), so bench/compare introspects an opaque access token of the same
// client, issued for this second resource indicator.
const opaqueResource = process.env.BENCH_OPAQUE_RESOURCE || 'urn:bench:opaque';

// Signing keys made at start, as Portcullis makes its keyring on first start: the ES256 key
// signs the access tokens; the RS256 one is there because RS256 is oidc-provider's default
// ID-token algorithm (none is issued here).
function privateJwk(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid: `${alg.toLowerCase()}-bench`, alg, use: 'sig' };
}
const jwks = {
  keys: [
    privateJwk('ec', { namedCurve: 'P-256' }, 'ES256'),
    privateJwk('rsa', { modulusLength: 2048 }, 'RS256'),
  ],
};

const configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks,
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A plain client-credentials request (no `resource`) gets a token for the resource, as
      // Portcullis gives a client its first registered audience.
      defaultResource: async () => resource,
      getResourceServerInfo: async (ctx, indicator) => {
        if (indicator === resource) {
          return {
            scope: 'models:read',
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        }
        if (indicator === opaqueResource) {
          return { scope: 'models:read', accessTokenFormat: 'opaque' };
        }
        throw new errors.InvalidTarget();
      },
    },
  },
  // Portcullis's default access-token lifetime (access_token_ttl, 15 min).
  ttl: { ClientCredentials: 900 },
};

const provider = new Provider(issuer, configuration);
const server = createServer(provider.callback());
server.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer} (node ${process.version}, NODE_ENV=${process.env.NODE_ENV})`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
