// The names of a deployment's phases, in pipeline order: the agent reports them (agent/deploy.ts via
// the Reporter) and the API accepts no others. `boot` is the API's own, before the agent runs.
import { unknownPhase } from '../errors.ts';

export const phaseNames = [
  'boot',
  'validate',
  'plan',
  'download',
  'verify',
  'inspect',
  'release',
  'write',
  'read-back',
  'partitions',
  'configdrive',
  'boot-entry',
  'done',
] as const;

export type PhaseName = (typeof phaseNames)[number];

const known: ReadonlySet<string> = new Set(phaseNames);

/** A phase read back as text (the store's column), narrowed once at that boundary. */
export function phaseNameOf(text: string): PhaseName {
  if (!known.has(text)) throw unknownPhase(text);
  return text as PhaseName;
}
