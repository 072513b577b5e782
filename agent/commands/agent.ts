// byoi agent: started at boot in the rescue system, it takes its server's job from the provisioning
// API (byoi serve or any OVH-compatible one), deploys it with `byoi deploy`'s pipeline, reports
// every status change back, and reboots once the outcome is delivered.
import type { CommandModule } from 'yargs';
import type { JobInput } from '../../lib/job.ts';
import { run } from '../run.ts';

interface AgentArgs {
  server?: string;
  'service-name'?: string;
  'ca-file'?: string;
  insecure?: boolean;
  'token-file'?: string;
  cmdline: string;
  disk?: string;
  'ram-size'?: number;
  reboot?: boolean;
  'status-file'?: string;
  'job-timeout': number;
  'deliver-timeout': number;
  heartbeat: number;
}

/** Local settings that override the job: a disk named by hand, the RAM to assume, no reboot, a status file. */
function overrides(args: AgentArgs): JobInput {
  const input: JobInput = {
    disk: args.disk,
    ramSize: args['ram-size'],
    statusFile: args['status-file'],
    noReboot: args.reboot === false ? true : undefined,
  };
  return Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) as JobInput;
}

export const agentCommand: CommandModule<object, AgentArgs> = {
  command: 'agent',
  describe: "Take this server's job from the provisioning API, deploy it, report back and reboot",
  builder: (y) =>
    y
      .option('server', {
        type: 'string',
        describe: 'base URL of the provisioning API (else byoi.server= on the kernel command line)',
      })
      .option('service-name', { type: 'string', describe: "this server's serviceName (else byoi.service=)" })
      .option('ca-file', {
        type: 'string',
        describe:
          "PEM CA the API's certificate must chain to (else byoi.ca=, else /etc/byoi/api-ca.pem, else the system's)",
      })
      .option('insecure', {
        type: 'boolean',
        describe: 'allow a plain http:// API (the token travels in clear; else byoi.insecure=1)',
      })
      .option('token-file', {
        type: 'string',
        describe:
          "file (mode 0600) holding this deployment's agent token; else $BYOI_AGENT_TOKEN, $BYOI_AGENT_TOKEN_FILE or byoi.token=",
      })
      .option('cmdline', {
        type: 'string',
        default: '/proc/cmdline',
        describe: 'kernel command line to read byoi.* settings from',
      })
      .option('disk', {
        type: 'string',
        describe: "write this disk instead of the job's disk group (tests, manual use)",
      })
      .option('ram-size', { type: 'number', describe: 'bytes of RAM to assume instead of MemTotal' })
      .option('reboot', { type: 'boolean', describe: 'reboot when done (--no-reboot to stay)' })
      .option('status-file', { type: 'string', describe: 'also keep a local JSON status file' })
      .option('job-timeout', { type: 'number', default: 600, describe: 'seconds to keep trying to take the job' })
      .option('deliver-timeout', {
        type: 'number',
        default: 300,
        describe: 'seconds the reboot waits for the outcome to reach the API',
      })
      .option('heartbeat', {
        type: 'number',
        default: 5,
        describe: 'seconds of silence after which the agent asks the API whether its deployment still stands',
      }),
  handler: (args) =>
    run(async () => {
      const [{ deploy }, { runAgent }, { agentSettings, tokenFromEnvironment }] = await Promise.all([
        import('../deploy.ts'),
        import('../remote/run-agent.ts'),
        import('../remote/settings.ts'),
      ]);
      const token = tokenFromEnvironment(process.env, args['token-file']);
      const settings = agentSettings(
        {
          server: args.server,
          serviceName: args['service-name'],
          ...(token && { token }),
          caFile: args['ca-file'],
          insecure: args.insecure,
        },
        args.cmdline,
      );
      await runAgent({
        settings,
        overrides: overrides(args),
        pipeline: deploy,
        jobTimeoutMs: args['job-timeout'] * 1000,
        deliverTimeoutMs: args['deliver-timeout'] * 1000,
        heartbeatMs: Math.max(0.1, args.heartbeat) * 1000,
      });
    }),
};
