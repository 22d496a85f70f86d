'use strict';
// Checks a signed SAML AuthnRequest with samlp's own request parser (the code saml-idp runs), so
// Keyhall's signatures are verified by an implementation other than its own.
//
// Input (JSON on stdin): {"cert": PEM, "query": raw query string} for HTTP-Redirect, or
// {"cert": PEM, "body": {"SAMLRequest": ..., "RelayState": ...}} for HTTP-POST.
// Output (JSON on stdout): {"ok": true, "id": ...} or {"ok": false, "error": ...}.
const querystring = require('querystring');
const utils = require('samlp/lib/utils');

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const job = JSON.parse(input);
  const req = { query: job.query ? querystring.parse(job.query) : {}, body: job.body || {} };
  const samlRequest = req.query.SAMLRequest || req.body.SAMLRequest;
  const options = { signingCert: job.cert };
  utils.parseSamlRequest(req, samlRequest, 'AUTHN_REQUEST', options, (err, dom) => {
    if (err) {
      process.stdout.write(JSON.stringify({ ok: false, error: String(err.message || err) }));
      return;
    }
    const id = dom.documentElement.getAttribute('ID');
    process.stdout.write(JSON.stringify({ ok: true, id: id }));
  });
});
