// Job bodies hold the customer's secrets (URL credentials and signatures, header values, user data,
// SSH keys), so the store keeps them sealed with AES-256-GCM: unreadable without the key, and a body
// moved onto another deployment's row fails to open (the row is bound in as associated data). The
// key lives in a file of its own, mode 0600, never in the database, never logged.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { ByoiError, badSecretsKey } from '../../errors.ts';

const VERSION = 'v1';

export class SecretBox {
  private readonly key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new Error('an AES-256 key is 32 bytes');
    this.key = key;
  }

  /** A fresh key for a store that lives in memory only. */
  static ephemeral(): SecretBox {
    return new SecretBox(randomBytes(32));
  }

  /** The key in `path` (32 bytes, base64); created 0600 when missing, refused when others may read it. */
  static fromKeyFile(path: string): SecretBox {
    try {
      const fd = openSync(path, 'wx', 0o600);
      try {
        writeSync(fd, `${randomBytes(32).toString('base64')}\n`);
      } finally {
        closeSync(fd);
      }
      chmodSync(path, 0o600); // whatever the umask
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
        throw badSecretsKey(path, 'it cannot be created', {
          detail: String(error),
          cause: error,
        });
    }
    let text: string;
    try {
      if ((statSync(path).mode & 0o077) !== 0)
        throw badSecretsKey(path, 'others than its owner may read it (chmod 600)');
      text = readFileSync(path, 'utf8').trim();
    } catch (error) {
      if (error instanceof ByoiError) throw error;
      throw badSecretsKey(path, 'it cannot be read', {
        detail: String(error),
        cause: error,
      });
    }
    const key = Buffer.from(text, 'base64');
    if (key.length !== 32 || key.toString('base64') !== text) throw badSecretsKey(path, 'expected 32 bytes in base64');
    return new SecretBox(key);
  }

  seal(plain: string, context: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(context));
    const sealed = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return `${VERSION}:${Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64')}`;
  }

  open(text: string, context: string): string {
    if (!text.startsWith(`${VERSION}:`)) throw new Error('not a sealed value');
    const bytes = Buffer.from(text.slice(VERSION.length + 1), 'base64');
    const decipher = createDecipheriv('aes-256-gcm', this.key, bytes.subarray(0, 12));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(bytes.subarray(12, 28));
    return Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString('utf8');
  }
}
