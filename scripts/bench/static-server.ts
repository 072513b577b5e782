// A plain Node static server, as one is commonly written: each file piped from a read stream
// whose reads (and so the server's writes) are of the given size.
// Usage: node static-server.ts DIR PORT READ_BYTES
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { basename, join } from 'node:path';

const [dir, port, readBytes] = process.argv.slice(2) as [string, string, string];
createServer((req, res) => {
  const file = join(dir, basename(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
  const stat = statSync(file, { throwIfNoEntry: false });
  if (!stat?.isFile()) return void res.writeHead(404).end();
  res.writeHead(200, { 'content-length': stat.size, 'content-type': 'application/octet-stream' });
  if (req.method === 'HEAD') return void res.end();
  createReadStream(file, { highWaterMark: Number(readBytes) }).pipe(res);
}).listen(Number(port), '127.0.0.1');
