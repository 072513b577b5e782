// Secrets for operator commands (passwords, consumer keys) come from standard input, never argv:
// piped, or typed at a prompt that does not echo them.
import { noSecret } from '../lib/errors.ts';

const MAX_SECRET = 4096;

function fromTerminal(prompt: string): Promise<string> {
  const input = process.stdin;
  process.stderr.write(prompt);
  input.setRawMode(true);
  input.resume();
  input.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let text = '';
    const finish = (error?: Error) => {
      input.setRawMode(false);
      input.pause();
      input.removeListener('data', onData);
      process.stderr.write('\n');
      if (error) reject(error);
      else resolve(text);
    };
    const onData = (chunk: string) => {
      for (const c of chunk) {
        if (c === '\r' || c === '\n' || c === '\u0004') return finish();
        if (c === '\u0003') return finish(noSecret(prompt.replace(/:\s*$/, '').toLowerCase()));
        if (c === '\u007f') text = text.slice(0, -1);
        else if (text.length < MAX_SECRET) text += c;
      }
    };
    input.on('data', onData);
  });
}

async function fromPipe(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) {
    text += String(chunk);
    if (text.length > MAX_SECRET) break;
  }
  return text.split(/\r?\n/)[0] ?? '';
}

/** One line of secret: `what` names it in the prompt and in the error when none is given. */
export async function readSecret(what: string): Promise<string> {
  const secret = process.stdin.isTTY
    ? await fromTerminal(`${what[0]!.toUpperCase()}${what.slice(1)}: `)
    : await fromPipe();
  if (secret === '' || secret.length > MAX_SECRET) throw noSecret(what);
  return secret;
}
