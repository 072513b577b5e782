// OVH's npm client driving `byoi serve` over HTTPS from its own process (ovh-sdk-child.cjs), the lab's
// certificate trusted through NODE_EXTRA_CA_CERTS as a customer would; and `byoi serve` itself.
import { spawn } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const child = join(repo, 'test/helpers/ovh-sdk-child.cjs');

export interface SdkParams {
  appKey: string;
  appSecret: string;
  consumerKey?: string;
  host: string;
  port: number;
  basePath?: string;
}

export type SdkAnswer = { result: any } | { error: number | string; message: string | null };

export async function sdk(
  ca: string,
  params: SdkParams,
  method: string,
  path: string,
  body?: object,
): Promise<SdkAnswer> {
  const { stdout } = await execa(process.execPath, [child], {
    input: JSON.stringify({ params, method, path, body }),
    env: { NODE_EXTRA_CA_CERTS: ca },
    cwd: repo,
  });
  return JSON.parse(stdout) as SdkAnswer;
}

/** `fetch` over HTTPS trusting `ca` (PEM), enough for the validation page: status, headers, text. */
export function fetchTrusting(ca: Buffer): typeof fetch {
  return ((url: string, init: RequestInit = {}) =>
    new Promise<Response>((resolve, reject) => {
      const request = httpsRequest(
        url,
        { method: init.method ?? 'GET', headers: init.headers as Record<string, string>, ca },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => {
            const headers = new Headers();
            for (const [name, value] of Object.entries(response.headers))
              if (typeof value === 'string') headers.set(name, value);
            for (const cookie of response.headers['set-cookie'] ?? []) headers.append('set-cookie', cookie);
            resolve(new Response(Buffer.concat(chunks), { status: response.statusCode!, headers }));
          });
        },
      );
      request.on('error', reject);
      request.end(init.body as string | undefined);
    })) as typeof fetch;
}

/** Starts `byoi serve ARGS`, resolving with its URL once it listens. */
export function serve(args: string[]): Promise<{ url: string; stop: () => Promise<number | null> }> {
  const process_ = spawn(process.execPath, [join(repo, 'agent/byoi.ts'), 'serve', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => process_.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let stderr = '';
    process_.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /listening on (https?:\/\/\S+)/.exec(stderr);
      if (match) resolve({ url: match[1]!, stop: () => (process_.kill('SIGTERM'), exited) });
    });
    void exited.then((code) => reject(new Error(`byoi serve exited ${code}: ${stderr}`)));
  });
}

/** An operator subcommand of `byoi serve`, its secret on stdin. */
export async function serveAdmin(
  args: string[],
  stdin = '',
): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const result = await execa(process.execPath, [join(repo, 'agent/byoi.ts'), 'serve', ...args], {
    input: stdin,
    reject: false,
  });
  return { stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode ?? -1 };
}
