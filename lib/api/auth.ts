// Who may call what. Customers send an API key from the config file, agents the token of their own
// deployment, both as "Authorization: Bearer <secret>". Agent tokens are stored hashed only.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ApiConfig } from './config.ts';

/** How a boot command gets the agent's token (lib/api/boot.ts) and the agent reads it (agent/remote/settings.ts): never argv. */
export const TOKEN_ENV = 'BYOI_AGENT_TOKEN';
export const TOKEN_FILE_ENV = 'BYOI_AGENT_TOKEN_FILE';

export function bearer(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * A fresh agent token (256 random bits) and the hash the store keeps. Hex: it goes into boot
 * commands (`--token {token}`) and kernel command lines, where a base64url token starting with
 * "-" (one in 64) was read as a cluster of flags and the agent never started.
 */
export function newAgentToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString('hex');
  return { token, hash: hashToken(token) };
}

function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

export type CustomerCheck = 'allowed' | 'unknown-key' | 'not-yours' | 'no-such-server';

/** Whether the config gives `apiKey` (a lab's Bearer key) to any server. */
export function knownApiKey(config: ApiConfig, apiKey: string): boolean {
  return config.servers.some((s) => s.apiKeys.some((k) => sameSecret(k, apiKey)));
}

/** Whether `apiKey` may manage `serviceName`. */
export function checkCustomer(config: ApiConfig, apiKey: string, serviceName: string): CustomerCheck {
  if (!knownApiKey(config, apiKey)) return 'unknown-key';
  const server = config.servers.find((s) => s.serviceName === serviceName);
  if (!server) return 'no-such-server';
  return server.apiKeys.some((k) => sameSecret(k, apiKey)) ? 'allowed' : 'not-yours';
}
