// A customer's request body as a job input: the API validates it with it when the request comes in,
// and the agent again when it takes its job; both through lib/job.ts's one validation.
import { jobFromLegacyBody, jobFromReinstallBody, type JobInput } from '../job.ts';
import { invalidJob, messages } from '../errors.ts';
import type { DeploymentKind } from './store/types.ts';

export function jobInputFor(kind: DeploymentKind, body: unknown): JobInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalidJob(messages.badJobBody);
  const fields = body as Record<string, unknown>;
  return kind === 'reinstall' ? jobFromReinstallBody(fields) : jobFromLegacyBody(fields);
}
