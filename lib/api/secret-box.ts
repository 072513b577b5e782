// Application secrets at rest: the signature check needs each application secret in clear, so the
// store keeps it encrypted (AES-256-GCM) under a key that lives in its own 0600 file beside the
// database, never in it. Consumer keys and validation tokens need no clear copy: they are kept hashed.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import { failed, ovhAuthMessages } from '../errors.ts';

export class SecretBox {
  private readonly key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new Error('a secret box key is 32 bytes');
    this.key = key;
  }

  /** The key file at `path`, made (32 random bytes, mode 0600) when it does not exist yet. */
  static fromFile(path: string): SecretBox {
    if (!existsSync(path)) {
      // 'wx': never overwrite a key another process has just made.
      try {
        const fd = openSync(path, 'wx', 0o600);
        writeSync(fd, `${randomBytes(32).toString('hex')}\n`);
        closeSync(fd);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
    }
    chmodSync(path, 0o600);
    const text = readFileSync(path, 'utf8').trim();
    if (!/^[0-9a-f]{64}$/.test(text)) throw failed(ovhAuthMessages.badSecretKeyFile(path));
    return new SecretBox(Buffer.from(text, 'hex'));
  }

  /** "v1.<iv>.<tag>.<ciphertext>", base64url parts. */
  seal(plain: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const data = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return ['v1', iv, cipher.getAuthTag(), data].map((p) => (typeof p === 'string' ? p : p.toString('base64url'))).join('.');
  }

  /** The clear text, or undefined when `sealed` was not made with this key (or was altered). */
  open(sealed: string): string | undefined {
    const [version, iv, tag, data] = sealed.split('.');
    if (version !== 'v1' || !iv || !tag || data === undefined) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()]).toString('utf8');
    } catch {
      return undefined;
    }
  }
}
