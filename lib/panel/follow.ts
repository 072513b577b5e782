// A server's state and its deployment as the panel shows them: the follow page renders this view and
// its script polls the same view as JSON.
import type { Deployment, Step } from '../api/store/types.ts';
import { byoiStatusView, installStatusView, taskView } from '../api/views.ts';
import type { PhaseName } from '../report/phases.ts';
import { formatRate, formatSeconds } from './i18n.ts';

export type ServerState =
  | { readonly kind: 'idle' }
  | { readonly kind: 'deploying'; readonly phase: PhaseName; readonly percent: number | null }
  | { readonly kind: 'done' }
  | { readonly kind: 'error' }
  | { readonly kind: 'cancelled' };

/** Whether DELETE stopped it while it ran: its task is `cancelled`, as the API's task route says. */
const isCancelled = (deployment: Deployment) => taskView(deployment).status === 'cancelled';

/**
 * The deployment the panel shows for a server, from its latest one (Store.latest): a cancelled one
 * stays in view; one DELETE erased once finished is gone (the server is idle in rescue).
 */
export function shownDeployment(latest: Deployment | undefined): Deployment | undefined {
  return latest && (!latest.erased || isCancelled(latest)) ? latest : undefined;
}

export function serverState(deployment: Deployment | undefined): ServerState {
  if (!deployment) return { kind: 'idle' };
  if (isCancelled(deployment)) return { kind: 'cancelled' };
  if (deployment.status === 'doing')
    return {
      kind: 'deploying',
      phase: deployment.phase,
      percent: byoiStatusView(deployment.serviceName, deployment).percent,
    };
  return { kind: deployment.status };
}

export interface FollowView {
  readonly state: ServerState;
  readonly phase: PhaseName | null;
  readonly percent: number | null;
  readonly rate: string | null;
  readonly eta: string | null;
  /** The API's message: the current step, or the final sentence (which names the disk written). */
  readonly message: string | null;
  /** A failed deployment's cause in more words, redacted, as the API's GET gives it beside `message`. */
  readonly detail: string | null;
  readonly steps: readonly { comment: string; status: string; error?: string }[];
  /** Whether the page should keep polling. */
  readonly live: boolean;
}

export function followView(deployment: Deployment | undefined, steps: readonly Step[]): FollowView {
  const state = serverState(deployment);
  if (!deployment)
    return {
      state,
      phase: null,
      percent: null,
      rate: null,
      eta: null,
      message: null,
      detail: null,
      steps: [],
      live: false,
    };
  const doing = state.kind === 'deploying';
  const progress = doing ? deployment.progress : null;
  const eta = progress?.etaSeconds;
  const status = byoiStatusView(deployment.serviceName, deployment);
  return {
    state,
    phase: deployment.phase,
    percent: deployment.status === 'done' ? 100 : status.percent,
    rate: progress && progress.bytesPerSecond > 0 ? formatRate(progress.bytesPerSecond) : null,
    eta: eta !== undefined && eta !== null ? formatSeconds(eta) : null,
    message: status.message,
    detail: status.detail,
    steps: installStatusView(deployment, steps).progress,
    live: doing,
  };
}
