import type { Readable } from "node:stream";
import { MAX_SERVICE_LOG_LINE_BYTES, MAX_SERVICE_STOP_GRACE_MS, type ServiceLogStream, type ServiceResult, type ServiceSpec, type ServiceStatus } from "@capsule/agent-protocol";
import { resolveCwd, userEnv, vmEnv } from "../launch.js";
import { resolveGroupId, resolveUser, type UserInfo } from "../users.js";
import { LineSplitter, ServiceLogWriter } from "./log-file.js";
import { startServiceProcess, type ServiceProcess } from "./process.js";
import { StartLimiter, restartDelayMs, runResult, shouldRestart, type RunEnd } from "./restart-policy.js";
import { isSettled, systemdStates, type Phase } from "./states.js";

const SHELL = "/bin/sh";
/** The stop grace when the definition gives no timeoutSec (systemd's 90 s is longer than the host waits). */
export const DEFAULT_STOP_GRACE_MS = 10_000;

/** What a unit tells its supervisor. */
export interface UnitEvents {
  /** Failed for good (no restart coming): its onFailure units start. */
  failed(unit: Unit): void;
  /** It was up and is down now (stopped, failed, or done): the units requiring it stop. */
  wentDown(unit: Unit): void;
  /** A oneshot run succeeded and the definition asked to be deleted then. */
  succeeded(unit: Unit): void;
}

function describeEnd(end: RunEnd): string {
  switch (end.kind) {
    case "exit":
      return `Main process exited, status=${end.code}`;
    case "signal":
      return `Main process killed by ${end.signal}`;
    case "timeout":
      return "Timed out";
    default:
      return "Could not start";
  }
}

/**
 * One service and its runs. A run executes the definition's command lines one after another
 * (`/bin/sh -c`, as its user, through the fork server, each in its own process group); a
 * `service` is up from its first command's start, a `oneshot` once they all succeeded. What the
 * commands write goes, line by line, into the service's log, read only as fast as the log file
 * takes it.
 */
export class Unit {
  #phase: Phase = "inactive";
  #up = false;
  #result: ServiceResult = "success";
  #proc: ServiceProcess | undefined;
  /** The last command: what an exited oneshot left running in its group is killed by a stop. */
  #last: ServiceProcess | undefined;
  #restarts = 0;
  #limiter: StartLimiter;
  #restartTimer: NodeJS.Timeout | undefined;
  #stopping = false;
  #run: Promise<void> | undefined;
  #waiters: Array<() => void> = [];
  #log: ServiceLogWriter | undefined;
  /** Deleted: nothing more is logged (a late line would bring the removed log file back). */
  #logClosed = false;

  constructor(
    private definition: ServiceSpec,
    private readonly logFile: string,
    private readonly events: UnitEvents,
  ) {
    this.#limiter = new StartLimiter(definition.restart);
  }

  get spec(): ServiceSpec {
    return this.definition;
  }

  get name(): string {
    return this.definition.name;
  }

  /** A new definition; a run in progress goes on with the old one. */
  redefine(spec: ServiceSpec): void {
    this.definition = spec;
    this.#limiter = new StartLimiter(spec.restart);
  }

  status(): ServiceStatus {
    return {
      name: this.name,
      user: this.definition.user ?? "root",
      enabled: this.definition.enable,
      ...systemdStates(this.#phase),
      result: this.#result,
      pid: this.#proc?.pid ?? null,
      restarts: this.#restarts,
    };
  }

  /** Up, or a oneshot whose last run succeeded: what a unit waiting for it needs. */
  get cameUp(): boolean {
    return this.#phase === "running" || this.#phase === "exited" || (this.#phase === "inactive" && this.#result === "success" && this.definition.mode === "oneshot");
  }

  /** Starts it unless it is up or on its way; resolves once it settled, with {@link cameUp}. */
  async start(): Promise<boolean> {
    if (this.#phase === "stopping") await this.#run;
    if (this.#phase === "running" || this.#phase === "exited") return true;
    if (this.#phase === "inactive" || this.#phase === "failed") {
      // A start by hand (or at boot) gets a fresh start limit, as systemd's reset-failed gives.
      this.#limiter.reset();
      this.#restarts = 0;
      this.#begin();
    }
    return this.#settled();
  }

  /** SIGTERM to the process group, SIGKILL after the grace; resolves once the run ended. */
  async stop(): Promise<void> {
    clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    if (this.#phase === "activating" || this.#phase === "running" || this.#phase === "stopping") {
      if (this.#phase !== "stopping") {
        this.#stopping = true;
        this.#say("Stopping");
        this.#setPhase("stopping");
        this.#kill("SIGTERM");
      }
      const timeoutMs = this.definition.timeoutSec ? this.definition.timeoutSec * 1000 : DEFAULT_STOP_GRACE_MS;
      const grace = setTimeout(() => this.#kill("SIGKILL"), Math.min(timeoutMs, MAX_SERVICE_STOP_GRACE_MS));
      await this.#run;
      clearTimeout(grace);
      return;
    }
    this.#last?.signalGroup("SIGKILL");
    if (this.#phase === "exited" || this.#phase === "auto-restart") this.#setPhase("inactive");
  }

  /** It cannot start: a unit it requires is missing or did not come up. */
  dependencyFailed(why: string): void {
    this.#say(`Dependency failed: ${why}`);
    this.#result = "dependency";
    this.#setPhase("inactive");
  }

  /** Writes a line of the supervisor's own into the service's log. */
  note(message: string): void {
    this.#say(message);
  }

  /** Kills whatever runs at once (the agent is going away, or the service was deleted). */
  kill(): void {
    clearTimeout(this.#restartTimer);
    this.#stopping = true;
    this.#kill("SIGKILL");
    this.#last?.signalGroup("SIGKILL");
  }

  closeLog(): void {
    this.#logClosed = true;
    this.#log?.close();
    this.#log = undefined;
  }

  #settled(): Promise<boolean> {
    if (isSettled(this.#phase)) return Promise.resolve(this.cameUp);
    return new Promise((resolve) => this.#waiters.push(() => resolve(this.cameUp)));
  }

  #setPhase(phase: Phase): void {
    this.#phase = phase;
    if (phase === "running" || phase === "exited") this.#up = true;
    if (isSettled(phase)) {
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const w of waiters) w();
    }
    if (this.#up && (phase === "inactive" || phase === "failed")) {
      this.#up = false;
      this.events.wentDown(this);
    }
  }

  #begin(opts: { restart: boolean } = { restart: false }): void {
    this.#stopping = false;
    if (!this.#limiter.allow(Date.now())) {
      this.#say("Start request repeated too quickly: the start limit was hit, no more restarts");
      this.#result = "start-limit-hit";
      this.#setPhase("failed");
      this.events.failed(this);
      return;
    }
    if (opts.restart) this.#restarts++;
    this.#setPhase("activating");
    this.#run = this.#execute();
  }

  async #execute(): Promise<void> {
    const spec = this.definition;
    let end: RunEnd = { kind: "exit", code: 0 };
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    try {
      const { user, env, cwd } = await this.#launchContext(spec);
      if (spec.mode === "oneshot" && spec.timeoutSec) {
        timer = setTimeout(() => {
          timedOut = true;
          this.#say(`Start timed out after ${spec.timeoutSec} s: killing it`);
          this.#kill("SIGKILL");
        }, spec.timeoutSec * 1000);
      }
      for (const command of spec.exec) {
        if (this.#stopping || timedOut) break;
        const proc = await startServiceProcess(user, [SHELL, "-c", command], env, cwd);
        this.#attach(proc);
        if (this.#stopping || timedOut) this.#kill("SIGKILL"); // a stop (or the time limit) came while it started
        else if (spec.mode === "service" && this.#phase === "activating") {
          this.#say(`Started (pid ${proc.pid})`);
          this.#setPhase("running");
        }
        const exit = await proc.exited;
        this.#proc = undefined;
        end = exit.signal ? { kind: "signal", signal: exit.signal } : { kind: "exit", code: exit.code ?? 0 };
        if (runResult(end) !== "success") break;
      }
    } catch (err) {
      this.#say(`Failed to start: ${(err as Error).message}`);
      end = { kind: "resources" };
    } finally {
      clearTimeout(timer);
    }
    this.#ended(timedOut ? { kind: "timeout" } : end, spec);
  }

  #ended(end: RunEnd, spec: ServiceSpec): void {
    // A service's main process took what it left behind with it (systemd's control-group kill).
    if (spec.mode === "service") this.#last?.signalGroup("SIGKILL");
    if (this.#stopping) {
      this.#result = "success";
      this.#say("Stopped");
      this.#setPhase("inactive");
      return;
    }
    const result = runResult(end);
    this.#say(describeEnd(end));
    if (result === "success" && spec.mode === "oneshot") {
      this.#result = "success";
      this.#setPhase(spec.remainAfterExit === false ? "inactive" : "exited");
      if (spec.deleteAfterSuccess) this.events.succeeded(this);
      return;
    }
    this.#result = result;
    if (shouldRestart(spec.restart, end)) {
      this.#setPhase("auto-restart");
      this.#restartTimer = setTimeout(() => {
        this.#restartTimer = undefined;
        this.#begin({ restart: true });
      }, restartDelayMs(spec.restart));
      return;
    }
    if (result === "success") this.#setPhase("inactive");
    else {
      this.#setPhase("failed");
      this.events.failed(this);
    }
  }

  async #launchContext(spec: ServiceSpec): Promise<{ user: UserInfo; env: Record<string, string>; cwd: string }> {
    let user = await resolveUser(spec.user);
    if (spec.group !== undefined) {
      const gid = await resolveGroupId(spec.group);
      // Group= replaces the primary group; the user's memberships stay (initgroups with that gid).
      user = { ...user, gid, groups: [gid, ...user.groups.slice(1).filter((g) => g !== gid)] };
    }
    return { user, env: userEnv(user, { ...(await vmEnv()), ...spec.env }), cwd: await resolveCwd(user, spec.workdir ?? "/") };
  }

  #kill(signal: NodeJS.Signals): void {
    this.#proc?.signalGroup(signal);
  }

  #writer(): ServiceLogWriter | undefined {
    if (this.#logClosed) return undefined;
    this.#log ??= new ServiceLogWriter(this.logFile);
    return this.#log;
  }

  #say(message: string): void {
    this.#writer()?.write("supervisor", Buffer.from(message));
  }

  /** Logs the process's output; while the log file lags, neither pipe is read (the service blocks on a full pipe). */
  #attach(proc: ServiceProcess): void {
    this.#proc = proc;
    this.#last = proc;
    let paused = false;
    const pause = () => {
      if (paused) return;
      paused = true;
      proc.stdout.pause();
      proc.stderr.pause();
      this.#log?.onDrain(() => {
        paused = false;
        proc.stdout.resume();
        proc.stderr.resume();
      });
    };
    const outputs: Array<[Readable, ServiceLogStream]> = [
      [proc.stdout, "stdout"],
      [proc.stderr, "stderr"],
    ];
    for (const [stream, name] of outputs) {
      const lines = new LineSplitter(MAX_SERVICE_LOG_LINE_BYTES, (line) => {
        const log = this.#writer();
        if (log && !log.write(name, line)) pause();
      });
      stream.on("data", (chunk: Buffer) => lines.push(chunk));
      stream.on("end", () => lines.flush());
      stream.on("error", () => undefined);
    }
  }
}
