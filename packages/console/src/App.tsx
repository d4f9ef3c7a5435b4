import { useEffect, useState, type FormEvent } from "react";
import { api, ApiError, SIGNED_OUT_EVENT } from "./api";
import { BuildsPage } from "./pages/Builds";
import { FilesPage } from "./pages/Files";
import { SnapshotsPage } from "./pages/Snapshots";
import { TerminalPage } from "./pages/Terminal";
import { VmPage } from "./pages/Vm";
import { VmsPage } from "./pages/Vms";
import { href, useRoute } from "./router";

type Auth = { state: "loading" } | { state: "out"; error?: string } | { state: "in"; account: string };

export function App() {
  const [auth, setAuth] = useState<Auth>({ state: "loading" });
  const route = useRoute();

  useEffect(() => {
    api<{ account: string }>("GET", "/console/api/session").then(
      (r) => setAuth({ state: "in", account: r.account }),
      () => setAuth({ state: "out" }),
    );
    const out = () => setAuth({ state: "out", error: "Your session ended (signed out, expired, or the key was revoked). Sign in again." });
    window.addEventListener(SIGNED_OUT_EVENT, out);
    return () => window.removeEventListener(SIGNED_OUT_EVENT, out);
  }, []);

  if (auth.state === "loading") return <div className="center">Loading…</div>;
  if (auth.state === "out") return <SignIn error={auth.error} onIn={(account) => setAuth({ state: "in", account })} />;

  const signOut = async () => {
    await api("DELETE", "/console/api/session").catch(() => undefined);
    setAuth({ state: "out" });
  };
  const [section, vmId, sub] = route.parts;
  let page;
  if (section === "snapshots") page = <SnapshotsPage />;
  else if (section === "builds") page = <BuildsPage open={vmId} />;
  else if (section === "vms" && vmId && sub === "terminal") page = <TerminalPage key={vmId} vmId={vmId} query={route.query} />;
  else if (section === "vms" && vmId && sub === "files") page = <FilesPage key={vmId} vmId={vmId} path={route.query.get("path") ?? "/root"} />;
  else if (section === "vms" && vmId && sub === undefined) page = <VmPage key={vmId} vmId={vmId} />;
  else page = <VmsPage />;

  return (
    <div className="app">
      <header>
        <span className="brand">Capsule</span>
        <nav>
          <a href={href(["vms"])} className={section !== "snapshots" && section !== "builds" ? "active" : ""}>
            VMs
          </a>
          <a href={href(["snapshots"])} className={section === "snapshots" ? "active" : ""}>
            Snapshots
          </a>
          <a href={href(["builds"])} className={section === "builds" ? "active" : ""}>
            Builds
          </a>
        </nav>
        <span className="spacer" />
        <span className="account" data-testid="account">
          {auth.account}
        </span>
        <button onClick={() => void signOut()} data-testid="sign-out">
          Sign out
        </button>
      </header>
      <main>{page}</main>
    </div>
  );
}

function SignIn({ error, onIn }: { error?: string | undefined; onIn: (account: string) => void }) {
  const [key, setKey] = useState("");
  const [msg, setMsg] = useState(error);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    try {
      const r = await api<{ account: string }>("POST", "/console/api/session", { key });
      setKey("");
      onIn(r.account);
    } catch (err) {
      setMsg(err instanceof ApiError && err.status === 401 ? "That key is not valid (wrong or revoked)." : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="center">
      <form className="card signin" onSubmit={(e) => void submit(e)}>
        <h1>Capsule console</h1>
        <label>
          API key
          <input type="password" autoComplete="off" value={key} onChange={(e) => setKey(e.target.value)} placeholder="cap_…" data-testid="api-key" required />
        </label>
        <button type="submit" className="primary" disabled={busy} data-testid="sign-in">
          Sign in
        </button>
        {msg && (
          <p className="error" data-testid="sign-in-error">
            {msg}
          </p>
        )}
        <p className="hint">
          Create a key with <code>capsule keys create</code>. The key is exchanged for a session cookie and is not stored by the browser.
        </p>
      </form>
    </div>
  );
}
