/**
 * A VM's terminal: xterm.js over the PTY WebSocket. The socket is authorised by a single-use
 * token from `/console/api/pty-token` (browsers cannot set headers on a WebSocket). The session id
 * is kept in the URL, so a reload re-attaches the same session and the server replays its
 * scrollback; a dropped socket reconnects the same way. The terminal fits its box, and every size
 * change is sent as a `resize` control frame.
 */
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { useEffect, useRef, useState } from "react";
import { api, ApiError, vmPath, type PtySessionInfo } from "../api";
import { href, replaceHash } from "../router";
import { usePoll } from "./usePoll";

const LINUX_USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/;

export function TerminalPage({ vmId, query }: { vmId: string; query: URLSearchParams }) {
  const session = query.get("session") ?? undefined;
  const user = query.get("user") || "root";
  const [asUser, setAsUser] = useState(user);
  const [fresh, setFresh] = useState(0);
  const sessions = usePoll(() => api<{ sessions: PtySessionInfo[] }>("GET", `${vmPath(vmId)}/pty/sessions`).then((r) => r.sessions), 3000);
  const [current, setCurrent] = useState(session);

  const close = async (s: PtySessionInfo) => {
    const u: Record<string, string> = s.user && s.user !== "root" ? { "X-Freestyle-Vm-Linux-User-Id": s.user } : {};
    await api("DELETE", `${vmPath(vmId)}/pty/sessions/${encodeURIComponent(s.sessionId)}`, undefined, u).catch(() => undefined);
    sessions.reload();
  };
  const validUser = asUser === "root" || LINUX_USER_RE.test(asUser);

  return (
    <section className="terminal-page">
      <div className="title-row">
        <h2>
          Terminal · <code>{vmId}</code>
        </h2>
        <a href={href(["vms", vmId, "files"])}>Files</a>
        <span className="spacer" />
        <form
          className="row"
          onSubmit={(e) => {
            e.preventDefault();
            if (!validUser) return;
            setFresh((n) => n + 1);
            window.location.hash = href(["vms", vmId, "terminal"], { user: asUser, n: String(fresh + 1) });
          }}
        >
          <label className="inline">
            as
            <input value={asUser} onChange={(e) => setAsUser(e.target.value.trim())} size={10} data-testid="term-user" aria-invalid={!validUser} />
          </label>
          <button type="submit" disabled={!validUser} data-testid="new-session">
            New session
          </button>
        </form>
      </div>
      <div className="terminal-layout">
        <TermView key={`${user}:${session ?? `new-${query.get("n") ?? ""}`}`} vmId={vmId} user={user} sessionId={session} onSession={(id) => {
            setCurrent(id);
            sessions.reload();
          }}
        />
        <aside className="sessions" data-testid="sessions">
          <h3>Sessions</h3>
          {sessions.data?.length === 0 && <p className="muted">none</p>}
          {sessions.data?.map((s) => (
            <div key={s.sessionId} className={`session ${s.sessionId === current ? "current" : ""}`} data-session-id={s.sessionId}>
              <div>
                <code>{s.sessionId}</code> {s.user ?? "root"}
              </div>
              <div className="muted">
                {s.running ? `running · ${s.cols}×${s.rows} · ${s.attachedCount} attached` : `exited ${s.exitCode ?? ""}`}
              </div>
              <div className="row">
                {s.running && s.sessionId !== current && <a href={href(["vms", vmId, "terminal"], { session: s.sessionId, user: s.user ?? "root" })}>Attach</a>}
                <button onClick={() => void close(s)} data-testid="close-session">
                  Close
                </button>
              </div>
            </div>
          ))}
        </aside>
      </div>
    </section>
  );
}

function TermView({ vmId, user, sessionId, onSession }: { vmId: string; user: string; sessionId: string | undefined; onSession: (id: string) => void }) {
  const box = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState("connecting");
  const onSessionRef = useRef(onSession);
  useEffect(() => {
    onSessionRef.current = onSession;
  });

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000, fontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace", theme: { background: "#111318" } });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(el);
    fit.fit();
    const enc = new TextEncoder();
    let ws: WebSocket | undefined;
    let current = sessionId;
    let disposed = false;
    let exited = false;
    let failures = 0;
    let retry: ReturnType<typeof setTimeout> | undefined;

    const schedule = (why: string) => {
      failures++;
      if (failures > 5) {
        setStatus(`${why}; gave up — reload to retry`);
        return;
      }
      setStatus(`${why}; reconnecting…`);
      retry = setTimeout(() => void connect(), Math.min(500 * 2 ** (failures - 1), 5000));
    };

    const connect = async () => {
      if (disposed) return;
      setStatus(current ? "attaching" : "opening");
      let token: string;
      try {
        token = (await api<{ token: string }>("POST", "/console/api/pty-token", { vmId, user })).token;
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 404)) setStatus(err.message);
        else schedule(err instanceof Error ? err.message : String(err));
        return;
      }
      if (disposed) return;
      const q = new URLSearchParams({ cols: String(term.cols), rows: String(term.rows), token });
      const p = current ? `${vmPath(vmId)}/pty/sessions/${encodeURIComponent(current)}` : `${vmPath(vmId)}/pty`;
      const sock = new WebSocket(`${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${p}?${q}`);
      sock.binaryType = "arraybuffer";
      ws = sock;
      let opened = false;
      sock.onopen = () => {
        opened = true;
        failures = 0;
        if (current) term.reset(); // the scrollback replay comes next; do not show it twice
        setStatus("connected");
        el.dataset.state = "connected";
        term.focus();
      };
      sock.onmessage = (ev: MessageEvent<ArrayBuffer | string>) => {
        if (typeof ev.data !== "string") {
          term.write(new Uint8Array(ev.data));
          return;
        }
        let msg: { type?: string; sessionId?: string; exitCode?: number | null };
        try {
          msg = JSON.parse(ev.data) as typeof msg;
        } catch {
          return;
        }
        if (msg.type === "sessionInfo" && msg.sessionId) {
          current = msg.sessionId;
          el.dataset.sessionId = current;
          replaceHash(href(["vms", vmId, "terminal"], { session: current, user }));
          onSessionRef.current(current);
        } else if (msg.type === "exited") {
          exited = true;
          term.write(`\r\n\x1b[2m[process exited with code ${msg.exitCode ?? "?"}]\x1b[0m\r\n`);
          setStatus("exited");
        }
      };
      sock.onclose = () => {
        if (ws === sock) ws = undefined;
        el.dataset.state = "closed";
        if (disposed || exited) return;
        schedule(opened ? "disconnected" : "could not connect");
      };
    };

    if (sessionId) el.dataset.sessionId = sessionId;
    const dataSub = term.onData((d) => {
      if (ws?.readyState === WebSocket.OPEN) ws.send(enc.encode(d));
    });
    const resizeSub = term.onResize(({ cols, rows }) => {
      if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "resize", cols, rows }));
    });
    const refit = () => {
      try {
        fit.fit();
      } catch {
        // not laid out yet
      }
    };
    const ro = new ResizeObserver(refit);
    ro.observe(el);
    window.addEventListener("resize", refit);
    void connect();
    return () => {
      disposed = true;
      clearTimeout(retry);
      ws?.close();
      ro.disconnect();
      window.removeEventListener("resize", refit);
      dataSub.dispose();
      resizeSub.dispose();
      term.dispose();
    };
  }, [vmId, user, sessionId]);

  return (
    <div className="term-wrap">
      <div className="term-status" data-testid="term-status">
        {status}
      </div>
      <div className="term" ref={box} data-testid="terminal" />
    </div>
  );
}
