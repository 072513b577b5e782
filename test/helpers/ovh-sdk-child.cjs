// One call through OVH's own npm client (`ovh`), unchanged: run as its own process so that the lab's
// CA reaches it the way a customer trusts it, through NODE_EXTRA_CA_CERTS (read at process start).
// stdin: {"params": {appKey, appSecret, consumerKey?, host, port, basePath}, "method", "path", "body"?}
// stdout: {"result": ...} or {"error": <status or text>, "message": ...} as the client rejects.
'use strict';
const ovh = require('ovh');

let input = '';
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', () => {
  const { params, method, path, body } = JSON.parse(input);
  const client = ovh(params);
  client.requestPromised(method, path, body || {}).then(
    (result) => process.stdout.write(JSON.stringify({ result })),
    (rejection) => process.stdout.write(JSON.stringify({ error: rejection.error, message: rejection.message })),
  );
});
