// What the API keeps: deployments, their steps and each server's boot state. The API talks to this
// interface only; lib/api/store/sqlite.ts is the embedded implementation. Every method is async so
// that a networked database (several replicas) can stand behind the same interface.
import type { ErrorKind } from '../../errors.ts';
import type { Progress, StatusState } from '../../status.ts';

/** Which route started a deployment: the legacy one or `/reinstall`. */
export type DeploymentKind = 'bringYourOwnImage' | 'reinstall';

export interface Deployment {
  /** Also the taskId of the deployment's task. */
  readonly id: number;
  readonly serviceName: string;
  readonly kind: DeploymentKind;
  readonly status: StatusState;
  readonly message: string;
  readonly errorKind: ErrorKind | null;
  readonly checksum: string | null;
  readonly phase: string;
  readonly progress: Progress | null;
  readonly startedAt: string;
  readonly jobTakenAt: string | null;
  readonly finishedAt: string | null;
  /** Erased by DELETE: no longer the server's status, and its agent token is void. */
  readonly erased: boolean;
}

/** What an agent reports: one status change, in the status file's vocabulary. */
export interface AgentEvent {
  readonly status: StatusState;
  readonly message: string;
  readonly errorKind?: ErrorKind | null;
  readonly checksum?: string | null;
  readonly phase?: string | null;
  readonly progress?: Progress | null;
  /** When the agent saw it (ISO 8601); delivery may be much later. Informative: the server's clock dates steps and outcomes. */
  readonly at?: string;
}

/** One phase of a deployment, as `install/status` lists it. */
export interface Step {
  readonly phase: string;
  readonly comment: string;
  readonly startedAt: string;
}

export interface NewDeployment {
  readonly serviceName: string;
  readonly kind: DeploymentKind;
  /** The customer's request body, validated and cut down to the contract's fields; the agent validates it again. */
  readonly body: unknown;
  readonly tokenHash: string;
  readonly phase: string;
  readonly message: string;
}

export interface Store {
  /** Starts a deployment, or answers 'conflict' when one is already `doing` on that server. */
  create(input: NewDeployment): Promise<Deployment | 'conflict'>;
  /** The server's current (latest, not erased) deployment. */
  current(serviceName: string): Promise<Deployment | undefined>;
  byId(id: number): Promise<Deployment | undefined>;
  byTokenHash(tokenHash: string): Promise<Deployment | undefined>;
  /** The deployment's job body, kept apart from its state (sealed at rest); undefined once pruned. */
  jobBody(id: number): Promise<unknown | undefined>;
  markJobTaken(id: number): Promise<void>;
  /** Forgets the job bodies of deployments finished or erased before `before` (ISO 8601); answers how many. */
  pruneJobBodies(before: string): Promise<number>;
  /** Applies an agent's events in order; a final status (done/error) is never overwritten by a later `doing`. */
  record(id: number, events: readonly AgentEvent[]): Promise<Deployment>;
  steps(id: number): Promise<Step[]>;
  /** DELETE: erases the server's deployment status and marks it for rescue mode. */
  erase(serviceName: string): Promise<void>;
  /** Marks whether the server should boot into rescue mode (cleared when a deployment starts). */
  inRescue(serviceName: string): Promise<boolean>;
  close(): Promise<void>;
}
