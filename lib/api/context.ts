// What every group of routes is built from: the lab's configuration, the store and the boot control.
import type { BootAdapter } from './boot.ts';
import type { ApiConfig } from './config.ts';
import type { Store } from './store/types.ts';

export interface ApiOptions {
  readonly config: ApiConfig;
  readonly store: Store;
  readonly boot: BootAdapter;
  /** The URL agents use to reach this API; read when a deployment starts (the port may be known late). */
  readonly agentUrl: () => string;
  readonly logger?: boolean;
}

export type ServiceParams = { serviceName: string };
