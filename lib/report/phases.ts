// The names of a deployment's phases, in pipeline order: the agent reports them (agent/deploy.ts via
// the Reporter) and the API accepts no others. `boot` is the API's own, before the agent runs.
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
