// The error vocabulary's shape: every failure has its own stable code, and an error keeps what caused it.
import { describe, expect, it } from 'vitest';
import * as errors from '../lib/errors.ts';
import {
  ByoiError,
  DeploymentCancelled,
  checksumMismatch,
  errorCodes,
  faultOf,
  rereadFailed,
  streamingAborted,
} from '../lib/errors.ts';
import { openImageFile } from '../agent/commands/read-image.ts';
import { ApiError } from '../lib/api/ovh-error.ts';

// Exports that make a ByoiError for a code the caller gives, or that are not factories at all.
const notFactories = new Set([
  'refusedJob',
  'streamingAborted',
  'exitCodeOf',
  'faultOf',
  'qcow2GuestData',
  'qcow2CompressedData',
  // Sentences that are not failures: details and reasons of one.
  'downloadDeadlineDetail',
  'apiUnreachableReason',
  'apiCertificateRefusedReason',
  'weakApiKeyReason',
  'tokenOnCommandLineReason',
]);

/** An argument that serves as a string, a number and a list alike: [1] prints as "1", and it trims. */
const anyArgument = Object.assign([1], { trim: () => '1' });

/** Every factory of lib/errors.ts, called with such arguments. */
function factoryErrors(): [string, ByoiError | ApiError][] {
  type Factory = (...args: unknown[]) => ByoiError | ApiError;
  return (Object.entries(errors) as [string, unknown][])
    .filter(
      (entry): entry is [string, Factory] =>
        typeof entry[1] === 'function' && !notFactories.has(entry[0]) && !/^[A-Z]/.test(entry[0]),
    )
    .map(([name, factory]) => [name, factory(...Array.from({ length: factory.length }, () => anyArgument))]);
}

describe('error codes', () => {
  it('are kebab-case, listed once, and stay as they are (a renamed code breaks the API, the panel and scripts)', () => {
    for (const code of errorCodes) expect(code).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
    expect(new Set(errorCodes).size).toBe(errorCodes.length);
    expect(errorCodes).toMatchSnapshot();
  });

  it('are one per factory: no two factories of lib/errors.ts give the same code', () => {
    const made = factoryErrors();
    expect(made.length).toBeGreaterThan(40);
    for (const [name, error] of made) {
      expect(error instanceof ByoiError || error instanceof ApiError, name).toBe(true);
      expect(errorCodes, name).toContain(error.code);
    }
    const byCode = new Map<string, string[]>();
    for (const [name, error] of made) byCode.set(error.code, [...(byCode.get(error.code) ?? []), name]);
    expect([...byCode.values()].filter((names) => names.length > 1)).toEqual([]);
  });

  it('are each made by a factory (or the cancellation): no code is listed that nothing gives', () => {
    const given = new Set([...factoryErrors().map(([, error]) => error.code), new DeploymentCancelled('x').code]);
    expect(errorCodes.filter((code) => !given.has(code))).toEqual([]);
  });
});

describe('causes', () => {
  it('are kept as the standard ES2022 cause, beside the code, kind and detail', () => {
    const underlying = new Error('EIO: i/o error');
    const error = rereadFailed('/dev/sda', { detail: 'BLKRRPART', cause: underlying });
    expect(error.cause).toBe(underlying);
    expect([error.code, error.kind, error.detail]).toEqual(['reread-failed', 'failed', 'BLKRRPART']);
    expect(Object.hasOwn(rereadFailed('/dev/sda'), 'cause')).toBe(false);
  });

  it('of a failure once streaming has written is the first error, whose code and fault it keeps', () => {
    const first = checksumMismatch('sha256', 'a', 'b');
    const after = streamingAborted(first, '/dev/sdz');
    expect([after.code, after.cause, faultOf(after)]).toEqual(['checksum-mismatch', first, 'customer']);
  });

  it('of an unreadable image is the system call error', () => {
    let error: unknown;
    try {
      openImageFile('/nonexistent-byoi-test/image.raw');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ByoiError);
    expect((error as ByoiError).code).toBe('cannot-read-image');
    expect(((error as ByoiError).cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });
});
