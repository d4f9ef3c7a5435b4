import type { Readable } from "node:stream";
import { MAX_SERVICE_LOG_LINE_BYTES, MAX_SERVICE_STOP_GRACE_MS, SERVICE_LIMITS, SERVICE_SETTLE_WAIT_MS, type ServiceLogStream, type ServiceResult, type ServiceSpec, type ServiceStatus } from "@capsule/agent-protocol";
import { resolveCwd, userEnv, vmEnv } from "../launch.js";
import { resolveGroupId, resolveUser, type UserInfo } from "../users.js";
import { LineSplitter, ServiceLogWriter } from "./log-file.js";
import { NotifySocket, sessionOf, type NotifyMessage } from "./notify.js";
import { startServiceProcess, type ServiceProcess } from "./process.js";
import { StartLimiter, restartDelayMs, runResult, shouldRestart, type RunEnd } from "./restart-policy.js";
import { isSettled, systemdStates, type Phase } from "./states.js";

const SHELL = "/bin/sh";
/** The stop grace when the definition gives no timeoutSec (systemd's 90 s is longer than the host waits). */
export const DEFAULT_STOP_GRACE_MS = 10_000;
/**
 * How long a readySignal service may take to send READY=1 when the definition gives no
 * timeoutSec: as long as a start's answer waits (systemd's TimeoutStartSec is 90 s), so a create
 * or start answers with the service active or failed rather than still activating.
 */
export const DEFAULT_READY_TIMEOUT_MS = SERVICE_SETTLE_WAIT_MS;
/** Senders a run remembers the verdict for (a flood from one process reads /proc once). */
const MAX_CHECKED_SENDERS = 64;
/**
 * A watchdog service's command, run so that WATCHDOG_PID is the main process's pid (sd_watchdog_enabled
 * checks it): the outer shell exports its own pid and execs the real command line in its place.
 */
const WITH_WATCHDOG_PID = 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec /bin/sh -c "$1"';

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
    case "watchdog":
      return "Killed by the watchdog";
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
  /** How the current run ends whatever its process says: a time limit or the watchdog fired. */
  #forcedEnd: RunEnd | undefined;
  /** The run's sd_notify socket (readySignal or watchdogSec) and what it arms. */
  #notify: NotifySocket | undefined;
  #awaitingReady = false;
  #readyTimer: NodeJS.Timeout | undefined;
  #watchdogMs = 0;
  #watchdogTimer: NodeJS.Timeout | undefined;
  /** SIGKILL after a watchdog's SIGABRT, once the stop grace passed. */
  #killTimer: NodeJS.Timeout | undefined;
  #senders = new Map<number, boolean>();
  #statusText = "";
  /** Notes made once per run: a refused sender, a MAINPID= ignored. */
  #noted = new Set<string>();
  /** Pauses the notify relay while the log lags (set while a notify socket is open). */
  #notifyLagged: (() => void) | undefined;

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
      if (!this.#stopping) {
        this.#stopping = true;
        this.#say("Stopping");
        this.#setPhase("stopping");
        this.#kill("SIGTERM");
      }
      const grace = setTimeout(() => this.#kill("SIGKILL"), this.#stopGraceMs());
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
    this.#endNotify();
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
    this.#forcedEnd = undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      const { user, env, cwd } = await this.#launchContext(spec);
      if (spec.mode === "oneshot" && spec.timeoutSec) {
        const ms = spec.timeoutSec * 1000;
        timer = setTimeout(() => this.#abort({ kind: "timeout" }, `Start timed out after ${spec.timeoutSec} s: killing it`, "SIGKILL"), ms);
      }
      if (spec.readySignal || spec.watchdogSec) await this.#openNotify(spec, user.uid, env);
      let first = true;
      for (const command of spec.exec) {
        if (this.#stopping || this.#forcedEnd) break;
        const argv = spec.watchdogSec ? [SHELL, "-c", WITH_WATCHDOG_PID, SHELL, command] : [SHELL, "-c", command];
        const proc = await startServiceProcess(user, argv, env, cwd);
        this.#attach(proc);
        if (this.#stopping || this.#forcedEnd) this.#kill("SIGKILL"); // a stop (or the time limit) came while it started
        else if (spec.mode === "service" && first) {
          this.#say(`Started (pid ${proc.pid})`);
          if (spec.readySignal) this.#awaitReady(spec);
          else this.#becameActive(spec);
        }
        first = false;
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
      this.#endNotify();
    }
    this.#ended(this.#forcedEnd ?? end, spec);
  }

  /** The run's notify socket: NOTIFY_SOCKET (and the watchdog's WATCHDOG_USEC) go into `env`. */
  async #openNotify(spec: ServiceSpec, uid: number, env: Record<string, string>): Promise<void> {
    this.#senders.clear();
    this.#noted.clear();
    this.#statusText = "";
    const socket = await NotifySocket.open(spec.name, uid, (pid, msg) => this.#notified(spec, pid, msg));
    this.#notify = socket;
    this.#notifyLagged = this.#pauser([socket.relay.stdout]);
    env.NOTIFY_SOCKET = socket.path;
    if (spec.watchdogSec) env.WATCHDOG_USEC = String(Math.round(spec.watchdogSec * 1e6));
  }

  #endNotify(): void {
    clearTimeout(this.#readyTimer);
    clearTimeout(this.#watchdogTimer);
    clearTimeout(this.#killTimer);
    this.#awaitingReady = false;
    this.#watchdogMs = 0;
    this.#notify?.close();
    this.#notify = undefined;
    this.#notifyLagged = undefined;
  }

  #awaitReady(spec: ServiceSpec): void {
    this.#awaitingReady = true;
    const ms = spec.timeoutSec === undefined ? DEFAULT_READY_TIMEOUT_MS : spec.timeoutSec * 1000;
    if (ms > 0) this.#readyTimer = setTimeout(() => this.#abort({ kind: "timeout" }, `Start timed out: no READY=1 within ${ms / 1000} s, killing it`, "SIGKILL"), ms);
  }

  #becameActive(spec: ServiceSpec): void {
    this.#setPhase("running");
    if (spec.watchdogSec) {
      this.#watchdogMs = spec.watchdogSec * 1000;
      this.#resetWatchdog();
    }
  }

  #resetWatchdog(): void {
    clearTimeout(this.#watchdogTimer);
    const ms = this.#watchdogMs;
    this.#watchdogTimer = setTimeout(() => this.#abort({ kind: "watchdog" }, `Watchdog timeout (limit ${ms / 1000} s): sending SIGABRT`, "SIGABRT"), ms);
  }

  /**
   * Ends the run as `end` (a time limit, the watchdog): `signal` to its process group, and when
   * that is not SIGKILL, SIGKILL after the stop grace. A stop under way wins.
   */
  #abort(end: RunEnd, message: string, signal: NodeJS.Signals): void {
    if (this.#stopping || this.#forcedEnd) return;
    this.#forcedEnd = end;
    clearTimeout(this.#watchdogTimer);
    this.#say(message);
    this.#kill(signal);
    if (signal !== "SIGKILL") this.#killTimer = setTimeout(() => this.#kill("SIGKILL"), this.#stopGraceMs());
  }

  /** One datagram from the notify socket, from process `pid` (0: the kernel did not say). */
  #notified(spec: ServiceSpec, pid: number, msg: NotifyMessage): void {
    if (!this.#fromService(pid) || this.#stopping || this.#forcedEnd) return;
    if (msg.mainPid) this.#noteOnce("mainpid", "MAINPID= ignored: the main process is the one the supervisor started");
    let logged = true;
    if (msg.status !== undefined && msg.status !== this.#statusText) {
      this.#statusText = msg.status;
      logged = this.#say(`Status: ${msg.status}`);
    }
    if (msg.ready && this.#awaitingReady) {
      this.#awaitingReady = false;
      clearTimeout(this.#readyTimer);
      this.#say("Ready (READY=1)");
      this.#becameActive(spec);
    }
    if (this.#watchdogMs > 0 && this.#phase === "running") {
      if (msg.watchdogUsec !== undefined) this.#watchdogMs = Math.max(1, Math.min(msg.watchdogUsec / 1000, SERVICE_LIMITS.seconds * 1000));
      if (msg.watchdog === "trigger") return this.#abort({ kind: "watchdog" }, "Watchdog triggered by the service (WATCHDOG=trigger): sending SIGABRT", "SIGABRT");
      if (msg.watchdog === "ping" || msg.watchdogUsec !== undefined) this.#resetWatchdog();
    }
    if (msg.stopping && (this.#phase === "running" || this.#phase === "activating")) {
      this.#awaitingReady = false;
      clearTimeout(this.#readyTimer);
      clearTimeout(this.#watchdogTimer);
      this.#say("Stopping (STOPPING=1)");
      this.#setPhase("stopping");
    }
    if (!logged) this.#notifyLagged?.();
  }

  /**
   * Whether a datagram's sender belongs to this service: its main process or one in its session
   * (each command starts a session of its own), so a process of the same user outside the
   * service cannot make it ready. Without a pid (the kernel gave none) the socket's owner and
   * mode are the only gate.
   */
  #fromService(pid: number): boolean {
    if (pid === 0) return true;
    const main = this.#proc?.pid;
    if (main === undefined) return false;
    let verdict = this.#senders.get(pid);
    if (verdict === undefined) {
      verdict = pid === main || sessionOf(pid) === main;
      if (this.#senders.size >= MAX_CHECKED_SENDERS) this.#senders.clear();
      this.#senders.set(pid, verdict);
    }
    if (!verdict) this.#noteOnce("sender", `Ignoring notifications from pid ${pid}: not a process of this service`);
    return verdict;
  }

  #noteOnce(key: string, message: string): void {
    if (this.#noted.has(key)) return;
    this.#noted.add(key);
    this.#say(message);
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

  #stopGraceMs(): number {
    const timeoutMs = this.definition.timeoutSec ? this.definition.timeoutSec * 1000 : DEFAULT_STOP_GRACE_MS;
    return Math.min(timeoutMs, MAX_SERVICE_STOP_GRACE_MS);
  }

  #kill(signal: NodeJS.Signals): void {
    this.#proc?.signalGroup(signal);
  }

  #writer(): ServiceLogWriter | undefined {
    if (this.#logClosed) return undefined;
    this.#log ??= new ServiceLogWriter(this.logFile);
    return this.#log;
  }

  /** False while the log file lags (see ServiceLogWriter.write). */
  #say(message: string): boolean {
    return this.#writer()?.write("supervisor", Buffer.from(message)) ?? true;
  }

  /** A pause of `streams` until the log file caught up: the service then blocks on its full pipe or socket, nothing piles up here. */
  #pauser(streams: Readable[]): () => void {
    let paused = false;
    return () => {
      if (paused) return;
      paused = true;
      for (const s of streams) s.pause();
      this.#log?.onDrain(() => {
        paused = false;
        for (const s of streams) s.resume();
      });
    };
  }

  /** Logs the process's output; while the log file lags, neither pipe is read (the service blocks on a full pipe). */
  #attach(proc: ServiceProcess): void {
    this.#proc = proc;
    this.#last = proc;
    const pause = this.#pauser([proc.stdout, proc.stderr]);
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
