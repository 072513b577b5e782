// What a customer can do to a server's deployment, whichever face they use (the OVH API, the control
// panel): one implementation of each rule and message. Callers have already checked who may act.
import { ByoiError, bootFailed, bootStep, deploymentRunning, refusedJob } from '../errors.ts';
import { validateJob } from '../job.ts';
import { newAgentToken } from './auth.ts';
import type { ApiContext } from './context.ts';
import { contractBody, jobInputFor } from './job-body.ts';
import type { Deployment, DeploymentKind } from './store/types.ts';

/** The one job validation of a deployment's body: throws the ApiError (400) the API answers. */
export function checkDeploymentBody(kind: DeploymentKind, body: unknown): void {
  try {
    validateJob(jobInputFor(kind, body));
  } catch (error) {
    if (error instanceof ByoiError && error.kind === 'invalid-job') throw refusedJob(error);
    throw error;
  }
}

/** Validates the body with the one job validation, then records the deployment and boots the server. */
export async function startDeployment(
  options: ApiContext,
  serviceName: string,
  kind: DeploymentKind,
  body: unknown,
): Promise<Deployment> {
  const { store, boot } = options;
  checkDeploymentBody(kind, body);
  const { token, hash } = newAgentToken();
  const created = await store.create({
    serviceName,
    kind,
    body: contractBody(kind, body),
    tokenHash: hash,
    phase: bootStep.phase,
    message: bootStep.message,
  });
  if (created === 'conflict') throw deploymentRunning(serviceName);
  try {
    await boot.boot({ serverUrl: options.agentUrl(), serviceName, token });
  } catch (error) {
    const message = error instanceof ByoiError ? error.message : bootFailed(serviceName).message;
    options.log.error({ serviceName, error: String(error) }, message);
    return store.record(created.id, [{ status: 'error', message, errorKind: 'failed', at: new Date().toISOString() }]);
  }
  return created;
}

/** DELETE: the deployment's status is erased, its agent's token void, and the server goes to rescue. */
export async function eraseDeployment(options: ApiContext, serviceName: string): Promise<void> {
  await options.store.erase(serviceName);
  await options.boot.rescue(serviceName);
}
