// What the API keeps: deployments, their steps and each server's boot state. The API talks to this
// interface only; lib/api/store/sqlite.ts is the embedded implementation. Every method is async so
// that a networked database (several replicas) can stand behind the same interface.
import type { AuthFailures } from '../auth-failures.ts';
import type { ErrorKind, Fault } from '../../errors.ts';
import type { PhaseName } from '../../report/phases.ts';
import type { PhaseProgress, StatusState } from '../../report/status.ts';
import type { SecretBox } from './secret-box.ts';
import type { Database } from './sql.ts';

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
  readonly phase: PhaseName;
  readonly progress: PhaseProgress | null;
  readonly startedAt: string;
  readonly jobTakenAt: string | null;
  readonly finishedAt: string | null;
  /** Erased by DELETE: no longer the server's status, and its agent token is void. */
  readonly erased: boolean;
  /** The error's cause in more words (redacted by the agent), beside OVH's sentence in `message`. */
  readonly detail: string | null;
  /** Whose fault the error is: customerError or ovhError. */
  readonly fault: Fault | null;
  /** DELETE came while it was `doing`: the task is `cancelled`. */
  readonly cancelled: boolean;
  /** The last time its agent was heard from (or the start): what the watchdog looks at. */
  readonly heardAt: string;
  /** How many times the server netbooted the rescue for it. */
  readonly boots: number;
  /** Who ended it when its agent could not: the watchdog or a netboot; an outcome the agent delivers later wins. */
  readonly settledBy: 'watchdog' | 'netboot' | null;
}

/** What an agent reports: one status change, in the status file's vocabulary. */
export interface AgentEvent {
  readonly status: StatusState;
  readonly message: string;
  readonly errorKind?: ErrorKind | null;
  readonly checksum?: string | null;
  readonly phase?: PhaseName | null;
  readonly progress?: PhaseProgress | null;
  /** When the agent saw it (ISO 8601); delivery may be much later. Informative: the server's clock dates steps and outcomes. */
  readonly at?: string;
  /** An error's cause in more words, redacted. */
  readonly detail?: string | null;
  readonly fault?: Fault | null;
}

/** One phase of a deployment, as `install/status` lists it. */
export interface Step {
  readonly phase: PhaseName;
  readonly comment: string;
  readonly startedAt: string;
}

export interface NewDeployment {
  readonly serviceName: string;
  readonly kind: DeploymentKind;
  /** The customer's request body, validated and cut down to the contract's fields; the agent validates it again. */
  readonly body: unknown;
  readonly tokenHash: string;
  readonly phase: PhaseName;
  readonly message: string;
}

/** What a server's netboot gets, from the store's state (lib/api/netboot.ts). */
export type NetbootState =
  | { readonly boot: 'deploy'; readonly deployment: Deployment }
  | { readonly boot: 'rescue' }
  | { readonly boot: 'disk' };

/** The disks and disk groups an agent found on its server when it started (agent/commands/disks.ts's report). */
export interface DisksReport {
  readonly report: unknown;
  readonly reportedAt: string;
}

export interface Store {
  /** Failed authentications per client, kept with the rest of the state. */
  readonly authFailures: AuthFailures;
  /** Starts a deployment, or answers 'conflict' when one is already `doing` on that server. */
  create(input: NewDeployment): Promise<Deployment | 'conflict'>;
  /** The server's current (latest, not erased) deployment. */
  current(serviceName: string): Promise<Deployment | undefined>;
  /** The server's latest deployment, erased or not (the panel shows one DELETE cancelled). */
  latest(serviceName: string): Promise<Deployment | undefined>;
  byId(id: number): Promise<Deployment | undefined>;
  byTokenHash(tokenHash: string): Promise<Deployment | undefined>;
  /** The deployment's job body, kept apart from its state (sealed at rest); undefined once pruned. */
  jobBody(id: number): Promise<unknown | undefined>;
  markJobTaken(id: number): Promise<void>;
  /** Forgets the job bodies of deployments finished or erased before `before` (ISO 8601); answers how many. */
  pruneJobBodies(before: string): Promise<number>;
  /**
   * Applies an agent's events in order (none: a heartbeat; either way the agent was heard from). A final
   * status (done/error) is never overwritten, except one the API settled for want of news (`settledBy`).
   */
  record(id: number, events: readonly AgentEvent[]): Promise<Deployment>;
  steps(id: number): Promise<Step[]>;
  /** DELETE: erases the server's deployment status and marks it for rescue mode. */
  erase(serviceName: string): Promise<void>;
  /** Marks whether the server should boot into rescue mode (cleared when a deployment starts). */
  inRescue(serviceName: string): Promise<boolean>;
  /** Watchdog: ends in error every `doing` deployment not heard from since `cutoff` (ISO), with `message`; answers those it ended. */
  expireSilent(cutoff: string, message: string): Promise<Deployment[]>;
  /**
   * A netboot of the server: a `doing` deployment gets the rescue with the fresh token `tokenHash`
   * (the previous boot's token becomes void), unless it has had `maxBoots` boots already, which
   * settles it in error with `lostMessage`; else rescue if asked for; else the local disk.
   */
  netboot(serviceName: string, tokenHash: string, maxBoots: number, lostMessage: string): Promise<NetbootState>;
  reportDisks(serviceName: string, report: unknown): Promise<void>;
  disks(serviceName: string): Promise<DisksReport | undefined>;
  /** The database itself, for the tables of other concerns written over the same Sql (sessions-store.ts). */
  readonly sql: Database;
  /** What seals secrets at rest: job bodies here, and those other concerns keep (the panel's pending installs). */
  readonly secrets: SecretBox;
  close(): Promise<void>;
}
