// RS256 bearer-token verification in njs with WebCrypto: the peer of
// ngx_http_jwtwarden_module in benches/webservers/run.
//
// The way njs documents it: the public keys are loaded when nginx starts
// (`js_preload_object keys from keys.json;`, written by the benchmark from
// the issuer's JWKS: kid -> SubjectPublicKeyInfo DER in base64, since njs
// 0.7.9's importKey takes spki, not jwk), and each request is checked from
// scratch: header (alg RS256, a known kid), claims (exp and nbf with 30 s
// leeway, iss, aud), then crypto.subtle.importKey + crypto.subtle.verify.
// njs runs every request in its own VM, so nothing survives between
// requests: no imported key, no verified cache. A kid published after start
// is unknown until nginx reloads.
//
// `js_content jwt.verify` answers refusals itself (401 with a bearer
// challenge) and hands an accepted request to `location @app` with
// r.internalRedirect.

const LEEWAY = 30;

function deny(r, why) {
    r.headersOut['WWW-Authenticate'] = 'Bearer error="invalid_token"';
    r.headersOut['Cache-Control'] = 'no-store';
    r.return(401, JSON.stringify({error: why}) + '\n');
}

function decode(part) {
    return JSON.parse(Buffer.from(part, 'base64url').toString());
}

async function verify(r) {
    const auth = r.headersIn.Authorization || '';
    if (auth.slice(0, 7).toLowerCase() !== 'bearer ') {
        return deny(r, 'missing_token');
    }
    const token = auth.slice(7);
    if (token.length > 16384) {
        return deny(r, 'malformed');
    }
    const parts = token.split('.');
    if (parts.length !== 3) {
        return deny(r, 'malformed');
    }
    let header, claims;
    try {
        header = decode(parts[0]);
        claims = decode(parts[1]);
    } catch (e) {
        return deny(r, 'malformed');
    }
    if (header.alg !== 'RS256') {
        return deny(r, 'algorithm');
    }
    const spki = keys.keys[header.kid];
    if (!spki) {
        return deny(r, 'unknown_kid');
    }
    const now = Date.now() / 1000;
    if (typeof claims.exp !== 'number' || now >= claims.exp + LEEWAY) {
        return deny(r, 'expired');
    }
    if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || now + LEEWAY < claims.nbf)) {
        return deny(r, 'not_yet_valid');
    }
    if (claims.iss !== keys.issuer) {
        return deny(r, 'issuer');
    }
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (aud.indexOf(keys.audience) < 0) {
        return deny(r, 'audience');
    }
    let ok = false;
    try {
        const key = await crypto.subtle.importKey('spki', Buffer.from(spki, 'base64'),
            {name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256'}, false, ['verify']);
        ok = await crypto.subtle.verify({name: 'RSASSA-PKCS1-v1_5'}, key,
            Buffer.from(parts[2], 'base64url'), Buffer.from(parts[0] + '.' + parts[1]));
    } catch (e) {
        ok = false;
    }
    if (!ok) {
        return deny(r, 'invalid_signature');
    }
    r.internalRedirect('@app');
}

export default {verify};
