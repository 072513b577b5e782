// A static file server with byte ranges (`bytes=A-B`, `bytes=A-`) and a strong ETag, for the
// long-link benchmark's server side. Usage: node range-server.ts FILE HOST PORT
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

const [file, host, port] = process.argv.slice(2) as [string, string, string];
const body = readFileSync(file);
const etag = `"${body.length}-bench"`;

createServer((req, res) => {
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  const headers = { etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
  if (!range || (req.headers['if-range'] !== undefined && req.headers['if-range'] !== etag)) {
    res.writeHead(200, { ...headers, 'content-length': body.length }).end(body);
    return;
  }
  const start = Number(range[1]);
  const end = Math.min(range[2] ? Number(range[2]) : body.length - 1, body.length - 1);
  if (start > end) {
    res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
    return;
  }
  res.writeHead(206, {
    ...headers,
    'content-length': end - start + 1,
    'content-range': `bytes ${start}-${end}/${body.length}`,
  });
  res.end(body.subarray(start, end + 1));
}).listen(Number(port), host, () => console.log('listening'));
