// The API's answers, in OVH's field names and types: ByoiStatus, task.Response, install status.
import type { DisksReportShape } from '../disk/report.ts';
import type { PhaseName } from '../report/phases.ts';
import type { Deployment, DisksReport, Step } from './store/types.ts';

/** `dedicated.server.ByoiStatus`, plus the phase and its progress. */
export interface ByoiStatusView {
  checksum: string | null;
  message: string | null;
  /** An error's cause in more words (redacted), beside OVH's sentence in `message`. */
  detail: string | null;
  servername: string;
  status: 'doing' | 'done' | 'error' | null;
  phase: PhaseName | null;
  /** 0-100 within the current phase; null when the phase moves no bytes or its size is unknown. */
  percent: number | null;
  progress: { done: number; total: number | null; bytesPerSecond: number } | null;
}

export function byoiStatusView(serviceName: string, deployment: Deployment | undefined): ByoiStatusView {
  if (!deployment)
    return {
      checksum: null,
      message: null,
      detail: null,
      servername: serviceName,
      status: null,
      phase: null,
      percent: null,
      progress: null,
    };
  const { progress } = deployment;
  const percent = progress && progress.total ? Math.min(100, Math.floor((progress.done * 100) / progress.total)) : null;
  return {
    checksum: deployment.checksum,
    message: deployment.message,
    detail: deployment.status === 'error' ? deployment.detail : null,
    servername: serviceName,
    status: deployment.status,
    phase: deployment.phase,
    percent,
    progress,
  };
}

export type TaskStatus = 'cancelled' | 'customerError' | 'doing' | 'done' | 'init' | 'ovhError' | 'todo';

/** `dedicated.server.task.Response`. */
export interface TaskView {
  taskId: number;
  function: 'reinstallServer';
  status: TaskStatus;
  comment: string;
  startDate: string;
  doneDate: string | null;
}

function taskStatus(deployment: Deployment): TaskStatus {
  if (deployment.cancelled) return 'cancelled';
  if (deployment.status === 'done') return 'done';
  if (deployment.status === 'error')
    return (deployment.fault ?? (deployment.errorKind === 'failed' ? 'lab' : 'customer')) === 'customer'
      ? 'customerError'
      : 'ovhError';
  if (deployment.erased) return 'cancelled';
  return deployment.jobTakenAt ? 'doing' : 'init';
}

export function taskView(deployment: Deployment): TaskView {
  return {
    taskId: deployment.id,
    function: 'reinstallServer',
    status: taskStatus(deployment),
    comment: 'Start bare metal OS installation',
    startDate: deployment.startedAt,
    doneDate: deployment.finishedAt,
  };
}

export type StepStatus = 'doing' | 'done' | 'error' | 'expired' | 'idle' | 'pending' | 'stopping' | 'todo';

/** `GET /dedicated/server/{serviceName}/install/status`. */
export interface InstallStatusView {
  elapsedTime: number;
  progress: { comment: string; error?: string; status: StepStatus }[];
}

export function installStatusView(deployment: Deployment, steps: readonly Step[], now = new Date()): InstallStatusView {
  const end = deployment.finishedAt ? new Date(deployment.finishedAt) : now;
  const elapsedTime = Math.max(0, Math.round((end.getTime() - new Date(deployment.startedAt).getTime()) / 1000));
  const progress = steps.map((step, i) => {
    if (i < steps.length - 1 || deployment.status === 'done') return { comment: step.comment, status: 'done' as const };
    if (deployment.status === 'error')
      return { comment: step.comment, error: deployment.message, status: 'error' as const };
    return { comment: step.comment, status: 'doing' as const };
  });
  return { elapsedTime, progress };
}

/** `dedicated.server.Dedicated`: the basic fields of a server, as OVH names them; a lab knows few of them. */
export interface DedicatedServerView {
  name: string;
  serverId: number | null;
  state: 'error' | 'hacked' | 'hackedBlocked' | 'ok';
  powerState: 'poweroff' | 'poweron';
  os: string;
  bootId: number | null;
  rootDevice: string | null;
  datacenter: string | null;
  rack: string | null;
  commercialRange: string | null;
  ip: string | null;
  reverse: string | null;
  linkSpeed: number | null;
  monitoring: boolean;
  noIntervention: boolean;
  professionalUse: boolean;
  supportLevel: 'critical' | 'fastpath' | 'gs' | 'pro';
}

export function dedicatedServerView(serviceName: string, deployment: Deployment | undefined): DedicatedServerView {
  return {
    name: serviceName,
    serverId: null,
    state: 'ok',
    powerState: 'poweron',
    // OVH names a server installed from a customer's image byoi_64; none_64 before any install.
    os: deployment?.status === 'done' ? 'byoi_64' : 'none_64',
    bootId: null,
    rootDevice: null,
    datacenter: null,
    rack: null,
    commercialRange: null,
    ip: null,
    reverse: null,
    linkSpeed: null,
    monitoring: false,
    noIntervention: false,
    professionalUse: false,
    supportLevel: 'pro',
  };
}

/** `dedicated.server.HardwareSpecifications`' diskGroups, from the agent's report, with its disks and when it came. */
export function hardwareView(disks: DisksReport) {
  const report = disks.report as DisksReportShape;
  return {
    diskGroups: report.groups.map((g) => ({
      diskGroupId: g.id,
      description: g.description,
      diskType: g.media,
      diskSize: { unit: 'GB', value: g.sizeGB },
      numberOfDisks: g.disks.length,
      raidController: null,
      defaultHardwareRaidType: null,
      defaultHardwareRaidSize: null,
      disks: g.disks,
    })),
    disks: report.disks,
    reportedAt: disks.reportedAt,
  };
}
