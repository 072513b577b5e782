// Phase names are one union (PhaseName); text read back from the store is narrowed to it once.
import { describe, expect, it } from 'vitest';
import { ByoiError } from '../../lib/errors.ts';
import { phaseNameOf, phaseNames } from '../../lib/report/phases.ts';

describe('phase names', () => {
  it('read back from the store are the known ones, each as it is', () => {
    for (const name of phaseNames) expect(phaseNameOf(name)).toBe(name);
  });

  it('refuses text that names no phase, with its code', () => {
    for (const text of ['', 'Download', 'writing', 'boot ']) {
      expect(() => phaseNameOf(text), text).toThrow(ByoiError);
      expect(() => phaseNameOf(text), text).toThrow(expect.objectContaining({ code: 'unknown-phase' }));
    }
  });
});
