/** `vm.systemd`: services the VM's agent supervises, with the official client's method names and shapes. @module */
import type {
  SystemdControlResult,
  SystemdCreateResult,
  SystemdDeleteResult,
  SystemdLogs,
  SystemdServiceList,
  SystemdServiceSpec,
  SystemdServiceStatus,
} from "@capsule/contract/schemas";
import { seg, type Transport } from "./transport.js";

/** Options of `getLogs()` / `service(id).logs()`. */
export interface ServiceLogsOptions {
  /** The newest lines to answer (default 100, at most 1000). */
  lines?: number;
  /** Only lines at or after this time (ISO 8601). */
  since?: string;
}

/** The services named by a start, stop or restart. */
export interface ServiceSelection {
  services: Array<{ id: string }>;
}

/** One service, for convenience calls; makes no request until used. */
export class SystemdService {
  /** @internal use `vm.systemd.service(id)`. */
  constructor(
    readonly serviceId: string,
    private readonly systemd: VmSystemd,
  ) {}

  status(): Promise<SystemdServiceStatus> {
    return this.systemd.getStatus({ serviceId: this.serviceId });
  }
  logs(options: ServiceLogsOptions = {}): Promise<SystemdLogs> {
    return this.systemd.getLogs({ serviceId: this.serviceId, ...options });
  }
  start(): Promise<SystemdControlResult> {
    return this.systemd.start({ services: [{ id: this.serviceId }] });
  }
  stop(): Promise<SystemdControlResult> {
    return this.systemd.stop({ services: [{ id: this.serviceId }] });
  }
  restart(): Promise<SystemdControlResult> {
    return this.systemd.restart({ services: [{ id: this.serviceId }] });
  }
  delete(): Promise<SystemdDeleteResult> {
    return this.systemd.delete({ serviceId: this.serviceId });
  }
}

/**
 * The VM's services. Definitions live in the VM (they survive a restart and travel with
 * snapshots); enabled ones start at every boot. A handle of `vm.user({ username })` creates
 * services that run as that user and sees only that user's.
 */
export class VmSystemd {
  /** @internal */
  constructor(
    private readonly t: Transport,
    private readonly vmId: string,
    private readonly user: string | undefined,
  ) {}

  #path(suffix: string): string {
    return `/v1/vms/${seg(this.vmId)}/systemd${suffix}`;
  }

  list(): Promise<SystemdServiceList> {
    return this.t.json("GET", this.#path("/services"), { user: this.user });
  }

  /** Defines a service; an enabled one (the default) is started, and the call answers once it is up. */
  create(spec: SystemdServiceSpec): Promise<SystemdCreateResult> {
    return this.t.json("POST", this.#path("/services"), { json: spec, user: this.user });
  }

  /** Stops the service and removes it with its logs. */
  delete({ serviceId }: { serviceId: string }): Promise<SystemdDeleteResult> {
    return this.t.json("DELETE", this.#path(`/services/${seg(serviceId)}`), { user: this.user });
  }

  getStatus({ serviceId }: { serviceId: string }): Promise<SystemdServiceStatus> {
    return this.t.json("GET", this.#path(`/services/${seg(serviceId)}/status`), { user: this.user });
  }

  getLogs({ serviceId, lines, since }: { serviceId: string } & ServiceLogsOptions): Promise<SystemdLogs> {
    return this.t.json("GET", this.#path(`/services/${seg(serviceId)}/logs`), { user: this.user, query: { lines, since } });
  }

  start({ services }: ServiceSelection): Promise<SystemdControlResult> {
    return this.t.json("POST", this.#path("/start"), { json: { services }, user: this.user });
  }

  stop({ services }: ServiceSelection): Promise<SystemdControlResult> {
    return this.t.json("POST", this.#path("/stop"), { json: { services }, user: this.user });
  }

  restart({ services }: ServiceSelection): Promise<SystemdControlResult> {
    return this.t.json("POST", this.#path("/restart"), { json: { services }, user: this.user });
  }

  /** A handle for one service; no request. */
  service(serviceId: string): SystemdService {
    return new SystemdService(serviceId, this);
  }
}
