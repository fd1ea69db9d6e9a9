// Pushed authorization requests (RFC 9126) with openid-client: buildAuthorizationUrlWithPAR for
// a public client (none + PKCE) and a confidential one (client_secret_basic), followed through
// sign-in and consent, then authorizationCodeGrant; and a server that requires PAR.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import * as client from 'openid-client';

import {
  Browser, CALLBACK, Portcullis, claimsOf, discover, recordingFetch,
} from './harness.js';

const CODE_CLIENT = ['--grant-type', 'authorization_code', '--grant-type', 'refresh_token',
  '--scope', 'openid profile email offline_access', '--redirect-uri', CALLBACK];

/** A fresh PKCE pair, state and nonce. */
async function checks() {
  const pkceCodeVerifier = client.randomPKCECodeVerifier();
  return {
    pkceCodeVerifier,
    codeChallenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
    expectedState: client.randomState(),
    expectedNonce: client.randomNonce(),
  };
}

function parameters(c, scope = 'openid profile') {
  return {
    redirect_uri: CALLBACK,
    scope,
    code_challenge: c.codeChallenge,
    code_challenge_method: 'S256',
    state: c.expectedState,
    nonce: c.expectedNonce,
  };
}

/** The URL openid-client returns after a push: the authorization endpoint, two parameters. */
function assertPushedUrl(server, url, clientId) {
  assert.equal(url.origin + url.pathname, server.url('/authorize'));
  assert.deepEqual([...url.searchParams.keys()].sort(), ['client_id', 'request_uri']);
  assert.equal(url.searchParams.get('client_id'), clientId);
  assert.match(url.searchParams.get('request_uri'), /^urn:ietf:params:oauth:request_uri:/);
}

describe('PAR', () => {
  let server;
  let webSecret;

  before(async () => {
    server = new Portcullis('par');
    server.client('spa', ['--public', ...CODE_CLIENT]);
    const web = server.client('web', [...CODE_CLIENT,
      '--token-endpoint-auth-method', 'client_secret_basic']);
    webSecret = web.client_secret;
    assert.equal(web.token_endpoint_auth_method, 'client_secret_basic');
    server.user('ada');
    await server.start();
  });

  after(() => server?.stop());

  test('discovery advertises the PAR endpoint, not required', async () => {
    const config = await discover(server, 'spa', undefined, client.None());
    const metadata = config.serverMetadata();
    assert.equal(metadata.pushed_authorization_request_endpoint, server.url('/par'));
    assert.equal(metadata.require_pushed_authorization_requests, false);
  });

  test('a public client (none, PKCE) pushes, signs in and redeems the code', async () => {
    const config = await discover(server, 'spa', undefined, client.None());
    const wire = [];
    config[client.customFetch] = recordingFetch(wire);
    const c = await checks();
    const url = await client.buildAuthorizationUrlWithPAR(config,
      parameters(c, 'openid profile offline_access'));
    assertPushedUrl(server, url, 'spa');
    const push = wire.find((r) => r.url === server.url('/par'));
    assert.equal(push.status, 201);
    assert.equal(push.json.expires_in, 60);
    assert.equal(new URLSearchParams(push.body).get('client_id'), 'spa');
    assert.equal(push.headers.get('authorization'), null, 'a public client: no credentials');

    const callback = await new Browser(server.issuer).authorize(url.href, 'ada');
    assert.equal(callback.origin + callback.pathname, CALLBACK);
    const tokens = await client.authorizationCodeGrant(config, callback, c);
    assert.equal(tokens.token_type, 'bearer');
    const id = tokens.claims();
    assert.equal(id.aud, 'spa');
    assert.equal(id.nonce, c.expectedNonce);
    assert.ok(tokens.refresh_token, 'offline_access');
    assert.equal(claimsOf(tokens.access_token).client_id, 'spa');
    const info = await client.fetchUserInfo(config, tokens.access_token, id.sub);
    assert.equal(info.preferred_username, 'ada');

    // The request_uri was single use.
    const again = await new Browser(server.issuer).get(url.href);
    assert.equal(again.status, 400);
  });

  test('a confidential client (client_secret_basic) pushes and redeems the code', async () => {
    const config = await discover(server, 'web', undefined, client.ClientSecretBasic(webSecret));
    const wire = [];
    config[client.customFetch] = recordingFetch(wire);
    const c = await checks();
    const url = await client.buildAuthorizationUrlWithPAR(config, parameters(c));
    assertPushedUrl(server, url, 'web');
    const push = wire.find((r) => r.url === server.url('/par'));
    assert.equal(push.status, 201);
    assert.match(push.headers.get('authorization'), /^Basic /);
    assert.equal(new URLSearchParams(push.body).get('client_secret'), null);

    const callback = await new Browser(server.issuer).authorize(url.href, 'ada');
    const tokens = await client.authorizationCodeGrant(config, callback, c);
    assert.equal(tokens.claims().aud, 'web');
    assert.equal(tokens.claims().nonce, c.expectedNonce);
    const exchange = wire.find((r) => r.url === server.url('/token'));
    assert.match(exchange.headers.get('authorization'), /^Basic /);
    assert.equal(exchange.status, 200);
  });

  test('a wrong secret is refused at the push: 401 invalid_client with a Basic challenge',
    async () => {
      const config = await discover(server, 'web', undefined,
        client.ClientSecretBasic('not-the-secret-but-long-enough-0123456789'));
      const c = await checks();
      // RFC 6749 §5.2: Basic credentials that fail get 401 and a WWW-Authenticate challenge,
      // which openid-client reports as such.
      const error = await client.buildAuthorizationUrlWithPAR(config, parameters(c))
        .then(() => assert.fail('pushed with a wrong secret'), (e) => e);
      assert.ok(error instanceof client.WWWAuthenticateChallengeError, `${error}`);
      assert.equal(error.status, 401);
      assert.equal(error.cause[0].scheme, 'basic');
      assert.equal((await error.response.json()).error, 'invalid_client');
    });
});

describe('a server that requires PAR', () => {
  let server;

  before(async () => {
    server = new Portcullis('par-required', {
      PORTCULLIS_REQUIRE_PUSHED_AUTHORIZATION_REQUESTS: 'true',
    });
    server.client('spa', ['--public', ...CODE_CLIENT]);
    server.user('ada');
    await server.start();
  });

  after(() => server?.stop());

  test('discovery says so, and a request that was not pushed is refused', async () => {
    const config = await discover(server, 'spa', undefined, client.None());
    assert.equal(config.serverMetadata().require_pushed_authorization_requests, true);
    const c = await checks();
    const direct = client.buildAuthorizationUrl(config, parameters(c));
    const browser = new Browser(server.issuer);
    const refused = await browser.get(direct.href);
    assert.equal(refused.status, 303, refused.text);
    const callback = new URL(refused.location);
    assert.equal(callback.origin + callback.pathname, CALLBACK);
    assert.equal(callback.searchParams.get('error'), 'invalid_request');
    // openid-client reads the error response (state and iss checked first).
    await assert.rejects(client.authorizationCodeGrant(config, callback, c), (error) => {
      assert.ok(error instanceof client.AuthorizationResponseError, `${error}`);
      assert.equal(error.error, 'invalid_request');
      return true;
    });
  });

  test('the pushed request goes through', async () => {
    const config = await discover(server, 'spa', undefined, client.None());
    const c = await checks();
    const url = await client.buildAuthorizationUrlWithPAR(config, parameters(c));
    assertPushedUrl(server, url, 'spa');
    const callback = await new Browser(server.issuer).authorize(url.href, 'ada');
    const tokens = await client.authorizationCodeGrant(config, callback, c);
    assert.equal(tokens.claims().aud, 'spa');
  });
});
